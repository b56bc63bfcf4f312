"""What the synthetic degradations (blur, rain and noise) share: the input check, a parameter
given or drawn, and the JPEG round trip that blur and noise may end with."""
from typing import Tuple

import cv2
import numpy as np

from utils.files.image_io import to_uint8

__all__ = ['check_image', 'uniform', 'jpeg_roundtrip']


def check_image(img: np.ndarray) -> np.ndarray:
    """The image as float32 (H, W, 3); anything else is a ValueError naming the shape."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'expected an RGB image of shape (H, W, 3), got shape {img.shape}')
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f'expected a float image in [0, 1], got {img.dtype} (divide 8-bit images by 255)')
    return img.astype(np.float32, copy=False)


def uniform(rng: np.random.Generator, value, bounds: Tuple[float, float]) -> float:
    """`value` if given, else a uniform draw from `bounds`."""
    return float(rng.uniform(*bounds)) if value is None else float(value)


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode (H, W, 3) RGB as JPEG at `quality` (0-100) and decode it again; 8-bit valued result."""
    rgb8 = to_uint8(img)
    ok, buf = cv2.imencode('.jpg', cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError('OpenCV could not encode a JPEG')
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
