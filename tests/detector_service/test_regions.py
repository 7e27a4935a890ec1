"""Region planning: which crops of a frame the object detector runs on, and mapping back."""

from __future__ import annotations

import numpy as np
import pytest

from detector_service.detections import Detections
from detector_service.motion import Box
from detector_service.regions import Region, plan_regions

FRAME = (1920, 1080)  # width, height


def inside(inner: Box, outer: Box) -> bool:
    return (
        outer.x1 <= inner.x1
        and outer.y1 <= inner.y1
        and inner.x2 <= outer.x2
        and inner.y2 <= outer.y2
    )


def test_no_motion_no_regions() -> None:
    assert plan_regions([], FRAME) == []


def test_small_motion_gets_a_full_resolution_crop_of_the_model_input() -> None:
    person = Box(1000, 500, 1040, 600)  # 40×100 px: 1/5 of that if the whole frame were shrunk
    [region] = plan_regions([person], FRAME, model_input=416)
    assert not region.whole_frame
    assert (region.box.width, region.box.height) == (416, 416)  # pixel for pixel, no upscaling
    assert inside(person, region.box)
    # Centred on the motion.
    assert abs((region.box.x1 + region.box.x2) / 2 - 1020) <= 1
    assert abs((region.box.y1 + region.box.y2) / 2 - 550) <= 1


def test_crop_slides_inside_the_frame_at_an_edge() -> None:
    corner = Box(1900, 1060, 1920, 1080)
    [region] = plan_regions([corner], FRAME, model_input=416)
    assert region.box == Box(1920 - 416, 1080 - 416, 1920, 1080)


def test_larger_motion_is_padded() -> None:
    car = Box(300, 300, 700, 500)  # 400 px wide: padded by 25% each side → 600 px square
    [region] = plan_regions([car], FRAME, model_input=416, padding=0.25)
    assert region.box.width == region.box.height == 600
    assert region.box.x1 <= 300 - 100
    assert region.box.x2 >= 700 + 100


@pytest.mark.parametrize(("merge_distance", "regions"), [(50, 1), (10, 2)])
def test_nearby_boxes_merge_into_one_region(merge_distance: int, regions: int) -> None:
    # A small model input, so that the two crops would not overlap: only merging joins them.
    head, legs = Box(800, 400, 840, 440), Box(805, 470, 845, 510)  # 30 px apart
    planned = plan_regions([head, legs], FRAME, model_input=64, merge_distance=merge_distance)
    assert len(planned) == regions
    merged = planned[0].box
    for box in planned[1:]:
        merged = merged.union(box.box)
    assert inside(head, merged)
    assert inside(legs, merged)


def test_distant_boxes_get_their_own_regions() -> None:
    left, right = Box(100, 100, 150, 200), Box(1700, 800, 1750, 900)
    regions = plan_regions([left, right], FRAME)
    assert len(regions) == 2
    assert not any(r.whole_frame for r in regions)
    assert inside(left, regions[0].box)
    assert inside(right, regions[1].box)


def test_overlapping_crops_are_merged_so_no_pixel_is_detected_twice() -> None:
    # 200 px apart: too far to merge as boxes, but their 416 px crops would overlap.
    a, b = Box(500, 500, 540, 560), Box(740, 500, 780, 560)
    regions = plan_regions([a, b], FRAME, merge_distance=50, model_input=416)
    assert len(regions) == 1
    assert inside(a, regions[0].box)
    assert inside(b, regions[0].box)


def test_large_motion_gives_the_whole_frame() -> None:
    truck = Box(200, 100, 1500, 900)
    assert plan_regions([truck], FRAME) == [Region(Box(0, 0, 1920, 1080), whole_frame=True)]


def test_spread_out_motion_gives_the_whole_frame() -> None:
    corners = [Box(0, 0, 30, 30), Box(1890, 0, 1920, 30), Box(0, 1050, 30, 1080)]
    corners.append(Box(1890, 1050, 1920, 1080))
    corners.append(Box(950, 520, 980, 550))
    # Five separate crops: more than max_regions=4.
    [region] = plan_regions(corners, FRAME, max_regions=4)
    assert region.whole_frame
    assert len(plan_regions(corners, FRAME, max_regions=5, whole_frame_fraction=1.0)) == 5


def test_crops_covering_much_of_the_frame_give_the_whole_frame() -> None:
    boxes = [Box(100, 100, 140, 140), Box(1000, 100, 1040, 140)]
    assert len(plan_regions(boxes, FRAME, model_input=416, whole_frame_fraction=0.5)) == 2
    # Two 416² crops are 17% of a 1080p frame: with a 10% limit, detect the frame once.
    [region] = plan_regions(boxes, FRAME, model_input=416, whole_frame_fraction=0.1)
    assert region.whole_frame


def test_low_resolution_stream_is_always_detected_whole() -> None:
    [region] = plan_regions([Box(10, 10, 20, 20)], (640, 360), model_input=416)
    assert region.whole_frame


def test_detections_in_a_crop_map_back_to_frame_coordinates() -> None:
    frame = np.zeros((1080, 1920, 3), np.uint8)
    frame[610:690, 1210:1250] = 255  # the object, at known frame coordinates
    [region] = plan_regions([Box(1200, 600, 1260, 700)], FRAME)
    crop = region.crop(frame)
    assert crop.shape == (416, 416, 3)
    ys, xs = np.nonzero(crop[:, :, 0])
    in_crop = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # what a detector would report
    assert in_crop != [1210, 610, 1250, 690]  # the crop's own coordinates differ...
    np.testing.assert_array_equal(region.to_frame(in_crop), [[1210, 610, 1250, 690]])  # ...mapped
    np.testing.assert_array_equal(region.from_frame(region.to_frame(in_crop)), [in_crop])

    detections = Detections(
        xyxy=np.array([in_crop], np.float32),
        confidence=np.array([0.9], np.float32),
        class_id=np.array([0], np.int32),
        class_name=("person",),
        model="test",
    )
    mapped = region.detections_to_frame(detections)
    np.testing.assert_array_equal(mapped.xyxy, [[1210, 610, 1250, 690]])
    assert mapped.class_name == ("person",)
    assert mapped.confidence.tolist() == pytest.approx([0.9])


def test_whole_frame_region_maps_to_itself() -> None:
    region = Region(Box(0, 0, 640, 360), whole_frame=True)
    np.testing.assert_array_equal(region.to_frame([[1, 2, 3, 4]]), [[1, 2, 3, 4]])


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="frame_size"):
        plan_regions([Box(0, 0, 1, 1)], (0, 10))
    with pytest.raises(ValueError, match="model_input"):
        plan_regions([Box(0, 0, 1, 1)], FRAME, model_input=0)
