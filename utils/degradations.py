"""Synthetic degradations: blur (camera shake, defocus, Gaussian), rain streaks and noise, seeded
and reproducible.

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
           'EXTENT_RANGE', 'EXTENT_THRESHOLD', 'BLUR_FAMILY_PROBS', 'COMBINE_PROB', 'kernel_extent', 'disk_kernel',
           'gaussian_kernel', 'shake_kernel', 'combine_kernels', 'blur_kernel', 'motion_blur',
           'OVER_PROB', 'ADD_PROB', 'DENSITY_RANGE', 'LENGTH_RANGE', 'WIDTH_RANGE', 'INTENSITY_RANGE',
           'SUBLAYERS', 'MIN_STREAKS', 'ANGLE_SPREAD', 'streak_kernel', 'rain_layer', 'varied_rain_layer',
           'add_rain', 'add_noise', 'blind_noise', 'degrade']

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
            path length, not its extent, drawn from U(5, 40) px: the generator before issue 20,
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
    extent = _uniform(rng, extent, (EXTENT_RANGE[0], min(EXTENT_RANGE[1], max_size)))
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


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode (H, W, 3) RGB as JPEG at `quality` (0-100) and decode it again; 8-bit valued result."""
    rgb8 = to_uint8(img)
    ok, buf = cv2.imencode('.jpg', cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError('OpenCV could not encode a JPEG')
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


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
            camera-shake-only generator from before issue 20.
        noise_sigma: Gaussian noise std on the 0-255 scale (0: none); drawn from `noise_range` if None.
        jpeg: re-compress the result as JPEG, as cameras and web images are.
        jpeg_quality: JPEG quality; drawn from `quality_range` (inclusive) if None.

    A drawn blur of a 96x96 patch with context (128x128) takes about 2.2 ms, 160x160 (192x192)
    4.1 ms, one core, best of 3 x 100 draws (the shake path's Python loop is half of it).
    """
    img = _check_image(img)
    if kernel is None:
        kernel = blur_kernel(rng, family, extent, max_size)
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


# How often each blend is drawn when none is asked for; 'screen' gets the rest (0.25).
OVER_PROB = 0.5
ADD_PROB = 0.25
# Streaks per pixel, drawn log-uniformly (each decade as likely): from a few drops to a downpour.
DENSITY_RANGE = (0.0002, 0.01)
LENGTH_RANGE = (8.0, 60.0)  # the common streak length (px); each sub-layer's is 0.6-1 of it
WIDTH_RANGE = (1.0, 2.5)
INTENSITY_RANGE = (0.3, 0.9)
SUBLAYERS = (2, 4)  # sub-layers per rain layer (inclusive): streak populations of their own look
MIN_STREAKS = 3  # a drawn density gives at least this many expected streaks, however small the image
ANGLE_SPREAD = 5.0  # degrees: each sub-layer leans up to this far from the common angle


def varied_rain_layer(shape: Tuple[int, int], rng: np.random.Generator, density: float, angle: float,
                      length: float, width: float, intensity: float) -> np.ndarray:
    """Rain streaks (H, W) in [0, intensity] whose angle, length, width and opacity vary.

    The streaks are split between SUBLAYERS sub-layers (random shares of `density`); each
    sub-layer is a ``rain_layer`` of its own angle (`angle` + U(-ANGLE_SPREAD, ANGLE_SPREAD)),
    length (`length` x U(0.6, 1)), width (`width` x U(0.6, 1.4), at least 1 px) and opacity
    (U(0.5, 1)); the sub-layers add up and saturate at 1 before scaling by `intensity`.
    One seed field is drawn for all sub-layers (a seed's uniform number picks its sub-layer),
    so the cost is mostly one filter2D per sub-layer (see ``add_rain`` for timings).
    """
    count = int(rng.integers(SUBLAYERS[0], SUBLAYERS[1] + 1))
    shares = rng.random(count) + 0.2  # no sub-layer vanishes entirely
    bounds = np.concatenate([[0.0], np.cumsum(shares / shares.sum())]) * density
    draw = rng.random(shape)
    brightness = rng.uniform(0.5, 1.0, shape).astype(np.float32)
    total = np.zeros(shape, dtype=np.float32)
    for i in range(count):
        seeds = ((draw >= bounds[i]) & (draw < bounds[i + 1])) * brightness
        sub_angle = angle + rng.uniform(-ANGLE_SPREAD, ANGLE_SPREAD)
        sub_length = length * rng.uniform(0.6, 1.0)
        sub_width = max(1.0, width * rng.uniform(0.6, 1.4))
        streaks = cv2.filter2D(seeds, -1, streak_kernel(sub_length, sub_angle), borderType=cv2.BORDER_CONSTANT)
        total += cv2.GaussianBlur(streaks, (0, 0), sigmaX=sub_width / 3) * np.float32(rng.uniform(0.5, 1.0))
    return np.clip(total, 0, 1) * np.float32(intensity)


def add_rain(img: np.ndarray, rng: np.random.Generator, density: Optional[float] = None,
             angle: Optional[float] = None, length: Optional[float] = None, width: Optional[float] = None,
             intensity: Optional[float] = None, blend: Optional[str] = None, over_prob: float = OVER_PROB,
             add_prob: float = ADD_PROB, colour: Optional[float] = None, classic: bool = False) -> np.ndarray:
    """Synthetic rain: sparse noise -> motion-blurred lines around one common angle -> composited
    over the photo.

    Args:
        density: streaks per pixel; drawn log-uniformly from DENSITY_RANGE if None (raised to
            MIN_STREAKS / (H W) on images too small to expect that many).
        angle: common streak angle in degrees from vertical; drawn from U(-30, 30) if None.
        length: common streak length in pixels; drawn from LENGTH_RANGE if None.
        width: streak width in pixels; drawn from WIDTH_RANGE if None.
        intensity: brightness (or opacity) of a saturated streak; drawn from INTENSITY_RANGE if None.
        blend: how the streak layer r meets the photo v:
            'screen': v + r (1 - v), light added, never past white (only brightens);
            'add': v + r, clipped (Rain100L/Rain100H-style synthesis O = clip(B + R));
            'over': v (1 - r) + c r, semi-opaque streaks of a neutral grey c, which darken
            whatever is brighter than c (rain against a bright sky);
            None: 'over' with probability `over_prob`, 'add' with `add_prob`, else 'screen'.
        colour: the grey level c of 'over' rain; drawn from U(0.7, 1.0) if None.
        classic: the generator before issue 20, kept for the bundled samples: density U(0.0005,
            0.006), length U(8, 30), and one layer (``rain_layer``) of a single angle, width and
            opacity range; otherwise the layer is a ``varied_rain_layer``.

    Time per draw, one core, best of 3 x 100 draws: 1.6 ms for a 96x96 patch with its 16 px of
    context (128x128), 3.4 ms for 160x160 (192x192); the shared machine has shown up to 3x that
    under load.
    """
    img = _check_image(img)
    if blend is None:
        u = rng.random()
        blend = 'over' if u < over_prob else 'add' if u < over_prob + add_prob else 'screen'
    if blend not in ('screen', 'add', 'over'):
        raise ValueError(f"blend must be 'screen', 'add' or 'over', got {blend!r}")
    if density is None:
        low, high = (0.0005, 0.006) if classic else DENSITY_RANGE
        # The classic draw was uniform; the new one is log-uniform, as light rain as likely as heavy.
        density = rng.uniform(low, high) if classic else math.exp(rng.uniform(math.log(low), math.log(high)))
        if not classic:
            # Tiny crops (tests, thumbnails) would often hold no streak at the lightest densities;
            # training patches with context (>= 128x128: 16,384 px x 0.0002 = 3.3) never hit the floor.
            density = max(density, MIN_STREAKS / (img.shape[0] * img.shape[1]))
    angle = _uniform(rng, angle, (-30.0, 30.0))
    length = _uniform(rng, length, (8.0, 30.0) if classic else LENGTH_RANGE)
    width = _uniform(rng, width, WIDTH_RANGE)
    intensity = _uniform(rng, intensity, INTENSITY_RANGE)
    layer = rain_layer if classic else varied_rain_layer
    rain = layer(img.shape[:2], rng, float(density), angle, length, width, intensity)[:, :, None]
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
