"""Synthetic blur (utils/data/degradations.py's 'deblur'): camera-shake trajectories, defocus disks
and Gaussians, drawn with a spread of extents, convolved with the image, with a little noise and
an optional JPEG round trip. Every draw comes from the caller's ``numpy.random.Generator``."""
import math
from typing import Optional, Tuple

import cv2
import numpy as np

from utils.data.image_ops import check_image, jpeg_roundtrip, uniform

__all__ = ['shake_trajectory', 'rasterize_trajectory', 'motion_kernel', 'convolve', 'EXTENT_THRESHOLD',
           'EXTENT_RANGE', 'BLUR_FAMILY_PROBS', 'COMBINE_PROB', 'GAUSSIAN_EDGE', 'kernel_extent', 'disk_kernel',
           'gaussian_kernel', 'shake_kernel', 'combine_kernels', 'blur_kernel', 'motion_blur']


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
    anxiety = uniform(rng, anxiety, (0.0, 0.1))
    centripetal = uniform(rng, centripetal, (0.0, 0.7))
    gaussian = uniform(rng, gaussian, (0.0, 10.0))
    shake_prob = uniform(rng, shake_prob, (0.0, 0.2))
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
    length = uniform(rng, length, length_range)
    return rasterize_trajectory(shake_trajectory(rng, length, **trajectory), max_size)


def convolve(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """True convolution of each channel of (H, W, C) with an odd-sized kernel, reflect (…cb|abc…) borders."""
    if kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f'kernel sides must be odd, got {kernel.shape}')
    # filter2D correlates; flipping the kernel makes it a convolution.
    flipped = np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float32)
    return cv2.filter2D(np.ascontiguousarray(img, dtype=np.float32), -1, flipped,
                        borderType=cv2.BORDER_REFLECT_101)


# ----------------------------------------------------------------------------- blur families

# Blur extent: the side, in pixels, of the tight square-or-rectangle bounding box of the kernel's
# pixels holding at least EXTENT_THRESHOLD of its peak value, the larger of its two sides
# (``kernel_extent``). A defocus disk of integer radius r has extent 2r + 1.
EXTENT_THRESHOLD = 0.01
# Drawn kernels have an extent spread evenly over this range (px); every kernel fits in 31x31.
EXTENT_RANGE = (3.0, 31.0)
# How often each blur family is drawn when none is asked for (motion_blur / blur_kernel).
BLUR_FAMILY_PROBS = {'shake': 0.5, 'defocus': 0.25, 'gaussian': 0.25}
# Share of shake kernels convolved with a small disk or Gaussian (half each): shake and defocus at once.
COMBINE_PROB = 0.3
# A drawn Gaussian is cut where it falls to this fraction of its peak along its wider axis, so the
# cut (the kernel's box) is its extent; 0.05 keeps ~99% of the mass of a 1-D Gaussian (2.45 sigma).
GAUSSIAN_EDGE = 0.05


def kernel_extent(kernel: np.ndarray, threshold: float = EXTENT_THRESHOLD) -> int:
    """Blur extent (px) of a 2-D kernel: the larger side of the tight bounding box of the pixels
    holding at least `threshold` x the kernel's peak (a relative threshold, so that the faint
    tails of a Gaussian or the bilinear fringe of a path do not count)."""
    kernel = np.asarray(kernel)
    mask = kernel >= threshold * float(kernel.max())
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1)


