"""Synthetic degradations: reproducible, well-formed, and degrading by the amounts the formulas say."""
import importlib.util
import math
import os

import cv2
import numpy as np
import pytest
from scipy import ndimage

from utils.data.degradations import (BLUR_FAMILY_PROBS, EXTENT_RANGE, KINDS, LENGTH_RANGE, add_noise, add_rain,
                                blind_noise, blur_kernel, convolve, degrade, disk_kernel, gaussian_kernel,
                                jpeg_roundtrip, kernel_extent, motion_blur, motion_kernel, rain_layer,
                                shake_trajectory, streak_kernel)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def psnr(a, b):
    return 10 * math.log10(1.0 / float(np.mean((a.astype(np.float64) - b) ** 2)))


def photo_like(h=40, w=56, seed=0):
    """A smooth colour image with texture, float32 (h, w, 3) in [0.1, 0.9]."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    img = np.stack([0.5 + 0.3 * np.sin(7 * x + 2 * y), 0.2 + 0.6 * y, 0.5 + 0.2 * np.cos(11 * x * y)], -1)
    return np.clip(img + 0.05 * rng.standard_normal(img.shape), 0.1, 0.9).astype(np.float32)


def iid_texture(size=96, seed=5):
    """Independent uniform pixels: variance 1/12 per pixel, the case blur formulas are exact for."""
    return np.random.default_rng(seed).random((size, size, 3)).astype(np.float32)


# ----------------------------------------------------------------------------- common contract

@pytest.mark.parametrize('kind', KINDS)
def test_same_seed_same_image_other_seed_other_image(kind):
    img = photo_like()
    first = degrade(img, kind, np.random.default_rng(7))
    again = degrade(img, kind, np.random.default_rng(7))
    other = degrade(img, kind, np.random.default_rng(8))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize('kind', KINDS + ('Deblurring', 'Deraining', 'Denoising'))
def test_shape_dtype_range_kept_and_input_untouched(kind):
    img = photo_like(37, 45)
    before = img.copy()
    out = degrade(img, kind, np.random.default_rng(0))
    assert out.shape == img.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    assert not np.array_equal(out, img)
    assert np.array_equal(img, before)


def test_bad_inputs_are_refused_with_a_reason():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match='unknown degradation'):
        degrade(photo_like(), 'sharpen', rng)
    with pytest.raises(ValueError, match='float'):
        degrade((photo_like() * 255).astype(np.uint8), 'denoise', rng)
    with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
        degrade(photo_like()[:, :, 0], 'denoise', rng)


# ----------------------------------------------------------------------------- noise

@pytest.mark.parametrize('sigma', [5, 25, 50])
def test_gaussian_noise_psnr_follows_sigma(sigma):
    # MSE = (sigma / 255)^2, so PSNR = 20 log10(255 / sigma): 34.15, 20.17, 14.15 dB. The image
    # stays in [0.35, 0.65] so clipping at 0 and 1 is too rare to matter even at sigma 50
    # (0.35 = 1.8 sigma: it cuts ~4% of the draws by a little; allowed by the tolerance).
    rng = np.random.default_rng(3)
    clean = rng.uniform(0.35, 0.65, (96, 96, 3)).astype(np.float32)
    noisy = add_noise(clean, np.random.default_rng(4), sigma=sigma)
    assert psnr(noisy, clean) == pytest.approx(20 * math.log10(255 / sigma), abs=0.3)


def test_poisson_gaussian_noise_variance():
    # Constant 0.5 with 100 photons at white: Poisson(50) / 100 has variance 50 / 100^2 = 0.005;
    # plus Gaussian (10/255)^2 = 0.001538: total 0.006538, PSNR 21.85 dB.
    clean = np.full((96, 96, 3), 0.5, dtype=np.float32)
    noisy = add_noise(clean, np.random.default_rng(5), sigma=10, signal_dependent=True, peak=100)
    assert psnr(noisy, clean) == pytest.approx(10 * math.log10(1 / (0.005 + (10 / 255) ** 2)), abs=0.25)
    # Brighter pixels get more noise; Gaussian noise alone does not depend on brightness.
    dark = np.full((64, 64, 3), 0.2, dtype=np.float32)
    bright = np.full((64, 64, 3), 0.8, dtype=np.float32)
    std = lambda img: float(np.std(add_noise(img, np.random.default_rng(6), sigma=2, signal_dependent=True,
                                             peak=50) - img))
    assert std(bright) > 1.7 * std(dark)  # sqrt(0.8 / 0.2) = 2 for the Poisson part


def test_blind_noise_level_stays_in_range():
    clean = np.full((64, 64, 3), 0.5, dtype=np.float32)
    for seed in range(5):
        level = 255 * float(np.std(add_noise(clean, np.random.default_rng(seed)) - clean))
        assert 5 * 0.9 < level < 50 * 1.1


def test_blind_noise_draws_level_shot_noise_and_jpeg_as_documented():
    clean = np.full((64, 64, 3), 0.5, dtype=np.float32)
    levels, shot, jpeg = [], 0, 0
    for seed in range(60):
        # Fixing the level at 25 isolates the two coin flips: one Poisson draw makes the noise
        # stronger than 25/255 (variance 0.5/peak on top), and a JPEG round trip leaves values
        # on the 1/255 grid; plain Gaussian noise on float32 almost never lands there.
        out = blind_noise(clean, np.random.default_rng(seed), sigma=25)
        on_grid = np.allclose(out * 255, np.round(out * 255), atol=1e-3)
        jpeg += on_grid
        # Without JPEG (which smooths noise away) the level stays in the drawn range.
        levels.append(255 * float(np.std(blind_noise(clean, np.random.default_rng(1000 + seed), jpeg_quality=0)
                                         - clean)))
        if not on_grid:
            shot += 255 * float(np.std(out - clean)) > 25 * 1.15
    assert 5 * 0.9 < min(levels) and max(levels) < 50 * 1.3  # the sigma range, plus shot noise
    # Binomial(60, 0.25) and (45, 0.3): within about 3 standard deviations.
    assert 5 <= jpeg <= 26
    assert 3 <= shot <= 25
    # Everything fixed: exactly add_noise followed by the JPEG round trip.
    fixed = blind_noise(clean, np.random.default_rng(3), sigma=10, signal_dependent=False, jpeg_quality=80)
    by_hand = jpeg_roundtrip(add_noise(clean, np.random.default_rng(3), sigma=10), 80)
    assert np.array_equal(fixed, by_hand)
    assert np.array_equal(blind_noise(clean, np.random.default_rng(3), sigma=10, signal_dependent=False,
                                      jpeg_quality=0), add_noise(clean, np.random.default_rng(3), sigma=10))


# ----------------------------------------------------------------------------- motion blur

def test_convolve_is_a_true_convolution_with_reflect_borders():
    img = photo_like(23, 31)
    kernel = np.random.default_rng(0).random((5, 7)).astype(np.float32)  # asymmetric: catches a flip
    expected = np.stack([ndimage.convolve(img[:, :, c].astype(np.float64), kernel, mode='mirror')
                         for c in range(3)], -1)
    assert np.allclose(convolve(img, kernel), expected, atol=1e-5)


@pytest.mark.parametrize('seed', range(6))
def test_motion_kernels_are_normalised_centred_psfs(seed):
    kernel = motion_kernel(np.random.default_rng(seed))
    size = kernel.shape[0]
    assert kernel.shape == (size, size) and size % 2 == 1 and 3 <= size <= 31
    assert kernel.dtype == np.float32 and kernel.min() >= 0
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5)
    # Centre of mass on the centre pixel: blurring does not shift the image.
    ys, xs = np.mgrid[0:size, 0:size]
    centre = (size - 1) / 2
    assert (kernel * ys).sum() == pytest.approx(centre, abs=1e-3)
    assert (kernel * xs).sum() == pytest.approx(centre, abs=1e-3)


def test_trajectory_length_and_straight_line_without_anxiety():
    rng = np.random.default_rng(1)
    path = shake_trajectory(rng, length=20.0)
    assert np.linalg.norm(np.diff(path, axis=0), axis=1).sum() == pytest.approx(20.0, rel=1e-9)
    line = shake_trajectory(rng, length=12.0, anxiety=0.0)
    assert np.linalg.norm(line[-1] - line[0]) == pytest.approx(12.0, rel=1e-9)  # straight: ends 12 px apart
    assert motion_kernel(np.random.default_rng(2), max_size=15, length=100).shape[0] <= 15


def test_box_blur_psnr_closed_form():
    # i.i.d. pixels of variance 1/12 blurred by a horizontal 9-tap box: the error
    # x0 - mean(x-4..x4) has variance (1/12)(1 - 2/9 + 1/9) = (1/12)(8/9): PSNR = 10 log10(13.5) = 11.30 dB.
    clean = iid_texture()
    box = np.zeros((9, 9), dtype=np.float32)
    box[4] = 1 / 9
    blurred = motion_blur(clean, np.random.default_rng(0), kernel=box, noise_sigma=0, jpeg=False)
    assert psnr(blurred, clean) == pytest.approx(10 * math.log10(13.5), abs=0.3)


@pytest.mark.parametrize('seed', [0, 3])
def test_random_blur_error_matches_its_kernel(seed):
    # For i.i.d. pixels the expected error of blurring by k is (1/12)(1 - 2 k_centre + sum k^2):
    # a kernel applied off-centre or mis-normalised would not match.
    clean = iid_texture(128)
    kernel = motion_kernel(np.random.default_rng(seed))
    c = kernel.shape[0] // 2
    expected_mse = (1 - 2 * kernel[c, c] + float((kernel.astype(np.float64) ** 2).sum())) / 12
    blurred = motion_blur(clean, np.random.default_rng(0), kernel=kernel, noise_sigma=0, jpeg=False)
    assert float(np.mean((blurred.astype(np.float64) - clean) ** 2)) == pytest.approx(expected_mse, rel=0.1)


def test_blur_noise_and_jpeg_only_add_error():
    clean = photo_like(64, 64)
    rng_kernel = np.random.default_rng(9)
    kernel = motion_kernel(rng_kernel)
    plain = motion_blur(clean, np.random.default_rng(1), kernel=kernel, noise_sigma=0, jpeg=False)
    full = motion_blur(clean, np.random.default_rng(1), kernel=kernel)
    assert np.allclose(full * 255, np.round(full * 255), atol=1e-3)  # JPEG output is 8-bit valued
    assert 0.1 < np.abs(full - plain).mean() * 255 < 6  # a little noise and compression, not a new image


def bounding_side(kernel, fraction=0.01):
    """The test's own reading of the documented extent: larger side of the box of pixels >= 1% of the peak."""
    ys, xs = np.nonzero(kernel >= fraction * kernel.max())
    return max(ys.max() - ys.min(), xs.max() - xs.min()) + 1


