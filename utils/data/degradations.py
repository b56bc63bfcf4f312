"""Synthetic degradations: blur (camera shake, defocus, Gaussian), rain streaks and noise, seeded
and reproducible.

Every function takes a float32 RGB image (H, W, 3) in [0, 1] and a
``numpy.random.Generator``, draws each parameter it is not given from that
generator, and returns a new float32 image of the same shape clipped to
[0, 1]: the same generator state gives the same image. Noise levels are on
the 0-255 scale. ``degrade(img, kind, rng)`` picks the degradation for a
task ('deblur', 'derain' or 'denoise').

Used for the bundled samples (samples/make_samples.py) and for synthetic
training pairs. This module is the one place to import them from: ``degrade`` dispatches to
blur (utils/data/blur.py), rain (utils/data/rain.py) and noise (utils/data/noise.py), and
their public functions and constants are this module's API.
"""
import numpy as np

from utils.data.blur import (BLUR_FAMILY_PROBS, COMBINE_PROB, EXTENT_RANGE, EXTENT_THRESHOLD, blur_kernel,
                             combine_kernels, convolve, disk_kernel, gaussian_kernel, kernel_extent, motion_blur,
                             motion_kernel, rasterize_trajectory, shake_kernel, shake_trajectory)
from utils.data.image_ops import jpeg_roundtrip
from utils.data.noise import add_noise, blind_noise
from utils.data.rain import (ADD_PROB, ANGLE_SPREAD, DENSITY_RANGE, INTENSITY_RANGE, LENGTH_RANGE, MIN_STREAKS,
                             OVER_PROB, SUBLAYERS, WIDTH_RANGE, add_rain, rain_layer, streak_kernel,
                             varied_rain_layer)

__all__ = ['KINDS', 'shake_trajectory', 'rasterize_trajectory', 'motion_kernel', 'convolve', 'jpeg_roundtrip',
           'EXTENT_RANGE', 'EXTENT_THRESHOLD', 'BLUR_FAMILY_PROBS', 'COMBINE_PROB', 'kernel_extent', 'disk_kernel',
           'gaussian_kernel', 'shake_kernel', 'combine_kernels', 'blur_kernel', 'motion_blur',
           'OVER_PROB', 'ADD_PROB', 'DENSITY_RANGE', 'LENGTH_RANGE', 'WIDTH_RANGE', 'INTENSITY_RANGE',
           'SUBLAYERS', 'MIN_STREAKS', 'ANGLE_SPREAD', 'streak_kernel', 'rain_layer', 'varied_rain_layer',
           'add_rain', 'add_noise', 'blind_noise', 'degrade']

KINDS = ('deblur', 'derain', 'denoise')
_ALIASES = {'deblurring': 'deblur', 'deraining': 'derain', 'denoising': 'denoise'}

_FUNCTIONS = {'deblur': motion_blur, 'derain': add_rain, 'denoise': blind_noise}


def degrade(img: np.ndarray, kind: str, rng: np.random.Generator, **params) -> np.ndarray:
    """Degrade `img` for a task: kind 'deblur' (motion_blur), 'derain' (add_rain) or 'denoise'
    (blind_noise); the task names 'Deblurring', 'Deraining', 'Denoising' work too. `params` go to
    that function. Returns float32 (H, W, 3) in [0, 1]."""
    key = _ALIASES.get(str(kind).lower(), str(kind).lower())
    if key not in _FUNCTIONS:
        raise ValueError(f"unknown degradation {kind!r}: choose one of {', '.join(KINDS)}")
    return _FUNCTIONS[key](img, rng, **params)