def disk_kernel(radius: float) -> np.ndarray:
    """Defocus PSF (k, k), k = 2 ceil(radius + 0.5) - 1, summing to 1: an anti-aliased disk.

    Each pixel's weight approximates the share of it inside the circle of `radius` (>= 0.5) px
    by clip(radius + 0.5 - distance, 0, 1), which is exact for pixels the edge cuts straight
    through; so an integer radius r gives a half-weight rim pixel on each axis and extent 2r + 1.
    The estimate is rough for the few rim pixels of small disks: the second moment is 2% above
    a true disk's (r^2 / 4 + 1/12) at r = 3 and 20% above at r = 1.
    """
    if radius < 0.5:
        raise ValueError(f'disk radius must be at least 0.5 px, got {radius}')
    half = math.ceil(radius + 0.5) - 1
    ys, xs = np.mgrid[-half:half + 1, -half:half + 1]
    kernel = np.clip(radius + 0.5 - np.hypot(xs, ys), 0.0, 1.0)
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_kernel(sigma_major: float, sigma_minor: float, angle: float, half: int) -> np.ndarray:
    """Anisotropic Gaussian PSF (2 half + 1, 2 half + 1) summing to 1, sampled at pixel centres.

    Standard deviations `sigma_major` along the direction `angle` (degrees, counter-clockwise
    from the x axis) and `sigma_minor` across it: covariance R diag(major^2, minor^2) R^T.
    Mass beyond the box is cut off, so the box should reach ~2.5 sigma for the second moment to
    be the covariance.
    """
    theta = math.radians(angle)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    inverse = np.linalg.inv(rot @ np.diag([sigma_major ** 2, sigma_minor ** 2]) @ rot.T)
    ys, xs = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float64)
    q = inverse[0, 0] * xs ** 2 + 2 * inverse[0, 1] * xs * ys + inverse[1, 1] * ys ** 2
    kernel = np.exp(-0.5 * q)
    return (kernel / kernel.sum()).astype(np.float32)


def _random_gaussian(rng: np.random.Generator, extent: float) -> np.ndarray:
    """A rotated anisotropic Gaussian of about `extent` px: its box is the extent, and its wider
    projection falls to GAUSSIAN_EDGE of the peak at the box's edge."""
    half = max(1, int(round((extent - 1) / 2)))
    aspect = float(rng.uniform(0.2, 1.0))  # minor / major sigma: from a smear to round
    angle = float(rng.uniform(0.0, 180.0))
    theta = math.radians(angle)
    # The bounding box side along x (y) follows the projected standard deviation on x (y).
    projected = math.sqrt(max(math.cos(theta) ** 2 + (aspect * math.sin(theta)) ** 2,
                              math.sin(theta) ** 2 + (aspect * math.cos(theta)) ** 2))
    major = half / (projected * math.sqrt(2 * math.log(1 / GAUSSIAN_EDGE)))
    # A floor of 0.4 px across keeps the discrete samples from missing a sub-pixel-thin ridge.
    return gaussian_kernel(major, max(aspect * major, 0.4), angle, half)


def shake_kernel(rng: np.random.Generator, extent: float, max_size: int = 31, **trajectory) -> np.ndarray:
    """Camera-shake PSF (k, k), k odd <= max_size, summing to 1, of about `extent` px.

    A ``shake_trajectory`` (keyword arguments go to it) scaled so that its bounding box's larger
    side is extent - 1.5 px (the bilinear splat adds one to two pixels), then rescaled once by
    the measured miss: the kernel's extent is within about a pixel of `extent` unless fitting
    its centroid-centred path into max_size shrinks it.
    """
    path = shake_trajectory(rng, float(extent), **trajectory)
    span = float(np.ptp(path, axis=0).max())
    path = path * (max(extent - 1.5, 0.5) / max(span, 1e-9))
    kernel = rasterize_trajectory(path, max_size)
    # One correction for the fringe and the fit (where the path's centroid sits off-centre): rescale
    # by the measured miss; a path already shrunk to fit cannot grow, the rasteriser shrinks it again.
    measured = kernel_extent(kernel)
    if measured != round(extent) and measured > 1:
        kernel = rasterize_trajectory(path * ((extent - 1) / (measured - 1)), max_size)
    return kernel


def combine_kernels(first: np.ndarray, second: np.ndarray, max_size: int = 31) -> np.ndarray:
    """Full 2-D convolution of two odd-sided kernels (both blurs at once), centre-cropped to at
    most max_size per side (the crop only cuts near-empty borders of kernels that fit) and
    renormalised to sum 1."""
    h1, w1 = second.shape[0] // 2, second.shape[1] // 2
    padded = np.pad(np.asarray(first, dtype=np.float32), ((h1, h1), (w1, w1)))
    out = convolve(padded[:, :, None], second)
    out = out[:, :, 0] if out.ndim == 3 else out  # filter2D drops a single channel axis
    cy, cx = (out.shape[0] - min(out.shape[0], max_size)) // 2, (out.shape[1] - min(out.shape[1], max_size)) // 2
    out = out[cy:out.shape[0] - cy, cx:out.shape[1] - cx]
    out = np.clip(out, 0, None)
    return (out / out.sum()).astype(np.float32)


