"""Pictures of an incident as the detector sends them for verification: a snapshot, frames
around it and a crop of the box, small JPEGs drawn the same way every run (seeds found for one
answer hold only for the same pictures)."""

from __future__ import annotations

import io

from vigil.sdk import Picture


def jpeg(size: tuple[int, int], colour: tuple[int, int, int], box: tuple[int, ...]) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, colour)
    ImageDraw.Draw(image).rectangle(box, fill=(20, 20, 20))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def incident_pictures() -> list[Picture]:
    return [
        Picture(jpeg((160, 120), (90, 120, 90), (60, 40, 90, 70)), "snapshot"),
        Picture(jpeg((160, 120), (90, 120, 90), (50, 40, 80, 70)), "1.0 s before"),
        Picture(jpeg((160, 120), (90, 120, 90), (70, 40, 100, 70)), "1.0 s after"),
        Picture(jpeg((48, 48), (90, 120, 90), (8, 8, 40, 40)), "crop of gun (0.91)"),
    ]


def rule_pictures() -> list[Picture]:
    return [
        Picture(jpeg((160, 120), (120, 110, 100), (20 + 20 * n, 60, 40 + 20 * n, 110)), label)
        for n, label in enumerate(["2.0 s ago", "1.0 s ago", "now"])
    ]
