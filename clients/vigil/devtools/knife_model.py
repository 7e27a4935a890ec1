"""A tiny ONNX model that sees blue squares as knives: the stand-in weapon detector of tests and
benchmarks (no model weights can be downloaded here).

The model (YOLOv8-shaped, 64x64 input, classes person/gun/knife) reports two "knife" boxes: the
centroid of the blue pixels in the left half of its input, and in the right half, each 8x8 input
pixels (40x40 in a 320x240 frame), scored with the strongest blue there. A blue square on black
is therefore a knife wherever it is, and one in each half of the frame are two knives. Blue means
blue over red (B - R), so black, and the grey padding of the letterbox, score nothing.

Needs the ``onnx`` package (a development dependency), imported when the model is built.
"""

from __future__ import annotations

import pathlib

import numpy as np

SIZE = 64
SIDE = 40  # the squares' side in frame pixels of a 320x240 frame: the model's box, 8 input pixels
NAMES = {0: "person", 1: "gun", 2: "knife"}
BLUE = (255, 0, 0)  # BGR
# Where a square at a 320x240 frame's (x, y) top left lands in the 64x64 input: scale 0.2, 8 rows
# of padding above (the letterbox of 320x240).
SCALE, PAD_Y = 0.2, 8.0


def build_model(path: pathlib.Path) -> pathlib.Path:
    """(N, 3, 64, 64) -> (N, 4 + 3, 2): a knife box per half of the input, at its blue centroid."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    xs = np.tile(np.arange(SIZE, dtype=np.float32) + 0.5, (SIZE, 1))
    halves = np.zeros((2, SIZE, SIZE), np.float32)
    halves[0, :, : SIZE // 2] = 1
    halves[1, :, SIZE // 2 :] = 1
    nodes = [
        helper.make_node("Split", ["images"], ["r", "g", "b"], axis=1),
        helper.make_node("Sub", ["b", "r"], ["b_minus_r"]),
        helper.make_node("Relu", ["b_minus_r"], ["blue"]),  # (N, 1, 64, 64)
        helper.make_node("Mul", ["blue", "halves"], ["weights"]),  # (N, 2, 64, 64)
        helper.make_node("ReduceSum", ["weights", "hw"], ["mass"], keepdims=0),  # (N, 2)
        helper.make_node("Add", ["mass", "eps"], ["mass_eps"]),
        helper.make_node("Mul", ["weights", "xs"], ["wx"]),
        helper.make_node("Mul", ["weights", "ys"], ["wy"]),
        helper.make_node("ReduceSum", ["wx", "hw"], ["sum_x"], keepdims=0),
        helper.make_node("ReduceSum", ["wy", "hw"], ["sum_y"], keepdims=0),
        helper.make_node("Div", ["sum_x", "mass_eps"], ["cx"]),
        helper.make_node("Div", ["sum_y", "mass_eps"], ["cy"]),
        helper.make_node("ReduceMax", ["weights"], ["score"], axes=[2, 3], keepdims=0),
        helper.make_node("Mul", ["score", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "side"], ["size"]),
    ]
    rows = ["cx", "cy", "size", "size", "zeros", "zeros", "score"]
    for i, name in enumerate(rows):
        nodes.append(helper.make_node("Unsqueeze", [name, "one"], [f"row{i}"]))
    nodes.append(
        helper.make_node("Concat", [f"row{i}" for i in range(len(rows))], ["output0"], axis=1)
    )
    graph = helper.make_graph(
        nodes,
        "tiny-blue-tracker",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 4 + len(NAMES), 2])],
        initializer=[
            numpy_helper.from_array(halves, "halves"),
            numpy_helper.from_array(xs, "xs"),
            numpy_helper.from_array(xs.T.copy(), "ys"),
            numpy_helper.from_array(np.array([2, 3], np.int64), "hw"),
            numpy_helper.from_array(np.array([1], np.int64), "one"),
            numpy_helper.from_array(np.array(1e-6, np.float32), "eps"),
            numpy_helper.from_array(np.array(0, np.float32), "zero"),
            numpy_helper.from_array(np.array(SIDE * SCALE, np.float32), "side"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": repr(NAMES), "stride": "32"})
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path
