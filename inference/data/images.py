"""Images as model inputs: encoded image files -> one normalised array per batch.

Each record's image is decoded and resized by Pillow (JPEG, PNG, GIF, BMP, TIFF, WebP, ...);
the batch's pixels are then scaled, normalised and laid out in one vectorised step. An
image Pillow cannot read (not an image, truncated, a decompression bomb) fails its record
only, with Pillow's reason.
"""
import io
from typing import Dict, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from inference.config import ImageSpec

MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def pixels(data: bytes, spec: ImageSpec) -> np.ndarray:
    """One encoded image as uint8 pixels [height, width, channels], resized as `spec`
    says. Raises what Pillow raises for data it cannot decode."""
    height, width = spec.size
    resample = Image.Resampling[spec.resample.upper()]
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert(MODES[spec.channels])
        if spec.fit == "center_crop":
            image = ImageOps.fit(image, (width, height), resample)
        elif image.size != (width, height):
            image = image.resize((width, height), resample)
        return np.asarray(image).reshape(height, width, spec.channels)


def decode(values: Sequence[bytes], spec: ImageSpec):
    """The images of a batch as uint8 pixels [batch, height, width, channels], and
    {row: why} for the rows that could not be decoded (their pixels left 0)."""
    height, width = spec.size
    out = np.zeros((len(values), height, width, spec.channels), dtype=np.uint8)
    errors: Dict[int, str] = {}
    for row, data in enumerate(values):
        try:
            out[row] = pixels(data, spec)
        except UnidentifiedImageError:
            errors[row] = ("Pillow recognises no image format in its bytes (not an image "
                           "file?)")
        except Exception as e:  # Pillow raises many kinds
            errors[row] = f"{type(e).__name__}: {e}"
    return out, errors


def normalise(batch: np.ndarray, spec: ImageSpec, dtype: str = "float32") -> np.ndarray:
    """uint8 pixels [batch, height, width, channels] -> `(pixel * scale - mean) / std` in
    `dtype`, laid out as spec.layout: one multiply-add per value, into a new array."""
    channels = batch.shape[-1]
    mean = np.broadcast_to(np.asarray(spec.mean or [0.0], dtype=np.float64), (channels,))
    std = np.broadcast_to(np.asarray(spec.std or [1.0], dtype=np.float64), (channels,))
    factor, offset = (spec.scale / std).astype(dtype), (-mean / std).astype(dtype)
    if spec.layout == "NCHW":
        batch = batch.transpose(0, 3, 1, 2)
        factor, offset = factor[:, None, None], offset[:, None, None]
    out = np.empty(batch.shape, dtype=dtype)
    np.multiply(batch, factor, out=out)
    out += offset
    return out