@pytest.mark.parametrize('family', list(BLUR_FAMILY_PROBS) + ['classic'])
def test_each_blur_family_is_seeded(family):
    first = blur_kernel(np.random.default_rng(11), family)
    assert np.array_equal(first, blur_kernel(np.random.default_rng(11), family))
    other = blur_kernel(np.random.default_rng(12), family)
    assert first.shape != other.shape or not np.array_equal(first, other)


def test_drawn_blur_extents_spread_evenly_over_the_range():
    extents = []
    for seed in range(300):
        kernel = blur_kernel(np.random.default_rng(seed))
        assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1 and kernel.shape[0] <= 31
        assert kernel.min() >= 0 and kernel.sum() == pytest.approx(1.0, abs=1e-5)
        assert kernel_extent(kernel) == bounding_side(kernel)
        extents.append(kernel_extent(kernel))
    extents = np.array(extents)
    assert extents.min() <= 5 and extents.max() >= 28
    # Uniform over 3..31 puts 1/3 in each third (binomial sd 2.7%); 20-47% allows the per-family
    # rounding (disks and Gaussians have odd extents) and the shake paths shrunk to fit 31x31.
    low, high = EXTENT_RANGE
    thirds = np.histogram(extents, bins=[low, low + (high - low) / 3, low + 2 * (high - low) / 3, high + 1])[0]
    assert thirds.sum() == 300 and all(0.20 * 300 <= n <= 0.47 * 300 for n in thirds), thirds


