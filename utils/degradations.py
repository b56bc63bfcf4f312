"""Synthetic degradations: camera-shake blur, rain streaks and noise, seeded and reproducible.

Every function takes a float32 RGB image (H, W, 3) in [0, 1] and a
``numpy.random.Generator``, draws each parameter it is not given from that
generator, and returns a new float32 image of the same shape clipped to
[0, 1]: the same generator state gives the same image. Noise levels are on
the 0-255 scale. ``degrade(img, kind, rng)`` picks the degradation for a
task ('deblur', 'derain' or 'denoise').

Used for the bundled samples (samples/make_samples.py) and for synthetic
training pairs.
"""
import math
from typing import Optional, Tuple

import cv2
import numpy as np

from utils.image_io import to_uint8

__all__ = ['KINDS', 'shake_trajectory', 'rasterize_trajectory', 'motion_kernel', 'convolve', 'jpeg_roundtrip',
           'motion_blur', 'streak_kernel', 'rain_layer', 'add_rain', 'add_noise', 'blind_noise', 'degrade']

KINDS = ('deblur', 'derain', 'denoise')
_ALIASES = {'deblurring': 'deblur', 'deraining': 'derain', 'denoising': 'denoise'}


def _check_image(img: np.ndarray) -> np.ndarray:
    """The image as float32 (H, W, 3); anything else is a ValueError naming the shape."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'expected an RGB image of shape (H, W, 3), got shape {img.shape}')
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f'expected a float image in [0, 1], got {img.dtype} (divide 8-bit images by 255)')
    return img.astype(np.float32, copy=False)


def _uniform(rng: np.random.Generator, value, bounds: Tuple[float, float]) -> float:
    """`value` if given, else a uniform draw from `bounds`."""
    return float(rng.uniform(*bounds)) if value is None else float(value)


# ----------------------------------------------------------------------------- motion blur

def shake_trajectory(rng: np.random.Generator, length: float, samples: int = 512,
                     anxiety: Optional[float] = None, centripetal: Optional[float] = None,
                     gaussian: Optional[float] = None, shake_prob: Optional[float] = None) -> np.ndarray:
    """Camera-shake path as (samples, 2) (x, y) positions in pixels, `length` px long in total.

    A random walk with inertia in the spirit of Boracchi & Foi (2012): at every
    step the velocity gets a Gaussian kick (``gaussian``) and a pull back
    towards the start (``centripetal``), both scaled by ``anxiety``; with
    probability ``shake_prob * anxiety`` an abrupt shake turns it round. The
    speed is kept constant, so samples are equally spaced in time and the
    path length is exactly `length`. Anxiety 0 gives a straight line.
    Unset parameters are drawn as in that paper: anxiety U(0, 0.1),
    centripetal U(0, 0.7), gaussian U(0, 10), shake_prob U(0, 0.2).
    """
    anxiety = _uniform(rng, anxiety, (0.0, 0.1))
    centripetal = _uniform(rng, centripetal, (0.0, 0.7))
    gaussian = _uniform(rng, gaussian, (0.0, 10.0))
    shake_prob = _uniform(rng, shake_prob, (0.0, 0.2))
    step = length / (samples - 1)
    # All random numbers are drawn up front, in a fixed order, for reproducibility.
    kicks = rng.standard_normal((samples, 2)) @ np.array([1, 1j])
    shakes = rng.random(samples) < shake_prob * anxiety
    turns = np.exp(1j * (np.pi + rng.uniform(-0.5, 0.5, samples)))
    velocity = step * np.exp(1j * rng.uniform(0, 2 * np.pi))
    points = np.zeros(samples, dtype=np.complex128)
    for t in range(samples - 1):
        change = anxiety * (gaussian * kicks[t] - centripetal * points[t]) * step
        if shakes[t]:
            change += 2 * velocity * turns[t]
        velocity += change
        velocity *= step / max(abs(velocity), 1e-12)
        points[t + 1] = points[t] + velocity
    return np.stack([points.real, points.imag], axis=1)


def rasterize_trajectory(points: np.ndarray, max_size: int = 31) -> np.ndarray:
    """Point-spread function (k, k), k odd <= max_size, summing to 1, from (n, 2) (x, y) points.

    Every point gets the same share of light, split bilinearly between its
    four nearest pixels. The path's centroid lands on the kernel's centre
    (so blurring does not shift the image); a path too wide for `max_size`
    is scaled down to fit.
    """
    if max_size < 3 or max_size % 2 == 0:
        raise ValueError(f'max_size must be odd and at least 3, got {max_size}')
    points = np.asarray(points, dtype=np.float64)
    points = points - points.mean(axis=0)
    radius = float(np.abs(points).max())
    limit = (max_size - 3) / 2  # one pixel of room for the bilinear spread
    if radius > limit:
        points, radius = points * (limit / radius), limit
    size = 2 * math.ceil(radius) + 3
    centre = (size - 1) / 2
    x, y = points[:, 0] + centre, points[:, 1] + centre
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    kernel = np.zeros((size, size), dtype=np.float64)
    for dy, dx, share in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                          (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        np.add.at(kernel, (y0 + dy, x0 + dx), share)
    return (kernel / kernel.sum()).astype(np.float32)


def motion_kernel(rng: np.random.Generator, max_size: int = 31, length: Optional[float] = None,
                  length_range: Tuple[float, float] = (5.0, 40.0), **trajectory) -> np.ndarray:
    """Random camera-shake PSF (k, k), k odd <= max_size, summing to 1.

    The path length (px) is drawn from `length_range` unless given; other
    keyword arguments go to ``shake_trajectory``.
    """
    length = _uniform(rng, length, length_range)
    return rasterize_trajectory(shake_trajectory(rng, length, **trajectory), max_size)


def convolve(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """True convolution of each channel of (H, W, C) with an odd-sized kernel, reflect (…cb|abc…) borders."""
    if kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f'kernel sides must be odd, got {kernel.shape}')
    # filter2D correlates; flipping the kernel makes it a convolution.
    flipped = np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float32)
    return cv2.filter2D(np.ascontiguousarray(img, dtype=np.float32), -1, flipped,
                        borderType=cv2.BORDER_REFLECT_101)


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode (H, W, 3) RGB as JPEG at `quality` (0-100) and decode it again; 8-bit valued result."""
    rgb8 = to_uint8(img)
    ok, buf = cv2.imencode('.jpg', cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError('OpenCV could not encode a JPEG')
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def motion_blur(img: np.ndarray, rng: np.random.Generator, kernel: Optional[np.ndarray] = None,
                max_size: int = 31, noise_sigma: Optional[float] = None,
                noise_range: Tuple[float, float] = (0.0, 2.0), jpeg: bool = True,
                jpeg_quality: Optional[int] = None, quality_range: Tuple[int, int] = (70, 95)) -> np.ndarray:
    """Camera-shake blur: convolve with a PSF, add a little Gaussian noise, re-compress as JPEG.

    Args:
        kernel: PSF to use (odd sides, should sum to 1); drawn by ``motion_kernel`` if None.
        max_size: largest side of a drawn PSF.
        noise_sigma: Gaussian noise std on the 0-255 scale (0: none); drawn from `noise_range` if None.
        jpeg: re-compress the result as JPEG, as cameras and web images are.
        jpeg_quality: JPEG quality; drawn from `quality_range` (inclusive) if None.
    """
    img = _check_image(img)
    if kernel is None:
        kernel = motion_kernel(rng, max_size)
    out = convolve(img, kernel)
    sigma = _uniform(rng, noise_sigma, noise_range)
    if sigma > 0:
        out = out + rng.standard_normal(out.shape, dtype=np.float32) * np.float32(sigma / 255)
    out = np.clip(out, 0, 1)
    if jpeg:
        quality = int(rng.integers(quality_range[0], quality_range[1] + 1)) if jpeg_quality is None else jpeg_quality
        out = jpeg_roundtrip(out, quality)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------- rain

def streak_kernel(length: float, angle: float) -> np.ndarray:
    """A thin anti-aliased line (k, k), k odd, peak about 1: one rain streak.

    `angle` is in degrees from vertical (positive leans the top to the right).
    """
    size = 2 * math.ceil(length / 2 + 1) + 1
    centre = (size - 1) / 2
    theta = math.radians(angle)
    dx, dy = math.sin(theta) * length / 2, -math.cos(theta) * length / 2
    canvas = np.zeros((size, size), dtype=np.uint8)
    # cv2.line takes integer points; 1/16-pixel precision (shift=4) keeps the angle exact.
    p0 = (int(round((centre - dx) * 16)), int(round((centre - dy) * 16)))
    p1 = (int(round((centre + dx) * 16)), int(round((centre + dy) * 16)))
    cv2.line(canvas, p0, p1, 255, thickness=1, lineType=cv2.LINE_AA, shift=4)
    return canvas.astype(np.float32) / 255.0


def rain_layer(shape: Tuple[int, int], rng: np.random.Generator, density: float, angle: float,
               length: float, width: float, intensity: float) -> np.ndarray:
    """Rain streaks (H, W) in [0, intensity]: sparse seeds smeared along one common direction.

    About `density` x H x W streaks, each of brightness U(0.5, 1), `length`
    px long and about `width` px wide (a Gaussian blur of sigma width / 3
    widens and softens the 1-px line). Overlapping streaks add up and
    saturate at 1 before scaling by `intensity`.
    """
    seeds = (rng.random(shape) < density) * rng.uniform(0.5, 1.0, shape)
    streaks = cv2.filter2D(seeds.astype(np.float32), -1, streak_kernel(length, angle),
                           borderType=cv2.BORDER_CONSTANT)
    streaks = cv2.GaussianBlur(streaks, (0, 0), sigmaX=width / 3)
    return np.clip(streaks, 0, 1) * np.float32(intensity)


def add_rain(img: np.ndarray, rng: np.random.Generator, density: Optional[float] = None,
             angle: Optional[float] = None, length: Optional[float] = None, width: Optional[float] = None,
             intensity: Optional[float] = None, blend: Optional[str] = None, over_prob: float = 0.5,
             colour: Optional[float] = None) -> np.ndarray:
    """Synthetic rain: sparse noise -> motion-blurred lines at one common angle -> composited over
    the photo.

    Args:
        density: streaks per pixel; drawn from U(0.0005, 0.006) if None.
        angle: common streak angle in degrees from vertical; drawn from U(-30, 30) if None.
        length: streak length in pixels; drawn from U(8, 30) if None.
        width: streak width in pixels; drawn from U(1, 2.5) if None.
        intensity: brightness (or opacity) of a saturated streak; drawn from U(0.3, 0.9) if None.
        blend: how the streak layer r meets the photo v:
            'screen': v + r (1 - v), light added, never past white (Rain100L-style; only brightens);
            'add': v + r, clipped;
            'over': v (1 - r) + c r, semi-opaque streaks of a neutral grey c, which darken
            whatever is brighter than c (rain against a bright sky);
            None: 'over' with probability `over_prob`, else 'screen'.
        colour: the grey level c of 'over' rain; drawn from U(0.7, 1.0) if None.
    """
    img = _check_image(img)
    if blend is None:
        blend = 'over' if rng.random() < over_prob else 'screen'
    if blend not in ('screen', 'add', 'over'):
        raise ValueError(f"blend must be 'screen', 'add' or 'over', got {blend!r}")
    density = _uniform(rng, density, (0.0005, 0.006))
    angle = _uniform(rng, angle, (-30.0, 30.0))
    length = _uniform(rng, length, (8.0, 30.0))
    width = _uniform(rng, width, (1.0, 2.5))
    intensity = _uniform(rng, intensity, (0.3, 0.9))
    rain = rain_layer(img.shape[:2], rng, density, angle, length, width, intensity)[:, :, None]
    if blend == 'over':
        grey = np.float32(_uniform(rng, colour, (0.7, 1.0)))
        out = img * (1 - rain) + grey * rain
    else:
        # Written as img + something >= 0, so this rain never darkens a pixel, not even by rounding.
        out = img + rain * (1 - img) if blend == 'screen' else img + rain
    return np.clip(out, 0, 1).astype(np.float32)


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
    img = _check_image(img)
    sigma = _uniform(rng, sigma, sigma_range)
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
    sigma = _uniform(rng, sigma, sigma_range)
    if signal_dependent is None:
        signal_dependent = bool(rng.random() < signal_dependent_prob)
    out = add_noise(img, rng, sigma=sigma, signal_dependent=signal_dependent, peak=peak)
    if jpeg_quality is None:
        jpeg_quality = int(rng.integers(quality_range[0], quality_range[1] + 1)) if rng.random() < jpeg_prob else 0
    return jpeg_roundtrip(out, jpeg_quality) if jpeg_quality else out


# ----------------------------------------------------------------------------- dispatch

_FUNCTIONS = {'deblur': motion_blur, 'derain': add_rain, 'denoise': blind_noise}


def degrade(img: np.ndarray, kind: str, rng: np.random.Generator, **params) -> np.ndarray:
    """Degrade `img` for a task: kind 'deblur' (motion_blur), 'derain' (add_rain) or 'denoise'
    (blind_noise); the task names 'Deblurring', 'Deraining', 'Denoising' work too. `params` go to
    that function. Returns float32 (H, W, 3) in [0, 1]."""
    key = _ALIASES.get(str(kind).lower(), str(kind).lower())
    if key not in _FUNCTIONS:
        raise ValueError(f"unknown degradation {kind!r}: choose one of {', '.join(KINDS)}")
    return _FUNCTIONS[key](img, rng, **params)
