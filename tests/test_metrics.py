"""utils.evaluation.metrics against values worked out by hand: closed forms and plain-loop SSIM.

The loop references below follow the published definitions directly (MATLAB
ssim.m / imgaussfilt3, Zhou Wang's SSIM_index.m, the RealBlur script's
scikit-image SSIM) one pixel at a time, with explicit windows and padding.
"""
import math
from fractions import Fraction

import cv2
import numpy as np
import pytest

from utils.evaluation import metrics

SIGMA, RADIUS = 1.5, 5  # MATLAB: 2*ceil(3*1.5)+1 = 11 taps


def window_1d():
    w = [math.exp(-(i * i) / (2 * SIGMA * SIGMA)) for i in range(-RADIUS, RADIUS + 1)]
    return [v / sum(w) for v in w]


def window_3d():
    """The 11x11x11 kernel exactly as MATLAB builds a 3-D Gaussian: exp(-(x^2+y^2+z^2)/2s^2) / sum."""
    raw = {(i, j, k): math.exp(-(i * i + j * j + k * k) / (2 * SIGMA * SIGMA))
           for i in range(-RADIUS, RADIUS + 1) for j in range(-RADIUS, RADIUS + 1)
           for k in range(-RADIUS, RADIUS + 1)}
    total = sum(raw.values())
    return {key: v / total for key, v in raw.items()}


def clamp(i, n):  # replicate padding: outside indices take the nearest edge value
    return min(max(i, 0), n - 1)


def reflect(i, n):  # scipy 'reflect' (d c b a | a b c d) for offsets smaller than n
    return -i - 1 if i < 0 else (2 * n - i - 1 if i >= n else i)


