"""An image's size, read from its header (its pixels are never decoded here).

A few hundred kilobytes of PNG can announce 20000 x 20000 pixels: 1.2 GB once a viewer decodes
it. Pillow reads the header (dimensions, and each page of a multi-page TIFF) without decoding.
The frames of an animated PNG must fit in its canvas, so only TIFF pages are read one by one.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image

from pipeline.core.reasons import Rejected

PILLOW_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/tiff": "TIFF"}


def check_image(path: Path, mime: str, max_pixels: int, max_frames: int) -> None:
    """Refuse an image whose header cannot be read (`image_corrupt`), or with too many pixels or frames (`image_too_large`)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's bomb warnings (the limit here decides) and its notes on odd tags
            with Image.open(path, formats=[PILLOW_FORMATS[mime]]) as image:
                frames = int(getattr(image, "n_frames", 1)) if mime == "image/tiff" else 1  # only multi-frame formats have it
                if frames > max_frames:
                    raise Rejected("image_too_large", f"{frames} frames, limit {max_frames}.")
                for frame in range(frames):
                    if frame:
                        image.seek(frame)
                    width, height = image.size
                    if width * height > max_pixels:
                        raise Rejected("image_too_large", f"{width} x {height} pixels, limit {max_pixels}.")
    except Rejected:
        raise
    except Image.DecompressionBombError:  # past twice Pillow's own limit, checked as it opens
        raise Rejected("image_too_large") from None
    except Exception:  # noqa: BLE001 - any failure to read the header means no viewer shows the image
        raise Rejected("image_corrupt") from None
