"""Images as small PNG ``data:`` URIs, so that a page carries its pictures inside itself."""

from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib.figure import Figure
from PIL import Image


def thumbnail_uri(image: np.ndarray, max_px: int) -> str:
    """One (C, H, W) image with values in [0, 1] as a PNG data URI, at most ``max_px`` on its
    longer side (larger images are downscaled, smaller ones kept: the page scales them up with
    sharp pixels). Grayscale is drawn dark on light, as the study's figures draw it."""
    pixels = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if pixels.shape[0] == 1:
        picture = Image.fromarray(np.round(255 * (1 - pixels[0])).astype(np.uint8))
    else:
        picture = Image.fromarray(np.round(255 * np.transpose(pixels, (1, 2, 0))).astype(np.uint8))
    if max(picture.size) > max_px:
        picture.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    return _uri(picture)


def _uri(picture: Image.Image) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def figure_uri(figure: Figure, dpi: int = 90) -> str:
    """A matplotlib figure as a PNG data URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
