"""A second, independent degradation generator, for judging models trained on ``utils.data.degradations``.

A model scored on the generator it was trained on says little about the
images users bring. These degradations are drawn from other models of the
same phenomena, written separately, so the bundled weights' numbers
(scripts/evaluate_synthetic.py) measure generalisation:

- blur: a smooth camera path through a few random control points (a
  Catmull-Rom spline, not a random walk), rasterised by Gaussian splatting
  and convolved with a defocus disk of radius 1-2 px; then Gaussian noise of
  sigma 1/255 and no JPEG. Every kernel therefore spreads at least r^2/4 px^2
  in every direction (the disk's covariance), where the training generator's
  near-straight paths are about one pixel thin. For reporting by blur extent
  (``extent_kernel``) there are also a defocus-only disk and a straight
  linear motion, each of an extent the caller names: the side of the bounding
  box of the pixels holding at least 1% of the kernel's peak (``support_extent``).
- rain: individual streaks drawn as anti-aliased line segments, each with
  its own length, width, angle jitter around the common direction and
  opacity, softened by a small blur and alpha-blended towards a cold
  rain colour, so streaks are tinted (blue above red), where the training
  generator's rain, screen-blended or composited over a grey, is neutral.
- noise: additive white Gaussian noise of a fixed sigma (25/255 by default),
  the standard denoising benchmark setting.

Same contract as ``utils.data.degradations``: float32 RGB (H, W, 3) in [0, 1] in,
a new image of the same shape out, every parameter drawn from the given
``numpy.random.Generator`` unless passed.
"""
import math
from typing import Optional, Tuple

import cv2
import numpy as np

from scipy.signal import fftconvolve

__all__ = ['KINDS', 'EXTENT_FAMILIES', 'support_extent', 'spline_kernel', 'defocus_kernel', 'linear_kernel',
           'extent_kernel', 'blur', 'streak_rain', 'gaussian_noise', 'degrade_heldout']

KINDS = ('deblur', 'derain', 'denoise')
EXTENT_FAMILIES = ('spline', 'defocus', 'linear')  # what extent_kernel draws from, equally often
RAIN_COLOUR = np.array([0.82, 0.86, 0.92], dtype=np.float32)  # cold, slightly blue white


def _catmull_rom(points: np.ndarray, samples_per_segment: int = 64) -> np.ndarray:
    """A smooth curve (n, 2) through control points (k, 2) (the ends are repeated as tangents)."""
    p = np.vstack([points[:1], points, points[-1:]])
    t = np.linspace(0, 1, samples_per_segment, endpoint=False)[:, None]
    curve = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        curve.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                            + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    curve.append(p[-2][None])
    return np.vstack(curve)


def _disk(radius: float) -> np.ndarray:
    """A normalised anti-aliased disk (defocus) kernel, odd side, 4x supersampled."""
    half = math.ceil(radius)
    ss = 4
    grid = (np.arange((2 * half + 1) * ss) + 0.5) / ss - (half + 0.5)
    inside = (grid[:, None] ** 2 + grid[None, :] ** 2 <= radius ** 2).astype(np.float64)
    disk = inside.reshape(2 * half + 1, ss, 2 * half + 1, ss).mean(axis=(1, 3))
    return disk / disk.sum()


def support_extent(kernel: np.ndarray) -> int:
    """Blur extent in px: the larger side of the box around the pixels at >= 1% of the peak."""
    strong = np.argwhere(kernel >= 0.01 * kernel.max())
    return int((strong.max(axis=0) - strong.min(axis=0)).max()) + 1


