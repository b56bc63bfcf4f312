"""The held-out degradation generator: reproducible, and measurably unlike the training generator."""
import numpy as np
import pytest

from utils.data.degradations import add_rain, motion_kernel
from utils.data.degradations_heldout import (EXTENT_FAMILIES, KINDS, defocus_kernel, degrade_heldout, extent_kernel,
                                        gaussian_noise, linear_kernel, spline_kernel, streak_rain)
import utils.data.degradations_heldout as heldout_module


def photo_like(h=48, w=64, seed=0):
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    img = np.stack([0.5 + 0.3 * np.sin(7 * x + 2 * y), 0.2 + 0.6 * y, 0.5 + 0.2 * np.cos(11 * x * y)], -1)
    return np.clip(img + 0.05 * rng.standard_normal(img.shape), 0.05, 0.95).astype(np.float32)


def smallest_spread(kernel: np.ndarray) -> float:
    """The smaller eigenvalue of a kernel's covariance (px^2): how thin it is across its path."""
    ys, xs = np.mgrid[0:kernel.shape[0], 0:kernel.shape[1]]
    w = kernel / kernel.sum()
    my, mx = (w * ys).sum(), (w * xs).sum()
    cov = np.array([[(w * (ys - my) ** 2).sum(), (w * (ys - my) * (xs - mx)).sum()],
                    [(w * (ys - my) * (xs - mx)).sum(), (w * (xs - mx) ** 2).sum()]])
    return float(np.linalg.eigvalsh(cov)[0])


@pytest.mark.parametrize('kind', KINDS)
def test_same_seed_same_image_other_seed_other_image(kind):
    img = photo_like()
    first = degrade_heldout(img, kind, np.random.default_rng(3))
    assert np.array_equal(first, degrade_heldout(img, kind, np.random.default_rng(3)))
    assert not np.array_equal(first, degrade_heldout(img, kind, np.random.default_rng(4)))
    assert first.shape == img.shape and first.dtype == np.float32 and 0 <= first.min() and first.max() <= 1


def test_kernels_are_normalised_and_never_thin_unlike_the_training_kernels():
    # Covariances add under convolution: the Gaussian splat (sigma 0.5: 0.25 px^2) and the defocus
    # disk of radius r >= 1 (r^2/4 >= 0.25 px^2) give every held-out kernel a spread of at least
    # 0.5 px^2 across its path (0.45 allows for the disk's pixelation). The training generator's
    # camera paths are often nearly straight lines whose bilinear splat is far thinner.
    held_out = [spline_kernel(np.random.default_rng(seed)) for seed in range(40)]
    training = [motion_kernel(np.random.default_rng(seed)) for seed in range(40)]
    for kernel in held_out:
        assert kernel.shape[0] % 2 == 1 and kernel.shape[0] <= 31
        assert kernel.sum() == pytest.approx(1.0, abs=1e-5) and kernel.min() >= 0
    assert min(smallest_spread(k) for k in held_out) >= 0.45
    assert sum(smallest_spread(k) < 0.3 for k in training) >= 4


def test_held_out_rain_is_tinted_where_training_rain_is_grey():
    # Held-out streaks blend towards a cold colour (0.82, 0.86, 0.92): over mid-grey they raise blue
    # more than red. Training rain is neutral in both of its blends (screen adds r (1 - v), 'over'
    # moves towards a grey c), so over a grey image all three channels change by the same amount.
    grey = np.full((96, 96, 3), 0.5, dtype=np.float32)
    held_out = streak_rain(grey, np.random.default_rng(1)) - grey
    streaks = held_out.max(axis=2) > 0.05
    assert streaks.mean() > 0.01
    assert (held_out[..., 2] - held_out[..., 0])[streaks].mean() > 0.02
    for seed in range(10):  # both blends occur among these draws
        training = add_rain(grey, np.random.default_rng(seed)) - grey
        assert np.abs(training[..., 2] - training[..., 0]).max() < 1e-6


def test_gaussian_noise_has_the_asked_sigma():
    clean = np.full((128, 128, 3), 0.5, dtype=np.float32)
    noisy = gaussian_noise(clean, np.random.default_rng(0), sigma=25)
    assert 255 * float(np.std(noisy - clean)) == pytest.approx(25, rel=0.02)


def bounding_side(kernel, fraction=0.01):
    """The test's own reading of the extent: larger side of the box of pixels >= 1% of the peak."""
    ys, xs = np.nonzero(kernel >= fraction * kernel.max())
    return max(ys.max() - ys.min(), xs.max() - xs.min()) + 1


@pytest.mark.parametrize('family', EXTENT_FAMILIES)
def test_explicit_extent_kernels_have_the_asked_extent(family):
    for extent in (3, 4, 9, 10, 19, 20, 25, 31):
        for seed in range(3):
            kernel = extent_kernel(np.random.default_rng(seed), extent, family)
            assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1 and kernel.shape[0] <= 33
            assert kernel.min() >= 0 and kernel.sum() == pytest.approx(1.0, abs=1e-5)
            assert abs(bounding_side(kernel) - extent) <= 1, (family, extent, seed)
    first = extent_kernel(np.random.default_rng(1), 15, family)
    assert np.array_equal(first, extent_kernel(np.random.default_rng(1), 15, family))
    if family != 'defocus':  # a disk of a given extent has no random shape
        assert not np.array_equal(first, extent_kernel(np.random.default_rng(2), 15, family))


def test_linear_motion_is_a_uniform_segment():
    # Horizontal, extent 11: a path 10 px long between the end pixels' centres, all in the middle row;
    # each of the 9 inner pixels holds 1 px of it (1/10 of the light, within 6% for the binning),
    # the two end pixels half a pixel each.
    kernel = linear_kernel(11, 0.0)
    middle = kernel.shape[0] // 2
    assert kernel[middle].sum() == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(kernel[middle, middle - 4:middle + 5], 1 / 10, rtol=0.06)
    # Diagonal: the bounding box, not the length, is the extent: the path is sqrt(2) longer.
    assert bounding_side(linear_kernel(11, 45.0)) in (10, 11, 12)
    # A defocus disk of extent 2r + 1 is the disk of radius r: its row through the centre spans 2r + 1.
    assert bounding_side(defocus_kernel(9)) == 9


def test_held_out_generator_imports_nothing_from_the_training_one():
    source = open(heldout_module.__file__).read()
    assert 'from utils.data.degradations import' not in source and 'import utils.data.degradations\n' not in source