@pytest.mark.parametrize('radius', [1, 2, 5, 15])
def test_disk_of_radius_r_has_extent_2r_plus_1(radius):
    disk = disk_kernel(radius)
    assert kernel_extent(disk) == 2 * radius + 1 == bounding_side(disk)
    assert disk.min() >= 0 and disk.sum() == pytest.approx(1.0, abs=1e-6)
    # Its second moment is that of a uniform disk integrated over pixels, r^2 / 4 + 1/12 per axis (the
    # 1/12 of a one-pixel box); the linear rim coverage is a rough area estimate below r = 3 (+20% at r = 1).
    if radius >= 3:
        ys, xs = np.mgrid[0:disk.shape[0], 0:disk.shape[1]] - radius
        assert float((disk * xs ** 2).sum()) == pytest.approx(radius ** 2 / 4 + 1 / 12, rel=0.02)


def test_gaussian_kernel_second_moment_is_its_covariance():
    # sigma 3 along 30 degrees, 1.5 across: covariance R diag(9, 2.25) R^T; the box (+-15 px, 5 sigma)
    # cuts nothing that matters, and sampling a Gaussian of sigma >= 1 at pixel centres keeps its variance.
    kernel = gaussian_kernel(3.0, 1.5, 30.0, 15).astype(np.float64)
    ys, xs = np.mgrid[-15:16, -15:16]
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    expected = np.array([[9 * c * c + 2.25 * s * s, (9 - 2.25) * c * s],
                         [(9 - 2.25) * c * s, 9 * s * s + 2.25 * c * c]])
    measured = np.array([[(kernel * xs * xs).sum(), (kernel * xs * ys).sum()],
                         [(kernel * xs * ys).sum(), (kernel * ys * ys).sum()]])
    assert np.allclose(measured, expected, rtol=0.01, atol=0.01)
    assert abs((kernel * xs).sum()) < 1e-9 and abs((kernel * ys).sum()) < 1e-9  # centred