def blur_kernel(rng: np.random.Generator, family: Optional[str] = None, extent: Optional[float] = None,
                max_size: int = 31) -> np.ndarray:
    """A random blur PSF (k, k), k odd <= max_size, non-negative, summing to 1.

    Args:
        family: 'shake' (camera shake; COMBINE_PROB of those of extent >= 8 px convolved with a disk of radius
            U(1, 2) or an isotropic Gaussian of sigma U(0.5, 1.2)), 'defocus' (disk),
            'gaussian' (anisotropic, rotated), or 'classic' (``motion_kernel``: shake with its
            path length, not its extent, drawn from U(5, 40) px: the project's first generator,
            kept for the bundled samples); drawn from BLUR_FAMILY_PROBS if None.
        extent: the kernel's ``kernel_extent`` in px (within about a pixel); drawn uniformly from
            EXTENT_RANGE (capped at max_size) if None. Ignored by 'classic'.
    """
    if family is None:
        names = list(BLUR_FAMILY_PROBS)
        family = names[int(np.searchsorted(np.cumsum(list(BLUR_FAMILY_PROBS.values())), rng.random(),
                                           side='right'))]
    if family == 'classic':
        return motion_kernel(rng, max_size)
    if family not in BLUR_FAMILY_PROBS:
        raise ValueError(f"blur family must be one of {', '.join(BLUR_FAMILY_PROBS)} or 'classic', got {family!r}")
    extent = uniform(rng, extent, (EXTENT_RANGE[0], min(EXTENT_RANGE[1], max_size)))
    if family == 'defocus':
        return disk_kernel(max((extent - 1) / 2, 0.5))
    if family == 'gaussian':
        return _random_gaussian(rng, extent)
    # Below 8 px a disk or Gaussian on top would already be most of the extent: shake alone.
    if extent < 8 or rng.random() >= COMBINE_PROB:
        return shake_kernel(rng, extent, max_size)
    small = disk_kernel(rng.uniform(1.0, 2.0)) if rng.random() < 0.5 else \
        gaussian_kernel(*(2 * [float(rng.uniform(0.5, 1.2))]), 0.0, 3)
    # The small blur widens the path by its own extent - 1, so the path is drawn that much shorter.
    path_extent = max(extent - (kernel_extent(small) - 1), 3.0)
    return combine_kernels(shake_kernel(rng, path_extent, max_size), small, max_size)


def motion_blur(img: np.ndarray, rng: np.random.Generator, kernel: Optional[np.ndarray] = None,
                max_size: int = 31, family: Optional[str] = None, extent: Optional[float] = None,
                noise_sigma: Optional[float] = None,
                noise_range: Tuple[float, float] = (0.0, 2.0), jpeg: bool = True,
                jpeg_quality: Optional[int] = None, quality_range: Tuple[int, int] = (70, 95)) -> np.ndarray:
    """Blur (camera shake, defocus or Gaussian): convolve with a PSF, add a little Gaussian noise,
    re-compress as JPEG.

    Args:
        kernel: PSF to use (odd sides, should sum to 1); drawn by ``blur_kernel`` if None.
        max_size: largest side of a drawn PSF.
        family, extent: passed to ``blur_kernel`` (None: drawn); family 'classic' is the
            camera-shake-only first generator of this project.
        noise_sigma: Gaussian noise std on the 0-255 scale (0: none); drawn from `noise_range` if None.
        jpeg: re-compress the result as JPEG, as cameras and web images are.
        jpeg_quality: JPEG quality; drawn from `quality_range` (inclusive) if None.

    A drawn blur of a 96x96 patch with context (128x128) takes about 2.2 ms, 160x160 (192x192)
    4.1 ms, one core, best of 3 x 100 draws (the shake path's Python loop is half of it).
    """
    img = check_image(img)
    if kernel is None:
        kernel = blur_kernel(rng, family, extent, max_size)
    out = convolve(img, kernel)
    sigma = uniform(rng, noise_sigma, noise_range)
    if sigma > 0:
        out = out + rng.standard_normal(out.shape, dtype=np.float32) * np.float32(sigma / 255)
    out = np.clip(out, 0, 1)
    if jpeg:
        quality = int(rng.integers(quality_range[0], quality_range[1] + 1)) if jpeg_quality is None else jpeg_quality
        out = jpeg_roundtrip(out, quality)
    return out.astype(np.float32)
