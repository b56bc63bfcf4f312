"""Charbonnier, edge and multi-stage losses against closed forms and hand-derived values."""
import math
import os
import subprocess
import sys

import pytest
import torch

from losses import CharbonnierLoss, EdgeLoss, MultiStageLoss, gaussian_kernel_5, laplacian
from utils.training.config import ConfigError

EPS = 1e-3
F64 = dict(dtype=torch.float64)


def test_charbonnier_of_equal_tensors_is_eps():
    x = torch.rand(2, 3, 5, 7, **F64)
    loss = CharbonnierLoss()(x, x.clone())
    torch.testing.assert_close(loss, torch.tensor(EPS, **F64), rtol=1e-12, atol=0)


@pytest.mark.parametrize('d', [0.5, -0.25, 3e-4])
def test_charbonnier_of_constant_difference(d):
    y = torch.rand(1, 3, 4, 4, **F64)
    loss = CharbonnierLoss()(y + d, y)
    assert loss.item() == pytest.approx(math.sqrt(d * d + EPS * EPS), rel=1e-9)


def test_charbonnier_is_a_mean_over_elements():
    # Differences 0 and sqrt(3) eps: sqrt(0 + eps^2) = eps, sqrt(3 eps^2 + eps^2) = 2 eps; mean 1.5 eps.
    x = torch.tensor([0.0, math.sqrt(3) * EPS], **F64)
    assert CharbonnierLoss()(x, torch.zeros(2, **F64)).item() == pytest.approx(1.5 * EPS, rel=1e-9)
    # Another eps: sqrt(0.3^2 + 0.4^2) = 0.5.
    assert CharbonnierLoss(eps=0.4)(torch.tensor([0.3]), torch.tensor([0.0])).item() == pytest.approx(0.5)


def test_gaussian_kernel_is_the_published_outer_product():
    k = gaussian_kernel_5()
    assert k.shape == (1, 1, 5, 5)
    assert k.sum().item() == pytest.approx(1.0)
    assert k[0, 0, 2, 2].item() == pytest.approx(0.16)   # 0.4 * 0.4
    assert k[0, 0, 0, 1].item() == pytest.approx(0.0125)  # 0.05 * 0.25
    assert torch.equal(k[0, 0], k[0, 0].T)


def test_edge_loss_of_identical_inputs_is_eps():
    x = torch.rand(2, 3, 16, 12, **F64)
    torch.testing.assert_close(EdgeLoss()(x, x.clone()), torch.tensor(EPS, **F64), rtol=1e-12, atol=0)


def test_laplacian_is_linear():
    kernel = gaussian_kernel_5(torch.float64)
    a, b = torch.rand(2, 3, 12, 10, **F64), torch.rand(2, 3, 12, 10, **F64)
    torch.testing.assert_close(laplacian(a + b, kernel), laplacian(a, kernel) + laplacian(b, kernel))
    torch.testing.assert_close(laplacian(2.5 * a, kernel), 2.5 * laplacian(a, kernel))


def test_laplacian_treats_channels_independently():
    kernel = gaussian_kernel_5(torch.float64)
    x = torch.rand(1, 3, 8, 8, **F64)
    lap = laplacian(x, kernel)
    for c in range(3):
        torch.testing.assert_close(lap[:, c:c + 1], laplacian(x[:, c:c + 1], kernel))


