"""Widening a narrower MPRNet into a wider one (TRAINING.INIT_WIDEN): the wider network starts by
computing exactly what the narrower one did, and can then learn with its added channels."""
import pytest
import torch

from MPRNet import MPRNet
from utils.files.checkpoint import CheckpointMismatchError
from utils.training.widen import load_widened, widened_state_dict

NARROW = dict(n_feat=8, scale_unetfeats=4, scale_orsnetfeats=4, num_cab=2)
WIDE = dict(n_feat=12, scale_unetfeats=8, scale_orsnetfeats=4, num_cab=2)


def _randomised(model: MPRNet, seed: int) -> MPRNet:
    """Weights far from the default initialisation (every tensor random, the PReLU slope too), so
    that an embedding error anywhere shows in the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1  # keeps activations of order 1 through the stages
            p.copy_(torch.randn(p.shape, generator=g) * (fan_in ** -0.5 if p.dim() > 1 else 0.3))
    return model.eval()


def test_widened_model_computes_the_narrow_output():
    torch.manual_seed(0)
    narrow = _randomised(MPRNet(**NARROW), 1)
    wide = _randomised(MPRNet(**WIDE), 2)
    wide.load_state_dict(widened_state_dict(narrow.state_dict(), wide), strict=True)
    # In float64, so that rounding (1e-6 of outputs of order 50 in float32) cannot hide a real error.
    narrow, wide = narrow.double(), wide.double()
    x = torch.rand(2, 3, 32, 40, dtype=torch.float64)
    with torch.no_grad():
        expected, got = narrow(x), wide(x)
    for e, g in zip(expected, got):  # all three stages
        assert (g - e).abs().max() < 1e-9
    # and a wide model that merely copied the narrow tensors without the zero blocks would not:
    # its added channels are live (random), so the check above is not vacuous.
    wrong = _randomised(MPRNet(**WIDE), 2).double()
    state = wrong.state_dict()
    for k, v in narrow.state_dict().items():
        state[k][tuple(slice(0, n) for n in v.shape)] = v
    wrong.load_state_dict(state)
    with torch.no_grad():
        assert (wrong(x)[0] - expected[0]).abs().max() > 1e-2


def test_added_channels_are_kept_and_learn():
    narrow = _randomised(MPRNet(**NARROW), 1)
    wide = _randomised(MPRNet(**WIDE), 2)
    fresh_rows = wide.shallow_feat1[0].weight[8:].clone()
    wide.load_state_dict(widened_state_dict(narrow.state_dict(), wide))
    # the added output channels keep the wide model's own weights (not zero: zero rows never learn)
    assert torch.equal(wide.shallow_feat1[0].weight[8:], fresh_rows)
    # the block through which the output would read added channels is zero, and gets a gradient
    tail_new = wide.tail.weight[:, 8 + 4:]
    assert torch.count_nonzero(tail_new) == 0
    wide.train()
    wide(torch.rand(1, 3, 32, 32))[0].square().mean().backward()
    assert wide.tail.weight.grad[:, 12:].abs().sum() > 0


def test_concatenated_inputs_keep_both_halves():
    narrow = _randomised(MPRNet(**NARROW), 1)
    wide = MPRNet(**WIDE)
    state = widened_state_dict(narrow.state_dict(), wide)
    w, n = state['concat12.weight'], narrow.state_dict()['concat12.weight']
    # narrow input channels 0..7 are the shallow features, 8..15 the SAM features; in the wide
    # model the SAM features start at 12.
    assert torch.equal(w[:8, :8], n[:, :8]) and torch.equal(w[:8, 12:20], n[:, 8:])
    assert torch.count_nonzero(w[:8, 8:12]) == 0 and torch.count_nonzero(w[:8, 20:]) == 0


@pytest.mark.parametrize('file_config, message', [
    (dict(NARROW, num_cab=3), 'NUM_CAB'),                                # another depth
    (dict(WIDE, n_feat=16), 'more channels than the model'),            # wider than the model
    (dict(NARROW, kernel_size=5), 'only the channel counts'),          # another kernel
])
def test_what_cannot_be_widened_is_refused(file_config, message):
    with pytest.raises(CheckpointMismatchError, match=message):
        widened_state_dict(MPRNet(**file_config).state_dict(), MPRNet(**WIDE), 'narrow.pth')


def test_load_widened_reads_a_file_and_counts(tmp_path):
    narrow = _randomised(MPRNet(**NARROW), 1)
    path = tmp_path / 'narrow.pth'
    torch.save({'state_dict': narrow.state_dict()}, path)
    counts = load_widened(MPRNet(**WIDE), str(path))
    wide_keys = MPRNet(**WIDE).state_dict()
    changed = sum(wide_keys[k].shape != v.shape for k, v in narrow.state_dict().items())
    assert counts == {'copied': len(wide_keys) - changed, 'widened': changed} and changed > 0