def _splatted_path(path: np.ndarray, defocus: float, max_size: int) -> np.ndarray:
    """A centred path (n, 2) as Gaussian splats (sigma 0.5 px, equal weights) convolved with a disk."""
    reach = float(np.abs(path).max())
    half = min(math.ceil(reach + defocus + 2), (max_size - 1) // 2)
    coords = np.arange(2 * half + 1) - half
    gx = np.exp(-0.5 * ((coords[None, :] - path[:, :1]) / 0.5) ** 2)
    gy = np.exp(-0.5 * ((coords[None, :] - path[:, 1:]) / 0.5) ** 2)
    kernel = gy.T @ gx
    kernel = cv2.filter2D(kernel / kernel.sum(), -1, _disk(defocus), borderType=cv2.BORDER_CONSTANT)
    return (kernel / kernel.sum()).astype(np.float32)


def spline_kernel(rng: np.random.Generator, max_size: int = 31, reach: Optional[float] = None,
                  defocus: Optional[float] = None, extent: Optional[int] = None) -> np.ndarray:
    """Blur kernel (k, k), k odd <= max_size, summing to 1: a spline camera path, splatted, defocused.

    reach: the path's largest distance from its centre in px (drawn U(2, 12) if None);
    defocus: disk radius in px (drawn U(1, 2) if None, at most (extent - 3) / 4 when extent is given);
    extent: if given, the path is rescaled (up to six times, by the measured miss) until the
    kernel's ``support_extent`` is `extent` (3..max_size) within a pixel; `reach` is then ignored.
    """
    reach = float(rng.uniform(2.0, 12.0)) if reach is None else float(reach)
    defocus = float(rng.uniform(1.0, 2.0)) if defocus is None else float(defocus)
    controls = rng.normal(0.0, 1.0, (int(rng.integers(3, 6)), 2)).cumsum(axis=0)
    path = _catmull_rom(controls)
    path -= path.mean(axis=0)
    unit = path / max(np.abs(path).max(), 1e-9)
    if extent is None:
        return _splatted_path(unit * reach, defocus, max_size)
    # Small extents leave room for only a small disk beside the path.
    defocus = min(defocus, max(0.5, (extent - 3) / 4))
    side = float(np.ptp(unit, axis=0).max())
    scale = max(extent - 2 * defocus - 3, 0.5) / side
    for _ in range(6):
        kernel = _splatted_path(unit * scale, defocus, max_size)
        miss = extent - support_extent(kernel)
        if abs(miss) <= 1:
            break
        scale = max(scale + miss / side, 0.1)
    return kernel


def defocus_kernel(extent: int) -> np.ndarray:
    """Defocus disk of radius (extent - 1) / 2 px: extent odd gives exactly that support_extent,
    even one pixel less (a centred disk has an odd support)."""
    return _disk(max((extent - 1) / 2, 0.5)).astype(np.float32)


def linear_kernel(extent: int, angle: float) -> np.ndarray:
    """Straight uniform motion at `angle` degrees whose bounding box side is `extent` px.

    The segment, long enough that its larger projection spans extent - 1 px between the centres
    of its end pixels, is sampled 2,000 times and binned on an 8x finer grid, then averaged
    back to pixels (area sampling, unlike the splats of the spline paths)."""
    theta = math.radians(angle)
    length = (extent - 1) / max(abs(math.cos(theta)), abs(math.sin(theta)))
    half = (extent - 1) // 2 + 1
    size, fine = 2 * half + 1, 8
    t = np.linspace(-0.5, 0.5, 2000)
    # Fine-grid bin of each sample; the pixel centre (0, 0) sits in the middle of the middle pixel.
    fx = np.floor((t * length * math.cos(theta) + half + 0.5) * fine).astype(int)
    fy = np.floor((-t * length * math.sin(theta) + half + 0.5) * fine).astype(int)
    grid = np.zeros((size * fine, size * fine))
    np.add.at(grid, (np.clip(fy, 0, size * fine - 1), np.clip(fx, 0, size * fine - 1)), 1.0)
    kernel = grid.reshape(size, fine, size, fine).sum(axis=(1, 3))
    return (kernel / kernel.sum()).astype(np.float32)


def extent_kernel(rng: np.random.Generator, extent: int, family: Optional[str] = None) -> np.ndarray:
    """A held-out blur kernel (k, k), k odd <= 33, summing to 1, of ``support_extent`` `extent`
    (3..31, within a pixel): a family of EXTENT_FAMILIES (drawn if None), its shape from `rng`."""
    family = EXTENT_FAMILIES[int(rng.integers(len(EXTENT_FAMILIES)))] if family is None else family
    if family == 'defocus':
        return defocus_kernel(extent)
    if family == 'linear':
        return linear_kernel(extent, float(rng.uniform(0.0, 180.0)))
    if family == 'spline':
        # 33x33 leaves the splats' faint fringe room beyond a 31 px support.
        return spline_kernel(rng, max_size=33, extent=extent)
    raise ValueError(f"family must be one of {', '.join(EXTENT_FAMILIES)}, got {family!r}")


def _convolve(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Each channel convolved with `kernel` by FFT, on the image mirrored about its edge pixels."""
    ky, kx = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = np.pad(img, ((ky, ky), (kx, kx), (0, 0)), mode='reflect')
    return np.stack([fftconvolve(padded[:, :, c], kernel, mode='valid') for c in range(img.shape[2])], axis=-1)


def blur(img: np.ndarray, rng: np.random.Generator, kernel: Optional[np.ndarray] = None,
         noise_sigma: float = 1.0) -> np.ndarray:
    """Blur with a ``spline_kernel`` (or `kernel`), then add Gaussian noise of `noise_sigma`/255."""
    if kernel is None:
        kernel = spline_kernel(rng)
    out = _convolve(np.asarray(img, dtype=np.float32), kernel).astype(np.float32)
    out = out + rng.standard_normal(out.shape, dtype=np.float32) * np.float32(noise_sigma / 255)
    return np.clip(out, 0, 1).astype(np.float32)


def streak_rain(img: np.ndarray, rng: np.random.Generator, count: Optional[int] = None,
                angle: Optional[float] = None, length_range: Tuple[float, float] = (10.0, 40.0),
                opacity_range: Tuple[float, float] = (0.25, 0.7)) -> np.ndarray:
    """Rain drawn streak by streak and alpha-blended towards RAIN_COLOUR.

    count: number of streaks (drawn as U(150, 900) per 10^5 pixels if None);
    angle: common direction in degrees from vertical (drawn U(-35, 35) if None). Each
    streak leans up to 6 degrees away from it and has its own length (`length_range`),
    width (1 or 2 px) and opacity (`opacity_range`); overlapping streaks keep the larger opacity.
    """
    img = np.asarray(img, dtype=np.float32)
    h, w = img.shape[:2]
    if count is None:
        count = int(rng.uniform(150, 900) * h * w / 1e5)
    angle = float(rng.uniform(-35.0, 35.0)) if angle is None else float(angle)
    margin = int(math.ceil(length_range[1] / 2)) + 3
    alpha = np.zeros((h + 2 * margin, w + 2 * margin), dtype=np.float32)
    for _ in range(count):
        theta = math.radians(angle + rng.uniform(-6.0, 6.0))
        length = rng.uniform(*length_range)
        cx, cy = int(rng.integers(0, w + margin)), int(rng.integers(0, h + margin))
        dx, dy = math.sin(theta) * length / 2, math.cos(theta) * length / 2
        # Each streak is drawn on its own small canvas (2 margin + 1 square) centred on it.
        local = np.zeros((2 * margin + 1, 2 * margin + 1), dtype=np.float32)
        p0 = (int(round((margin - dx) * 16)), int(round((margin - dy) * 16)))
        p1 = (int(round((margin + dx) * 16)), int(round((margin + dy) * 16)))
        cv2.line(local, p0, p1, float(rng.uniform(*opacity_range)), thickness=int(rng.integers(1, 3)),
                 lineType=cv2.LINE_AA, shift=4)
        window = alpha[cy:cy + 2 * margin + 1, cx:cx + 2 * margin + 1]
        np.maximum(window, local[:window.shape[0], :window.shape[1]], out=window)
    alpha = alpha[margin:margin + h, margin:margin + w]
    alpha = cv2.GaussianBlur(alpha, (0, 0), sigmaX=0.6)[:, :, None]
    return np.clip(img * (1 - alpha) + RAIN_COLOUR * alpha, 0, 1).astype(np.float32)


def gaussian_noise(img: np.ndarray, rng: np.random.Generator, sigma: float = 25.0) -> np.ndarray:
    """Additive white Gaussian noise of std `sigma`/255, clipped to [0, 1]."""
    img = np.asarray(img, dtype=np.float32)
    return np.clip(img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma / 255), 0, 1)


_FUNCTIONS = {'deblur': blur, 'derain': streak_rain, 'denoise': gaussian_noise}


def degrade_heldout(img: np.ndarray, kind: str, rng: np.random.Generator, **params) -> np.ndarray:
    """Degrade `img` with the held-out generator: kind 'deblur', 'derain' or 'denoise'."""
    if kind not in _FUNCTIONS:
        raise ValueError(f"unknown degradation {kind!r}: choose one of {', '.join(KINDS)}")
    return _FUNCTIONS[kind](img, rng, **params)