def ssim_from_sums(mx, my, sxx, syy, sxy, L):
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    vx, vy, cov = sxx - mx * mx, syy - my * my, sxy - mx * my
    return (2 * mx * my + c1) * (2 * cov + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def loop_ssim_2d(a, b, L, index=clamp, valid=False):
    """SSIM map of 2-D arrays with an 11x11 Gaussian; padding by `index`, or only 'valid' positions."""
    w = window_1d()
    h, wd = a.shape
    rows = range(RADIUS, h - RADIUS) if valid else range(h)
    cols = range(RADIUS, wd - RADIUS) if valid else range(wd)
    out = []
    for r in rows:
        line = []
        for c in cols:
            s = [0.0] * 5
            for i in range(-RADIUS, RADIUS + 1):
                for j in range(-RADIUS, RADIUS + 1):
                    x = float(a[index(r + i, h), index(c + j, wd)])
                    y = float(b[index(r + i, h), index(c + j, wd)])
                    g = w[i + RADIUS] * w[j + RADIUS]
                    s = [s[0] + g * x, s[1] + g * y, s[2] + g * x * x, s[3] + g * y * y, s[4] + g * x * y]
            line.append(ssim_from_sums(*s, L))
        out.append(line)
    return np.array(out)


def loop_ssim_3d(a, b, L):
    """Mean SSIM of an H x W x C volume, 11x11x11 Gaussian, replicate padding in all three dimensions."""
    win = window_3d()
    h, wd, ch = a.shape
    values = []
    for r in range(h):
        for c in range(wd):
            for z in range(ch):
                s = [0.0] * 5
                for (i, j, k), g in win.items():
                    x = float(a[clamp(r + i, h), clamp(c + j, wd), clamp(z + k, ch)])
                    y = float(b[clamp(r + i, h), clamp(c + j, wd), clamp(z + k, ch)])
                    s = [s[0] + g * x, s[1] + g * y, s[2] + g * x * x, s[3] + g * y * y, s[4] + g * x * y]
                values.append(ssim_from_sums(*s, L))
    return sum(values) / len(values)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# ---------------------------------------------------------------- PSNR


def test_identical_images_give_infinite_psnr_and_unit_ssim(rng):
    img = rng.integers(0, 256, (20, 18, 3), dtype=np.uint8)
    assert metrics.psnr(img, img) == math.inf
    assert metrics.ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    gray = img[..., 0]
    assert metrics.ssim(gray, gray) == pytest.approx(1.0, abs=1e-12)
    assert metrics.ssim_wang(gray, gray) == pytest.approx(1.0, abs=1e-12)
    f = img.astype(np.float32) / 255
    assert metrics.psnr(f, f) == math.inf
    assert metrics.ssim(f, f) == pytest.approx(1.0, abs=1e-12)


def test_psnr_of_a_constant_offset_has_a_closed_form(rng):
    img = rng.integers(0, 250, (16, 12, 3), dtype=np.uint8)
    # uint8: peak 255 (MATLAB's class range); mse = 5^2 -> 10 log10(255^2 / 25) = 20 log10(51)
    assert metrics.psnr(img + np.uint8(5), img) == pytest.approx(20 * math.log10(51), abs=1e-12)
    # single/double: peak 1; an offset of 0.125 (exact in binary) -> 10 log10(1 / 0.125^2) = 20 log10(8)
    f = rng.random((16, 12, 3)) * 0.5
    assert metrics.psnr(f + 0.125, f) == pytest.approx(20 * math.log10(8), abs=1e-9)
    # the peak follows the class, not the values: the same error in uint16 is scored against 65535
    assert metrics.psnr(img.astype(np.uint16) + 5, img.astype(np.uint16)) == \
        pytest.approx(20 * math.log10(65535 / 5), abs=1e-12)


def test_mismatched_images_are_refused():
    a = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match='sizes differ'):
        metrics.psnr(a, np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(ValueError, match='types differ'):
        metrics.ssim(a, a.astype(np.float32))
    with pytest.raises(ValueError, match='at least 11x11'):
        metrics.ssim_wang(a[..., 0], a[..., 0])


# ---------------------------------------------------------------- MATLAB ssim


def test_gaussian_taps_are_matlab_window():
    taps = metrics.gaussian_taps(1.5)
    assert len(taps) == 11 and taps.sum() == pytest.approx(1.0, abs=1e-15)
    assert taps == pytest.approx(np.array(window_1d()), abs=1e-15)
    assert taps[5] / taps[4] == pytest.approx(math.exp(1 / 4.5), rel=1e-14)


def test_channel_mixing_matrix_of_replicate_padding():
    # Filtering 3 channels with 11 taps: index clip(c + k - 5, 0, 2). For output channel 0 the taps
    # k = 0..5 all land on channel 0, k = 6 on channel 1, k = 7..10 on channel 2 (clamped).
    g = window_1d()
    expected = np.array([[sum(g[0:6]), g[6], sum(g[7:11])],
                         [sum(g[0:5]), g[5], sum(g[6:11])],
                         [sum(g[0:4]), g[4], sum(g[5:11])]])
    assert metrics.replicate_mixing_matrix(3, np.array(g)) == pytest.approx(expected, abs=1e-15)


def test_ssim_2d_matches_a_plain_loop_on_13x11(rng):
    a = rng.integers(0, 256, (13, 11), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    expected_map = loop_ssim_2d(a, b, 255.0)
    assert metrics.ssim_map(a, b) == pytest.approx(expected_map, abs=1e-12)
    assert metrics.ssim(a, b) == pytest.approx(expected_map.mean(), abs=1e-12)


def test_ssim_of_rgb_is_the_3d_volume_ssim(rng):
    a = rng.integers(0, 256, (7, 6, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-50, 51, a.shape), 0, 255).astype(np.uint8)
    expected = loop_ssim_3d(a, b, 255.0)
    assert metrics.ssim(a, b) == pytest.approx(expected, abs=1e-12)
    # ... which is not the mean of per-channel 2-D SSIMs (the difference is what MATLAB reports)
    per_channel = np.mean([metrics.ssim(a[..., c], b[..., c]) for c in range(3)])
    assert abs(per_channel - expected) > 1e-3


def test_ssim_3d_on_single_images_uses_range_one(rng):
    a = rng.random((6, 5, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1).astype(np.float32)
    assert metrics.ssim(a, b) == pytest.approx(loop_ssim_3d(a, b, 1.0), abs=1e-9)


@pytest.mark.parametrize('channels', [3, 6])
def test_ssim_3d_matches_scipy_gaussian_filter_on_a_larger_image(rng, channels):
    """Independent check at a size the loops cannot reach: scipy's N-D Gaussian, 'nearest' = replicate."""
    from scipy.ndimage import gaussian_filter
    a = rng.integers(0, 256, (40, 36, channels)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    f = lambda v: gaussian_filter(v, SIGMA, mode='nearest', truncate=RADIUS / SIGMA)  # noqa: E731
    x, y = a.astype(float), b.astype(float)
    expected = ssim_from_sums(f(x), f(y), f(x * x), f(y * y), f(x * y), 255.0).mean()
    assert metrics.ssim(a, b) == pytest.approx(expected, abs=1e-12)


def test_ssim_of_constant_images_has_a_closed_form():
    # No variance: SSIM = (2ab + C1) / (a^2 + b^2 + C1) everywhere, C1 = (0.01 * 255)^2 (up to the
    # rounding of E[x^2] - E[x]^2, about 1e-12 here, as in MATLAB).
    a, b = np.full((9, 9, 3), 100, np.uint8), np.full((9, 9, 3), 104, np.uint8)
    c1 = 2.55 ** 2
    assert metrics.ssim(a, b) == pytest.approx((2 * 100 * 104 + c1) / (100 ** 2 + 104 ** 2 + c1), abs=1e-10)


# ---------------------------------------------------------------- Deraining: Y channel + Wang SSIM


def y_exact(r, g, b):
    """Exact Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 as a fraction."""
    return 16 + Fraction(65481 * r + 128553 * g + 24966 * b, 255000)


@pytest.mark.parametrize('rgb, y', [
    ((0, 0, 0), 16),                # 16 exactly
    ((255, 255, 255), 235),         # 16 + 65.481 + 128.553 + 24.966 = 235 exactly
    ((255, 0, 0), 81),              # 81.481
    ((0, 255, 0), 145),             # 144.553
    ((0, 0, 255), 41),              # 40.966
    ((100, 150, 200), 137),         # 16 + 30824.25 / 255 = 136.879...
    ((12, 34, 56), 42),             # 16 + 6554.67 / 255 = 41.704...
])
def test_rgb_to_y_on_hand_computed_pixels(rgb, y):
    exact = y_exact(*rgb)
    rounded = math.floor(exact + Fraction(1, 2))
    assert exact.denominator != 2  # none of these is a tie: plain rounding of the exact value decides
    assert rounded == y
    assert int(metrics.rgb_to_y(np.array([[rgb]], np.uint8))[0, 0]) == y


def test_rgb_to_y_ties_follow_matlab_double_arithmetic():
    """Pixels whose exact Y is k + 0.5. MATLAB computes T1*R + T2*G + T3*B + 16 in doubles with
    T = origT * (1/255) and rounds half away from zero; the double sum lands below, on, or above
    the tie depending on the pixel, so the rounding goes either way."""
    t = [65.481 * (1 / 255), 128.553 * (1 / 255), 24.966 * (1 / 255)]
    cases = {(0, 204, 68): 125, (1, 173, 225): 126, (6, 34, 182): 53}
    for (r, g, b), expected in cases.items():
        assert y_exact(r, g, b).denominator == 2  # an exact tie
        double_sum = ((t[0] * r + t[1] * g) + t[2] * b) + 16.0
        assert math.floor(double_sum + 0.5) == expected
        assert int(metrics.rgb_to_y(np.array([[[r, g, b]]], np.uint8))[0, 0]) == expected
    # (6, 34, 182) sums to exactly 52.5: half away from zero gives 53 where round-half-even gives 52
    assert round(52.5) == 52


def test_ssim_wang_matches_a_plain_valid_loop_on_13x12(rng):
    a = rng.integers(0, 256, (13, 12), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    expected = loop_ssim_2d(a, b, 255.0, valid=True)
    assert expected.shape == (3, 2)  # 'valid': size - 11 + 1
    assert metrics.ssim_wang(a, b) == pytest.approx(expected.mean(), abs=1e-12)


def test_psnr_ssim_y_of_constant_images():
    res, tar = np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16, 3), np.uint8)
    res[:] = (120, 60, 30)
    tar[:] = (124, 60, 30)
    # Y: 16 + (65.481*120 + 128.553*60 + 24.966*30) / 255 = 16 + 16319.88 / 255 = 79.999... -> 80
    #    16 + (65.481*124 + 128.553*60 + 24.966*30) / 255 = 16 + 16581.804 / 255 = 81.026... -> 81
    p, s = metrics.psnr_ssim_y(res, tar)
    assert p == pytest.approx(20 * math.log10(255 / 1), abs=1e-12)
    c1 = 2.55 ** 2
    assert s == pytest.approx((2 * 80 * 81 + c1) / (80 ** 2 + 81 ** 2 + c1), abs=1e-10)


# ---------------------------------------------------------------- RealBlur


def test_masked_psnr_closed_form():
    mask = np.zeros((10, 10, 3), np.float32)
    mask[2:8, 1:9] = 1
    target, result = 0.5 * mask, 0.4 * mask  # error 0.1 on the masked pixels, nothing elsewhere
    assert metrics.masked_psnr(target, result, mask) == pytest.approx(20.0, abs=1e-5)


def test_masked_ssim_matches_a_plain_loop(rng):
    target = rng.random((14, 13, 3))
    result = np.clip(target + rng.normal(0, 0.1, target.shape), 0, 1)
    mask = np.ones_like(target)
    mask[:, 10:] = 0  # the last three columns were not covered by the warped result
    target, result = target * mask, result * mask
    per_channel = []
    for c in range(3):
        smap = loop_ssim_2d(target[..., c], result[..., c], 1.0, index=reflect) * mask[..., c]
        inner, inner_mask = smap[5:-5, 5:-5], mask[5:-5, 5:-5, c]
        per_channel.append(inner.sum() / inner_mask.sum())
    assert metrics.masked_ssim(target, result, mask) == pytest.approx(np.mean(per_channel), abs=1e-12)


def test_masked_ssim_is_the_published_skimage_formula(rng):
    """The published evaluate_RealBlur.py uses scikit-image's SSIM map: an independent implementation."""
    from skimage.metrics import structural_similarity
    target = rng.random((32, 30, 3))
    result = np.clip(target + rng.normal(0, 0.05, target.shape), 0, 1)
    mask = np.ones_like(target)
    mask[:4] = 0
    _, smap = structural_similarity(target * mask, result * mask, channel_axis=-1, gaussian_weights=True,
                                    use_sample_covariance=False, data_range=1.0, full=True)
    smap = (smap * mask)[5:-5, 5:-5]
    expected = np.mean(smap.sum(axis=(0, 1)) / mask[5:-5, 5:-5].sum(axis=(0, 1)))
    assert metrics.masked_ssim(target * mask, result * mask, mask) == pytest.approx(expected, abs=1e-10)


def textured(rng, h=64, w=64):
    """A smooth random RGB image ECC can lock on to."""
    noise = rng.random((h // 8, w // 8, 3)).astype(np.float32)
    return np.clip(cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)


def test_ecc_alignment_undoes_a_shift(rng):
    target = textured(rng)
    shift = np.float32([[1, 0, 1.5], [0, 1, -1.0]])
    result = cv2.warpAffine(target, shift, (64, 64), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    naive = metrics.psnr(result, target)
    aligned_psnr, aligned_ssim = metrics.realblur_psnr_ssim(result, target)
    assert aligned_psnr > naive + 10
    assert aligned_ssim > 0.99
    same_psnr, same_ssim = metrics.realblur_psnr_ssim(target, target)
    assert same_psnr > 60 and same_ssim == pytest.approx(1.0, abs=1e-4)


def test_ecc_failure_is_a_clear_error():
    flat = np.full((32, 32, 3), 0.5, np.float32)
    with pytest.raises(RuntimeError, match='ECC alignment failed'):
        metrics.align_ecc(flat, flat)