def test_laplacian_of_constant_image_vanishes_inside_not_on_borders():
    """Hand derivation for a constant image c of 8x8.

    G keeps a constant image constant (the kernel sums to 1, replicate padding
    repeats c), so the zero-inserted image is S = 4c * e(i) e(j) with e = 1 on even
    indices and 0 on odd ones. S and the replicate padding are separable, so
    G(S)(i, j) = 4c g(i) g(j) with g the 1-D blur of e = [1,0,1,0,1,0,1,0] by
    k = [.05, .25, .4, .25, .05] (offsets -2..2), padding by repeating the end values:
      g(0): e(-2)=e(-1)=e(0)=1, e(1)=0, e(2)=1  -> .05 + .25 + .4 + .05      = 0.75
      g(1): e(-1)=1, e(0)=1, e(1)=0, e(2)=1, e(3)=0 -> .05 + .25 + .25        = 0.55
      g(2..5): an even centre gets .05 + .4 + .05, an odd one .25 + .25       = 0.5
      g(6): e(4)=1, e(5)=0, e(6)=1, e(7)=0, e(8)=e(7)=0 -> .05 + .4           = 0.45
      g(7): e(5)=0, e(6)=1, e(7)=0, e(8)=e(9)=e(7)=0 -> .25                   = 0.25
    lap = c - 4c g(i) g(j) = c (1 - 4 g(i) g(j)): 0 where g(i) = g(j) = 0.5; at the
    corner (0, 0) c (1 - 4 * 0.75^2) = -1.25 c; along the top edge c (1 - 1.5) = -0.5 c.
    """
    c = 0.6
    g = torch.tensor([0.75, 0.55, 0.5, 0.5, 0.5, 0.5, 0.45, 0.25], **F64)
    expected = c * (1 - 4 * torch.outer(g, g))
    lap = laplacian(torch.full((1, 1, 8, 8), c, **F64), gaussian_kernel_5(torch.float64))[0, 0]
    torch.testing.assert_close(lap, expected, rtol=0, atol=1e-12)
    assert torch.all(lap[2:6, 2:6].abs() < 1e-12)
    assert lap[0, 0].item() == pytest.approx(-1.25 * c)
    assert lap[0, 3].item() == pytest.approx(-0.5 * c)
    assert lap[7, 7].item() == pytest.approx(c * (1 - 4 * 0.25 * 0.25))
    border = torch.ones(8, 8, dtype=torch.bool)
    border[2:6, 2:6] = False
    # No product of two of g's border values is 1/4: the smallest |1 - 4 g g| on the
    # border is |1 - 4 * 0.55 * 0.45| = 0.01, at (1, 6) and (6, 1).
    assert torch.all(lap[border].abs() > 0.005 * c)
    assert lap[1, 6].item() == pytest.approx(0.01 * c)


def test_laplacian_of_one_pixel_is_minus_three_times_it():
    # 1x1 image a: replicate padding makes every blur return a, the zero-inserted image
    # is 4a, its blur 4a again, so lap = a - 4a = -3a.
    x = torch.tensor([[[[0.5]]]], **F64)
    assert laplacian(x, gaussian_kernel_5(torch.float64)).item() == pytest.approx(-1.5)
    # EdgeLoss(a, b) = sqrt(9 (a - b)^2 + eps^2).
    loss = EdgeLoss()(x, torch.tensor([[[[0.1]]]], **F64))
    assert loss.item() == pytest.approx(math.sqrt(9 * 0.4 ** 2 + EPS ** 2), rel=1e-12)


def test_laplacian_hand_computed_2x2():
    """x = [[1, 0], [0, 0]]: along a side of 2 with replicate padding, the blur weights
    are w = [.05+.25+.4, .25+.05] = [.7, .3] at index 0 and the mirror at index 1.
    G(x)(0,0) = .7 * .7 = .49; only (0, 0) survives down-sampling, as 4 * .49 = 1.96;
    blurring that single value gives 1.96 * w(i) w(j) = [[.9604, .4116], [.4116, .1764]];
    lap = x - that = [[.0396, -.4116], [-.4116, -.1764]]."""
    x = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]], **F64)
    expected = torch.tensor([[0.0396, -0.4116], [-0.4116, -0.1764]], **F64)
    torch.testing.assert_close(laplacian(x, gaussian_kernel_5(torch.float64))[0, 0], expected, rtol=0, atol=1e-12)
    loss = EdgeLoss()(x, torch.zeros_like(x))
    hand = sum(math.sqrt(v * v + EPS * EPS) for v in (0.0396, 0.4116, 0.4116, 0.1764)) / 4
    assert loss.item() == pytest.approx(hand, rel=1e-12)