@pytest.mark.parametrize('family', list(BLUR_FAMILY_PROBS))
@pytest.mark.parametrize('extent', [5, 15, 27])
def test_asked_extent_is_what_the_kernel_gets(family, extent):
    # Defocus and Gaussian kernels are centred and symmetric, so odd asked extents are met exactly.
    # Shake paths: within two pixels (the bilinear fringe, a small disk or Gaussian on top), and a
    # long path whose centroid is off its middle is shrunk to fit 31x31 (up to 6 px at 27).
    got = [kernel_extent(blur_kernel(np.random.default_rng(seed), family, extent)) for seed in range(10)]
    below = (2 if extent < 20 else 6) if family == 'shake' else 0
    above = 2 if family == 'shake' else 0
    assert all(extent - below <= g <= extent + above for g in got), got


# ----------------------------------------------------------------------------- rain

def test_streak_kernel_is_a_line_of_the_asked_direction():
    # A 15 px anti-aliased line: its bright core (> 0.5) is one pixel wide and 15 +- 1 long.
    vertical = streak_kernel(15, 0)
    rows, cols = np.nonzero(vertical > 0.5)
    assert 14 <= rows.max() - rows.min() + 1 <= 16 and len(set(cols)) == 1
    assert vertical[:, vertical.shape[1] // 2].sum() > 0.6 * vertical.sum()
    horizontal = streak_kernel(15, 90)
    rows, cols = np.nonzero(horizontal > 0.5)
    assert 14 <= cols.max() - cols.min() + 1 <= 16 and len(set(rows)) == 1
    assert np.allclose(horizontal, vertical.T, atol=0.02)  # the same line turned by 90 degrees


def test_rain_layer_runs_along_one_direction():
    layer = rain_layer((96, 96), np.random.default_rng(0), density=0.003, angle=0, length=20, width=1,
                       intensity=0.8)
    assert 0 <= layer.min() and layer.max() <= 0.8 + 1e-6
    # Vertical streaks change little down a column and a lot across a row.
    assert np.abs(np.diff(layer, axis=0)).sum() < 0.3 * np.abs(np.diff(layer, axis=1)).sum()


@pytest.mark.parametrize('blend', ['screen', 'add'])
def test_rain_only_brightens(blend):
    clean = photo_like(64, 80)
    # A mid-range density: the drawn range now reaches rain so light that a 64x80 image may hold
    # no streak at all (see test_rain_density_spans_light_to_heavy), which says nothing about the blend.
    rainy = add_rain(clean, np.random.default_rng(2), blend=blend, density=0.003)
    assert np.all(rainy >= clean)
    changed = np.mean(np.any(rainy > clean + 1 / 255, axis=2))
    assert 0.02 < changed < 0.7  # streaks, not a veil over everything


def test_screen_blend_closed_form():
    # Screen blend of a streak layer r over v: v + r (1 - v). On a constant image the layer is
    # recovered as (out - v) / (1 - v), must lie in [0, intensity], and white stays white.
    grey = np.full((48, 48, 3), 0.4, dtype=np.float32)
    rainy = add_rain(grey, np.random.default_rng(3), intensity=0.6, blend='screen')
    layer = (rainy - 0.4) / 0.6
    assert layer.min() >= 0 and layer.max() <= 0.6 + 1e-5
    assert np.allclose(layer[..., 0], layer[..., 1]) and np.allclose(layer[..., 0], layer[..., 2])  # grey rain
    white = np.ones((48, 48, 3), dtype=np.float32)
    assert np.array_equal(add_rain(white, np.random.default_rng(3), blend='screen'), white)


def test_over_blend_closed_form_and_the_draw_between_blends():
    # 'over' composites v (1 - r) + c r: on a constant image v the layer is r = (out - v) / (c - v)
    # in [0, intensity], the same in every channel; v above the grey c darkens, v below brightens.
    for v, c in ((0.2, 0.8), (0.95, 0.75)):
        flat = np.full((48, 48, 3), v, dtype=np.float32)
        rainy = add_rain(flat, np.random.default_rng(4), intensity=0.6, blend='over', colour=c)
        layer = (rainy - v) / (c - v)
        assert layer.min() >= -1e-6 and layer.max() <= 0.6 + 1e-5
        assert np.allclose(layer[..., 0], layer[..., 2]) and layer.max() > 0.3
        assert (rainy >= flat).all() if c > v else (rainy <= flat).all()
    # blend None draws 'over' with probability over_prob. On white, screen rain changes nothing and
    # 'over' rain (grey c < 1) darkens every streak: 200 draws give 100 +- 7 (one sd) darkened.
    # The density is fixed at 0.01 streaks per pixel, ~10 seeds in 32x32, so that every 'over' draw
    # holds a streak (none with probability e^-10); the lightest drawn rain could leave it empty.
    white = np.ones((32, 32, 3), dtype=np.float32)
    darkened = [bool((add_rain(white, np.random.default_rng(seed), density=0.01) < 1).any()) for seed in range(200)]
    assert 72 <= sum(darkened) <= 128  # 4 sd
    assert not any((add_rain(white, np.random.default_rng(s), over_prob=0.0) < 1).any() for s in range(20))
    with pytest.raises(ValueError, match="'over'"):
        add_rain(white, np.random.default_rng(0), blend='multiply')


def test_additive_rain_adds_its_layer_and_clips():
    # O = clip(B + R): on black the output is the layer itself, the same in every channel; on a
    # constant v the same draw gives exactly clip(v + R); on white nothing changes.
    black = np.zeros((64, 64, 3), dtype=np.float32)
    layer = add_rain(black, np.random.default_rng(5), blend='add', density=0.004)
    assert layer.max() > 0.2 and np.array_equal(layer[..., 0], layer[..., 2])
    grey = np.full_like(black, 0.5)
    assert np.allclose(add_rain(grey, np.random.default_rng(5), blend='add', density=0.004),
                       np.clip(0.5 + layer, 0, 1), atol=1e-6)
    white = np.ones_like(black)
    assert np.array_equal(add_rain(white, np.random.default_rng(5), blend='add'), white)


@pytest.mark.parametrize('blend', ['screen', 'add', 'over'])
def test_each_rain_mode_is_seeded(blend):
    img = photo_like(48, 48)
    first = add_rain(img, np.random.default_rng(21), blend=blend, density=0.004)
    assert np.array_equal(first, add_rain(img, np.random.default_rng(21), blend=blend, density=0.004))
    assert not np.array_equal(first, add_rain(img, np.random.default_rng(22), blend=blend, density=0.004))


def streak_lengths(layer, floor=0.02):
    """Length of each isolated streak (connected component not touching the border) of a (H, W) layer:
    a uniform segment of length L has variance L^2 / 12 along itself, so L = sqrt(12 lambda_max)
    of its intensity-weighted second moments."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats((layer > floor).astype(np.uint8), connectivity=8)
    h, w = layer.shape
    lengths = []
    for i in range(1, count):
        x, y, bw, bh = stats[i, :4]
        if x == 0 or y == 0 or x + bw == w or y + bh == h:
            continue
        m = cv2.moments(np.where(labels == i, layer, 0).astype(np.float32))
        cov = np.array([[m['mu20'], m['mu11']], [m['mu11'], m['mu02']]]) / m['m00']
        lengths.append(math.sqrt(12 * np.linalg.eigvalsh(cov)[1]))
    return lengths


def test_single_streaks_are_as_long_as_stated():
    # ~2 streaks on 256x256, so components are single streaks; each sub-layer's streaks are 0.6-1 times
    # the common length drawn from LENGTH_RANGE (8-60 px); +-2 px for the anti-aliased ends and the blur.
    black = np.zeros((256, 256, 3), dtype=np.float32)
    lengths = []
    for seed in range(40):
        rain = add_rain(black, np.random.default_rng(seed), blend='add', density=3e-5, intensity=1.0, width=1.0)
        lengths += streak_lengths(rain[..., 0])
    assert len(lengths) >= 40
    assert 0.6 * LENGTH_RANGE[0] - 2 <= min(lengths) and max(lengths) <= LENGTH_RANGE[1] + 2
    assert min(lengths) <= 12 and max(lengths) >= 45  # both ends of the range are drawn


def test_rain_density_spans_light_to_heavy():
    # Coverage (share of pixels the rain lifts above 0.05 on black) over the same 80 seeds: the new
    # draws reach both lighter and heavier rain than the classic ones (density 0.0005-0.006, 8-30 px).
    black = np.zeros((128, 128, 3), dtype=np.float32)
    coverage = lambda classic: [float(np.mean(add_rain(black, np.random.default_rng(s), blend='add',
                                                       classic=classic)[..., 0] > 0.05)) for s in range(80)]
    new, classic = coverage(False), coverage(True)
    assert min(new) < 0.02 and max(new) > 0.3
    assert min(new) < min(classic) and max(new) > max(classic)


# ----------------------------------------------------------------------------- bundled samples

def load_make_samples():
    path = os.path.join(REPO, 'samples', 'make_samples.py')
    spec = importlib.util.spec_from_file_location('make_samples', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sample_files(folder):
    """{task/name.png: path} of the sample images under `folder`."""
    return {os.path.relpath(os.path.join(d, f), folder): os.path.join(d, f)
            for d, _, files in os.walk(folder) for f in files}


def test_sample_script_is_reproducible_and_refuses_to_overwrite(tmp_path, capsys):
    make_samples = load_make_samples()
    first, second, clean = tmp_path / 'a', tmp_path / 'b', tmp_path / 'clean'
    assert make_samples.main(['--output_dir', str(first), '--clean_dir', str(clean), '--long_side', '40']) == 0
    assert make_samples.main(['--output_dir', str(second), '--long_side', '40']) == 0
    names = sorted(os.path.join(task, f'{name}.png') for task, name, *_ in make_samples.SAMPLES)
    assert sorted(sample_files(first)) == names and sorted(sample_files(clean)) == names
    for name in names:
        a, b, c = (cv2.imread(str(folder / name)) for folder in (first, second, clean))
        assert np.array_equal(a, b) and a.shape == c.shape and max(a.shape[:2]) == 40
        assert not np.array_equal(a, c)
    assert make_samples.main(['--output_dir', str(first), '--long_side', '40']) == 2
    assert '--overwrite' in capsys.readouterr().err


def test_samples_come_from_photos_held_out_of_training():
    from utils.data.photos import HELD_OUT  # what scripts/prepare_photos.py always puts in test/
    sources = {'motorcycle': 'motorcycle_left'}
    for _, _, photo, _, _ in load_make_samples().SAMPLES:
        assert f'skimage__{sources.get(photo, photo)}' in HELD_OUT, photo


def test_bundled_samples_match_the_script():
    make_samples = load_make_samples()
    folder = os.path.join(REPO, 'samples', 'input')
    names = sorted(os.path.join(task, f'{name}.png') for task, name, *_ in make_samples.SAMPLES)
    files = sample_files(folder)
    assert sorted(files) == names
    assert sum(os.path.getsize(path) for path in files.values()) < 1.5e6
    for path in files.values():
        assert max(cv2.imread(path).shape[:2]) == make_samples.LONG_SIDE


def test_rain_ranges_set_where_density_and_intensity_are_drawn():
    # A range of one value draws that value: the result equals rain given that value, once the
    # draw's one uniform number is consumed by hand (density is drawn first, intensity after
    # angle, length and width, which are given here).
    img = np.full((96, 96, 3), 0.3, np.float32)
    fixed = dict(angle=10.0, length=20.0, width=1.5, blend='add')
    by_range = add_rain(img, np.random.default_rng(7), **fixed, density_range=(0.004, 0.004),
                        intensity_range=(0.5, 0.5))
    rng = np.random.default_rng(7)
    rng.uniform(), rng.uniform()  # the two draws the ranges make
    assert np.array_equal(by_range, add_rain(img, rng, **fixed, density=0.004, intensity=0.5))
    # and heavier ranges mean more rain: the mean streak light added on a dark grey, over seeds
    light = np.mean([add_rain(img, np.random.default_rng(s), **fixed) - img for s in range(8)])
    heavy = np.mean([add_rain(img, np.random.default_rng(s), **fixed, density_range=(0.01, 0.02),
                              intensity_range=(0.9, 1.0)) - img for s in range(8)])
    assert heavy > 3 * light
