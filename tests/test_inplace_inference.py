"""Inference without autograd writes into its own temporaries; the outputs stay the same bit for bit.

MPRNet's forward under torch.no_grad / torch.inference_mode adds residuals and
multiplies attention weights in place, and in fp32 on the CPU runs the shared
PReLU in place (MPRNet.py: _add, _mul, SharedPReLU). With autograd recording
it runs every operation out of place, as it always did. The two must agree
exactly (torch.equal, not a tolerance) on every stage output, in every way the
network is run: per-quadrant or batched patches, contiguous or channels-last,
a tiny model or a full preset, fp32 or under bf16 autocast.
"""
import pytest
import torch
import torch.nn.functional as F

from MPRNet import CAB, MPRNet
from helpers import TINY
from utils.layers import SharedPReLU

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def recorded_forward(model, x):
    """The forward with autograd recording (the path training takes), outputs detached."""
    with torch.enable_grad():
        outs = model(x)
    assert all(o.requires_grad for o in outs), 'autograd did not record: the comparison would be vacuous'
    return [o.detach() for o in outs]


def assert_same_bits(outs, expected, what):
    assert len(outs) == len(expected) == 3
    for stage, (a, b) in enumerate(zip(outs, expected), start=1):
        assert a.dtype == b.dtype and a.shape == b.shape, f'{what}: output {stage}'
        assert torch.equal(a, b), f'{what}: output {stage} differs by {(a - b).abs().max().item():.3g}'


