"""Synthetic rain (utils/data/degradations.py's 'derain'): layers of streaks of drawn density,
length, width and angle, composited over the image by one of three blends. Every draw comes
from the caller's ``numpy.random.Generator``."""
import math
from typing import Optional, Tuple

import cv2
import numpy as np

from utils.data.image_ops import check_image, uniform

__all__ = ['streak_kernel', 'rain_layer', 'OVER_PROB', 'ADD_PROB', 'DENSITY_RANGE', 'LENGTH_RANGE', 'WIDTH_RANGE',
           'INTENSITY_RANGE', 'SUBLAYERS', 'MIN_STREAKS', 'ANGLE_SPREAD', 'varied_rain_layer', 'add_rain']


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
             add_prob: float = ADD_PROB, colour: Optional[float] = None, classic: bool = False,
             density_range: Tuple[float, float] = DENSITY_RANGE,
             intensity_range: Tuple[float, float] = INTENSITY_RANGE) -> np.ndarray:
    """Synthetic rain: sparse noise -> motion-blurred lines around one common angle -> composited
    over the photo.

    Args:
        density: streaks per pixel; drawn log-uniformly from `density_range` if None (raised to
            MIN_STREAKS / (H W) on images too small to expect that many).
        angle: common streak angle in degrees from vertical; drawn from U(-30, 30) if None.
        length: common streak length in pixels; drawn from LENGTH_RANGE if None.
        width: streak width in pixels; drawn from WIDTH_RANGE if None.
        intensity: brightness (or opacity) of a saturated streak; drawn from `intensity_range` if None.
        blend: how the streak layer r meets the photo v:
            'screen': v + r (1 - v), light added, never past white (only brightens);
            'add': v + r, clipped (Rain100L/Rain100H-style synthesis O = clip(B + R));
            'over': v (1 - r) + c r, semi-opaque streaks of a neutral grey c, which darken
            whatever is brighter than c (rain against a bright sky);
            None: 'over' with probability `over_prob`, 'add' with `add_prob`, else 'screen'.
        colour: the grey level c of 'over' rain; drawn from U(0.7, 1.0) if None.
        classic: the first generator of this project, kept for the bundled samples: density U(0.0005,
            0.006), length U(8, 30), and one layer (``rain_layer``) of a single angle, width and
            opacity range; otherwise the layer is a ``varied_rain_layer``.
        density_range, intensity_range: where density and intensity are drawn from when not given
            (defaults DENSITY_RANGE and INTENSITY_RANGE; TRAINING.RAIN_DENSITY and
            TRAINING.RAIN_INTENSITY set them for a training run); `classic` keeps its own density range.

    Time per draw, one core, best of 3 x 100 draws: 1.6 ms for a 96x96 patch with its 16 px of
    context (128x128), 3.4 ms for 160x160 (192x192); the shared machine has shown up to 3x that
    under load.
    """
    img = check_image(img)
    if blend is None:
        u = rng.random()
        blend = 'over' if u < over_prob else 'add' if u < over_prob + add_prob else 'screen'
    if blend not in ('screen', 'add', 'over'):
        raise ValueError(f"blend must be 'screen', 'add' or 'over', got {blend!r}")
    if density is None:
        low, high = (0.0005, 0.006) if classic else density_range
        # The classic draw was uniform; the new one is log-uniform, as light rain as likely as heavy.
        density = rng.uniform(low, high) if classic else math.exp(rng.uniform(math.log(low), math.log(high)))
        if not classic:
            # Tiny crops (tests, thumbnails) would often hold no streak at the lightest densities;
            # training patches with context (>= 128x128: 16,384 px x 0.0002 = 3.3) never hit the floor.
            density = max(density, MIN_STREAKS / (img.shape[0] * img.shape[1]))
    angle = uniform(rng, angle, (-30.0, 30.0))
    length = uniform(rng, length, (8.0, 30.0) if classic else LENGTH_RANGE)
    width = uniform(rng, width, WIDTH_RANGE)
    intensity = uniform(rng, intensity, intensity_range)
    layer = rain_layer if classic else varied_rain_layer
    rain = layer(img.shape[:2], rng, float(density), angle, length, width, intensity)[:, :, None]
    if blend == 'over':
        grey = np.float32(uniform(rng, colour, (0.7, 1.0)))
        out = img * (1 - rain) + grey * rain
    else:
        # Written as img + something >= 0, so this rain never darkens a pixel, not even by rounding.
        out = img + rain * (1 - img) if blend == 'screen' else img + rain
    return np.clip(out, 0, 1).astype(np.float32)