def test_edge_loss_runs_without_cuda_in_float64(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    criterion = EdgeLoss()
    x = torch.rand(2, 3, 16, 16, **F64, requires_grad=True)
    y = torch.rand(2, 3, 16, 16, **F64)
    loss = criterion(x, y)
    assert loss.dtype == torch.float64 and loss.device.type == 'cpu'
    assert loss.item() > EPS
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # The same float32 input gives the same loss to float32 precision.
    loss32 = criterion(x.detach().float(), y.float())
    assert loss32.dtype == torch.float32
    assert loss32.item() == pytest.approx(loss.item(), rel=1e-5)


def test_edge_loss_builds_its_kernel_once_per_device_and_dtype():
    criterion = EdgeLoss()
    x = torch.rand(1, 3, 8, 8)
    first = criterion._kernel(x)
    criterion(x, torch.rand_like(x))
    assert criterion._kernel(torch.rand(4, 3, 16, 16)) is first
    assert criterion._kernel(x.double()) is not first
    assert criterion._kernel(x.double()).dtype == torch.float64


def test_edge_loss_gradient_matches_finite_differences():
    x = torch.rand(1, 1, 4, 4, **F64, requires_grad=True)
    y = torch.rand(1, 1, 4, 4, **F64)
    assert torch.autograd.gradcheck(EdgeLoss(), (x, y), fast_mode=True)


def test_multistage_loss_hand_values():
    target = torch.full((1, 3, 8, 8), 0.3)
    outputs = [torch.full((1, 3, 8, 8), v) for v in (1.5, 0.5, -0.2)]
    charb = lambda d: math.sqrt(d * d + 1e-6)  # noqa: E731
    clamped = MultiStageLoss('charbonnier_clamped')(outputs, target).item()
    assert clamped == pytest.approx(charb(0.7) + charb(0.2) + charb(0.3), rel=1e-5)
    plain = MultiStageLoss('charbonnier_edge', edge_weight=0.0)(outputs, target).item()
    assert plain == pytest.approx(charb(1.2) + charb(0.2) + charb(0.5), rel=1e-5)
    # The edge term enters linearly with its weight.
    rng_out = [torch.rand(1, 3, 8, 8) for _ in range(3)]
    loss = {w: MultiStageLoss('charbonnier_edge', edge_weight=w)(rng_out, target).item() for w in (0.0, 0.05, 1.0)}
    assert loss[0.05] - loss[0.0] == pytest.approx(0.05 * (loss[1.0] - loss[0.0]), rel=1e-4)
    with pytest.raises(ConfigError, match='OPTIM.LOSS'):
        MultiStageLoss('l1')


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Before any import: a None entry in sys.modules makes `import yacs` / `import yaml` raise ImportError,
# as where they are not installed.
WITHOUT_YACS_AND_YAML = "import sys; sys.modules['yacs'] = None; sys.modules['yaml'] = None\n"


def run_without_yacs_and_yaml(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', WITHOUT_YACS_AND_YAML + code], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_losses_import_without_yacs_and_yaml():
    """losses.py needs torch only: its OPTIM.LOSS check raises ConfigError with the same words."""
    done = run_without_yacs_and_yaml(
        'import losses\n'
        'try:\n'
        '    losses.MultiStageLoss("l1")\n'
        'except ValueError as err:\n'
        '    print(type(err).__name__, err)\n')
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ConfigError OPTIM.LOSS must be one of charbonnier_edge, charbonnier_clamped, got 'l1'"
    # the block is real: the configuration module, which does need them, fails under it
    blocked = run_without_yacs_and_yaml('import utils.training.config\n')
    assert blocked.returncode != 0 and 'import of yaml halted' in blocked.stderr


def test_the_config_error_is_one_class_wherever_it_is_imported_from():
    """train.py catches utils.training.config.ConfigError; the losses raise utils.errors.ConfigError."""
    import utils.errors
    assert ConfigError is utils.errors.ConfigError and issubclass(ConfigError, ValueError)