def natural_input(n, h, w):
    """Smooth images with some structure, in [0, 1]."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing='ij')
    base = torch.stack([0.5 + 0.4 * torch.sin(6 * xx + 3 * yy), xx * yy, 0.3 + 0.6 * (1 - yy) * xx])
    return torch.stack([base if i % 2 == 0 else base.flip(-1) * 0.7 for i in range(n)]).clamp(0, 1)


MODELS = {
    'tiny': (TINY, (2, 24, 32)),
    'Deraining': (MPRNet.for_task('Deraining').config, (1, 64, 64)),
}


@pytest.mark.parametrize('name', list(MODELS))
@pytest.mark.parametrize('batch_patches', [False, True])
@pytest.mark.parametrize('channels_last', [False, True])
def test_inference_is_bit_identical_to_recorded_forward(name, batch_patches, channels_last):
    config, (n, h, w) = MODELS[name]
    model = MPRNet(**config, batch_patches=batch_patches).eval()
    x = natural_input(n, h, w)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    expected = recorded_forward(model, x)
    with torch.no_grad():
        assert_same_bits(model(x), expected, 'no_grad')
    with torch.inference_mode():
        assert_same_bits(model(x), expected, 'inference_mode')
    assert torch.equal(x, natural_input(n, h, w)), 'the input was modified'


@pytest.mark.parametrize('batch_patches', [False, True])
def test_inference_under_bf16_autocast_is_bit_identical(tiny_model, batch_patches):
    """Under autocast the in-place paths keep the dtypes of the out-of-place ones: a bf16 residual
    plus the fp32 input stays an fp32 sum, computed out of place."""
    tiny_model.batch_patches = batch_patches
    x = natural_input(2, 24, 32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        expected = recorded_forward(tiny_model, x)
        with torch.inference_mode():
            outs = tiny_model(x)
    assert [o.dtype for o in expected] == [torch.float32] * 3
    assert_same_bits(outs, expected, 'bf16 autocast')


def test_grad_checkpointing_model_infers_the_same_bits(tiny_model):
    x = natural_input(2, 24, 32)
    expected = recorded_forward(tiny_model, x)
    tiny_model.set_grad_checkpointing(True)
    with torch.no_grad():
        assert_same_bits(tiny_model(x), expected, 'checkpointing model under no_grad')


def storage_of_outputs(model, x, grad):
    """For each CAB, the data_ptr of its first conv's output, of its PReLU's output (the second
    conv's input; the PReLU module itself is shared by all blocks), of its body's output and of
    the block's output."""
    records, hooks = [], []

    def keep(record, key, tensor):
        record.setdefault(key, tensor.data_ptr())

    for module in model.modules():
        if isinstance(module, CAB):
            r = {}
            records.append(r)
            hooks += [
                module.body[0].register_forward_hook(lambda m, a, out, r=r: keep(r, 'conv1', out)),
                module.body[2].register_forward_pre_hook(lambda m, a, r=r: keep(r, 'act', a[0])),
                module.body.register_forward_hook(lambda m, a, out, r=r: keep(r, 'body', out)),
                module.register_forward_hook(lambda m, a, out, r=r: keep(r, 'block', out)),
            ]
    try:
        with torch.set_grad_enabled(grad):
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    assert records and all(len(r) == 4 for r in records)
    return records


def test_inference_really_works_in_place(tiny_model):
    """Not vacuous: without autograd each block's PReLU and its attention product and residual sum
    land in the convolutions' own outputs; with autograd every one is a new tensor."""
    x = natural_input(1, 16, 16)
    for record in storage_of_outputs(tiny_model, x, grad=False):
        assert record['act'] == record['conv1']
        assert record['block'] == record['body']
    for record in storage_of_outputs(tiny_model, x, grad=True):
        assert record['act'] != record['conv1']
        assert record['block'] != record['body']


def test_shared_prelu_in_place_equals_prelu_bit_for_bit():
    """leaky_relu_ with the slope read back equals PReLU on every kind of fp32 value: signed
    zeros, infinities, NaN, subnormals, and slopes that are not round numbers."""
    special = torch.tensor([0.0, -0.0, float('inf'), -float('inf'), float('nan'), 1e-40, -1e-40,
                            torch.finfo(torch.float32).max, -torch.finfo(torch.float32).max, -1e-30])
    x = torch.cat([special, torch.randn(59 * 71 - len(special)) * 10]).view(1, 1, 59, 71)
    for slope in (0.25, 0.2371, -0.73, 1.7, 0.0):
        act = SharedPReLU()
        with torch.no_grad():
            act.weight.fill_(slope)
        expected = F.prelu(x, act.weight).detach()
        work = x.clone()
        with torch.no_grad():
            out = act(work)
        assert out.data_ptr() == work.data_ptr()
        same = (out.view(torch.int32) == expected.view(torch.int32)) | (out.isnan() & expected.isnan())
        assert bool(same.all()), f'slope {slope}'


def test_shared_prelu_in_place_under_bf16_autocast_equals_prelu_on_every_bf16_value():
    """Under autocast PReLU rounds its slope to bf16 and returns bf16; the in-place path must match
    on all 65536 bf16 bit patterns, contiguous and channels-last."""
    every = torch.arange(-2 ** 15, 2 ** 15, dtype=torch.int32).to(torch.int16).view(torch.bfloat16)
    x = every.view(1, 4, 128, 128)
    for layout in (torch.contiguous_format, torch.channels_last):
        for slope in (0.25, 0.2371, -0.73, 1.7):
            act = SharedPReLU()
            with torch.no_grad():
                act.weight.fill_(slope)
            with torch.autocast('cpu', dtype=torch.bfloat16):
                expected = F.prelu(x.contiguous(memory_format=layout), act.weight).detach()
                work = x.contiguous(memory_format=layout).clone()
                with torch.no_grad():
                    out = act(work)
            assert out.data_ptr() == work.data_ptr() and out.dtype == torch.bfloat16
            same = (out.view(torch.int16) == expected.view(torch.int16)) | (out.isnan() & expected.isnan())
            assert bool(same.all()), f'slope {slope}'


def test_shared_prelu_leaves_its_input_alone_when_recording_or_casting():
    act = SharedPReLU()
    x = torch.randn(1, 4, 8, 8)
    before = x.clone()
    out = act(x)
    assert out.requires_grad and torch.equal(x, before)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        out = act(x)  # fp32 input under bf16 autocast: PReLU casts, a new bf16 tensor
    assert torch.equal(x, before) and out.dtype == torch.bfloat16


def test_training_gradients_match_the_published_order(tiny_model):
    """With autograd on, the forward is the out-of-place one: its gradients are those of the
    published order written out by hand (benchmarks/published_reference.py). Only the order in
    which the backward pass accumulates the four quadrants' contributions differs, so they agree
    to float rounding, not bit for bit."""
    from benchmarks.published_reference import PublishedOrderMPRNet
    reference = PublishedOrderMPRNet.like(tiny_model)
    x = natural_input(2, 24, 32)
    grads = []
    for model in (tiny_model, reference):
        model.zero_grad(set_to_none=True)
        outs = model(x)
        sum((out - 0.5).square().mean() for out in outs).backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7, msg=name)


def test_fp32_inference_makes_no_elementwise_temporaries(tiny_config):
    """In fp32 on the CPU no residual sum, attention product or PReLU makes a new tensor
    (the published code makes 76 products, 31 sums and 73 PReLU outputs here: see
    tests/test_published_reference.py); with autograd recording all of them do."""
    from tests.test_published_reference import OpCounter
    model = MPRNet(**tiny_config).eval()
    x = torch.rand(1, 3, 16, 16)
    counted = {}
    for grad in (False, True):
        counter = OpCounter()
        with torch.set_grad_enabled(grad), counter:
            model(x)
        counted[grad] = counter.counts
    new_tensors = ('mul', 'add', 'prelu')
    assert {op: counted[False][op] for op in new_tensors} == dict.fromkeys(new_tensors, 0)
    assert counted[False]['leaky_relu_'] == 73
    assert counted[False]['mul_'] == 73 + 3
    assert {op: counted[True][op] for op in new_tensors} == {'mul': 76, 'add': 73 + 3 + 31, 'prelu': 73}
