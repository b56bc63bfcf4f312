"""Synthetic noise (utils/data/degradations.py's 'denoise'): Gaussian or signal-dependent noise on
the 0-255 scale, and the blind mix of both with an optional JPEG round trip. Every draw comes
from the caller's ``numpy.random.Generator``."""
import math
from typing import Optional, Tuple

import numpy as np

from utils.data.image_ops import check_image, jpeg_roundtrip, uniform

__all__ = ['add_noise', 'blind_noise']


# ----------------------------------------------------------------------------- noise

def add_noise(img: np.ndarray, rng: np.random.Generator, sigma: Optional[float] = None,
              sigma_range: Tuple[float, float] = (5.0, 50.0), signal_dependent: bool = False,
              peak: Optional[float] = None, peak_range: Tuple[float, float] = (30.0, 300.0)) -> np.ndarray:
    """Blind noise: additive Gaussian, optionally after Poisson shot noise (Poisson-Gaussian).

    Args:
        sigma: Gaussian std on the 0-255 scale; drawn from `sigma_range` if None.
        signal_dependent: first replace each value v by Poisson(v * peak) / peak,
            noise whose variance v / peak grows with brightness, as on a sensor.
        peak: photons at white for the shot noise; drawn log-uniformly from `peak_range` if None.
    """
    img = check_image(img)
    sigma = uniform(rng, sigma, sigma_range)
    out = img
    if signal_dependent:
        if peak is None:
            peak = math.exp(rng.uniform(math.log(peak_range[0]), math.log(peak_range[1])))
        out = (rng.poisson(img.astype(np.float64) * peak) / peak).astype(np.float32)
    out = out + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma / 255)
    return np.clip(out, 0, 1).astype(np.float32)


def blind_noise(img: np.ndarray, rng: np.random.Generator, sigma: Optional[float] = None,
                sigma_range: Tuple[float, float] = (5.0, 50.0), signal_dependent: Optional[bool] = None,
                signal_dependent_prob: float = 0.3, peak: Optional[float] = None,
                jpeg_quality: Optional[int] = None, jpeg_prob: float = 0.25,
                quality_range: Tuple[int, int] = (60, 95)) -> np.ndarray:
    """The noise users bring: Gaussian of unknown level, sometimes signal-dependent, sometimes
    re-compressed as JPEG (which correlates the noise across each 8x8 block).

    Args:
        sigma: Gaussian std on the 0-255 scale; drawn from `sigma_range` if None.
        signal_dependent: Poisson shot noise first (``add_noise``); drawn with
            probability `signal_dependent_prob` if None.
        peak: photons at white for the shot noise (drawn by ``add_noise`` if None).
        jpeg_quality: re-compress at this quality (0: never); if None, with probability
            `jpeg_prob`, at a quality drawn from `quality_range` (inclusive).
    """
    sigma = uniform(rng, sigma, sigma_range)
    if signal_dependent is None:
        signal_dependent = bool(rng.random() < signal_dependent_prob)
    out = add_noise(img, rng, sigma=sigma, signal_dependent=signal_dependent, peak=peak)
    if jpeg_quality is None:
        jpeg_quality = int(rng.integers(quality_range[0], quality_range[1] + 1)) if rng.random() < jpeg_prob else 0
    return jpeg_roundtrip(out, jpeg_quality) if jpeg_quality else out
