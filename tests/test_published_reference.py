"""benchmarks/published_reference.py: the benchmarks' baseline computes what the exact path computes.

The reference runs the network's layers in the published code's order with
its allocations (new tensors for attention products and most sums, in-place
residuals in channel-attention blocks and ORBs). Its outputs must equal the
exact path's bit for bit, so the benchmark's `published` row and the exact
rows time the same function.
"""
import collections

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.published_reference import PublishedOrderMPRNet
from MPRNet import Decoder, DownSample, MPRNet, UpSample
from helpers import TINY
from utils.layers import SharedPReLU
from utils.inference.restorer import Restorer

pytestmark = pytest.mark.usefixtures('one_torch_thread')


class OpCounter(TorchDispatchMode):
    """Counts the ATen operations a block of code runs, by name ('mul', 'add_'); a PReLU counts as
    'prelu' whether it reaches the dispatcher whole (inference mode) or as '_prelu_kernel'."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.counts['prelu' if name == '_prelu_kernel' else name] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize('config,shape', [
    (TINY, (2, 3, 24, 40)),
    (MPRNet.for_task('Deraining').config, (1, 3, 64, 64)),
], ids=['tiny', 'Deraining'])
def test_same_outputs_bit_for_bit_as_the_exact_path(config, shape):
    model = MPRNet(**config).eval()
    reference = PublishedOrderMPRNet.like(model).eval()
    x = torch.rand(shape)
    with torch.inference_mode():
        ours, theirs = model(x), reference(x)
    for stage, (a, b) in enumerate(zip(ours, theirs), start=1):
        assert torch.equal(a, b), f'output {stage}: {(a - b).abs().max().item():.3g}'
    with torch.enable_grad():
        recorded = reference(x)
    assert all(torch.equal(a.detach(), b) for a, b in zip(recorded, theirs))


def test_same_result_through_the_restorer(tiny_model):
    x = torch.rand(1, 3, 21, 30)  # padded to 24x32 and cropped back
    assert torch.equal(Restorer(PublishedOrderMPRNet.like(tiny_model))(x), Restorer(tiny_model)(x))


def test_same_state_dict(tiny_model):
    reference = PublishedOrderMPRNet.like(tiny_model)
    theirs = reference.state_dict()
    assert list(theirs) == list(tiny_model.state_dict())
    assert all(torch.equal(v, theirs[k]) for k, v in tiny_model.state_dict().items())
    assert reference.config == tiny_model.config


def test_runs_none_of_the_projects_block_forwards(tiny_model):
    """Every module of the reference runs torch's own forward, a published-order one written in
    benchmarks/published_reference.py, or one of the three of MPRNet.py that only call their
    submodules, one after another, as published (Decoder, DownSample, UpSample); so none of
    this project's in-place inference code is what it times."""
    reference = PublishedOrderMPRNet.like(tiny_model)
    home = PublishedOrderMPRNet.forward.__module__
    kinds = {type(m) for m in reference.modules()}
    for kind in kinds - {Decoder, DownSample, UpSample}:
        assert kind.forward.__module__ == home or kind.__module__.startswith('torch.nn.'), kind
    assert torch.nn.PReLU in kinds and not any(issubclass(k, SharedPReLU) for k in kinds)
    assert {k.__name__ for k in kinds} >= {'_CAB', '_CALayer', '_SAM', '_Encoder', '_SkipUpSample', '_ORB', '_ORSNet'}


def test_allocates_like_the_published_code(tiny_config):
    """Channel-attention blocks: product out of place, residual in place (likewise ORBs); SAM,
    skips, fusions and the final sum out of place. Counted for the tiny model (num_cab=2):
    7 shallow + 24 stage-1 encoder + 16 stage-1 decoder + 12 stage-2 encoder + 8 stage-2 decoder
    + 6 ORB channel-attention blocks = 73 blocks, 3 ORBs and 3 SAM calls."""
    reference = PublishedOrderMPRNet.like(MPRNet(**tiny_config)).eval()
    counter = OpCounter()
    with torch.inference_mode(), counter:
        reference(torch.rand(1, 3, 16, 16))
    blocks, orbs, sams = 73, 3, 3
    assert counter.counts['prelu'] == blocks
    assert counter.counts['mul'] == blocks + sams
    assert counter.counts['add_'] == blocks + orbs
    # 2 per SAM, 2 skips per decoder call (3 calls), 2 per fused level (3 levels x 2 halves),
    # 2 per ORSNet fusion (3), 1 final.
    assert counter.counts['add'] == 2 * sams + 2 * 3 + 2 * 6 + 2 * 3 + 1
