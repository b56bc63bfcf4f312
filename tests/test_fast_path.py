"""The fast path computes the same function as the exact path (tiny model, on TORCH_DEVICE).

On a GPU with TF32 the batched and published orders differ by ~1e-3 because cuDNN's
TF32 algorithms depend on the batch size; in true fp32 (the CPU, or a GPU with TF32 off, as
conftest.py sets it for TORCH_DEVICE=cuda) the two orders must agree to 1e-5, which is what
these tests check. The benchmark tests at the end time the CPU and stay there.
"""
import copy
import importlib.util
import math
import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from MPRNet import CAB, MPRNet
from utils.inference.restorer import Restorer

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def natural_batch(height=24, width=32, device='cpu'):
    """Two natural-looking images (N=2, 3, H, W) in [0, 1]: a photo and its mirrored, darkened copy."""
    img = cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)
    return torch.stack([x, 0.6 * x.flip(-1)]).to(device)


def stage_outputs(model, x, batch_patches):
    model.batch_patches = batch_patches
    with torch.no_grad():
        return model(x)


def parameter_grads(model, x, batch_patches=False, checkpointing=False):
    """Gradients of a loss over all three stage outputs w.r.t. every parameter and the input."""
    model.train()
    model.batch_patches = batch_patches
    model.set_grad_checkpointing(checkpointing)
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    outs = model(x)
    loss = sum(((out - 0.5) ** 2).mean() + out[:, 0].abs().mean() for out in outs)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    grads['<input>'] = x.grad.clone()
    return [o.detach() for o in outs], grads


def test_batched_patches_forward_equals_published_order(tiny_model, device):
    tiny_model.to(device)
    x = natural_batch(device=device)
    published = stage_outputs(tiny_model, x, batch_patches=False)
    batched = stage_outputs(tiny_model, x, batch_patches=True)
    assert len(batched) == 3
    for stage, (a, b) in enumerate(zip(published, batched), start=1):
        assert a.shape == b.shape == x.shape
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0, msg=f'output {stage} differs')


def test_batched_patches_is_per_image(tiny_model, device):
    """Batching the patches must not mix images of a batch: each image alone gives the same result."""
    tiny_model.to(device)
    x = natural_batch(device=device)
    together = stage_outputs(tiny_model, x, batch_patches=True)[0]
    for i in range(x.shape[0]):
        alone = stage_outputs(tiny_model, x[i:i + 1], batch_patches=False)[0]
        torch.testing.assert_close(together[i:i + 1], alone, atol=1e-5, rtol=0)


def test_batched_patches_gradients_equal_published_order(tiny_model, device):
    tiny_model.to(device)
    x = natural_batch(device=device)
    _, published = parameter_grads(tiny_model, x, batch_patches=False)
    _, batched = parameter_grads(tiny_model, x, batch_patches=True)
    assert published.keys() == batched.keys()
    # Not vacuous: most tensors get a gradient (at n_feat=8 a few 2-channel attention layers
    # sit behind a ReLU that this random init leaves dead).
    assert sum(bool(g.abs().sum() > 0) for g in published.values()) > 0.8 * len(published)
    for name in published:
        torch.testing.assert_close(batched[name], published[name], atol=1e-5, rtol=1e-5, msg=name)


def count_cab_body_calls(model):
    """Attach counters to every CAB's conv body; returns the list of counters."""
    counts = []
    for module in model.modules():
        if isinstance(module, CAB):
            counts.append([0])
            module.body.register_forward_hook(lambda *_, c=counts[-1]: c.__setitem__(0, c[0] + 1))
    return counts


@pytest.mark.parametrize('batch_patches', [False, True])
def test_grad_checkpointing_same_outputs_and_gradients(tiny_model, device, batch_patches):
    tiny_model.to(device)
    x = natural_batch(device=device)
    counts = count_cab_body_calls(tiny_model)
    outs_plain, grads_plain = parameter_grads(tiny_model, x, batch_patches)
    calls_plain = sum(c[0] for c in counts)
    outs_ckpt, grads_ckpt = parameter_grads(tiny_model, x, batch_patches, checkpointing=True)
    calls_ckpt = sum(c[0] for c in counts) - calls_plain
    # Checkpointing really recomputed: every CAB body ran once more, during backward.
    assert calls_ckpt == 2 * calls_plain
    for a, b in zip(outs_plain, outs_ckpt):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0)
    for name in grads_plain:
        torch.testing.assert_close(grads_ckpt[name], grads_plain[name], atol=1e-6, rtol=0, msg=name)


def test_checkpointing_is_off_without_grad(tiny_model, device):
    """Inference under no_grad never recomputes, whatever the switch says."""
    tiny_model.to(device)
    counts = count_cab_body_calls(tiny_model)
    calls = {}
    for enabled in (False, True):
        before = [c[0] for c in counts]
        tiny_model.set_grad_checkpointing(enabled)
        with torch.no_grad():
            tiny_model(natural_batch(16, 16, device))
        calls[enabled] = [c[0] - b for c, b in zip(counts, before)]
    assert calls[True] == calls[False]


def test_exact_restorer_is_pad_model_crop_clamp(tiny_model, device):
    """Restorer's default path is, bit for bit, the plain recipe written out by hand."""
    tiny_model.to(device)
    x = natural_batch(22, 29, device)  # not multiples of 8: pads 2 rows and 3 columns
    with torch.no_grad():
        padded = F.pad(x, (0, 3, 0, 2), mode='reflect')
        expected = tiny_model(padded)[0][:, :, :22, :29].clamp(0, 1)
    result = Restorer(tiny_model, device)(x)
    assert result.shape == x.shape
    assert torch.equal(result, expected)


@pytest.mark.slow
def test_fast_restorer_leaves_a_separate_exact_model_alone(tiny_model, device):
    tiny_model.to(device)
    x = natural_batch(22, 29, device)
    fast_model = copy.deepcopy(tiny_model)
    exact = Restorer(tiny_model, device)
    before = exact(x)
    fast = Restorer(fast_model, device, precision='bf16', fast=True)
    fast(x)
    assert torch.equal(exact(x), before)
    assert tiny_model.batch_patches is False
    assert all(p.is_contiguous() for p in tiny_model.parameters())
    # The fast Restorer switched its own model over (a copy: the model it was given is left alone).
    assert fast.model.batch_patches is True
    assert fast.model.shallow_feat1[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert fast_model.batch_patches is False
    assert all(p.is_contiguous() for p in fast_model.parameters())


def test_fast_restorer_in_fp32_matches_exact(tiny_model, device):
    """fast=True alone (batched patches + channels-last) only reorders the arithmetic."""
    tiny_model.to(device)
    x = natural_batch(22, 29, device)
    exact = Restorer(copy.deepcopy(tiny_model), device)(x)
    fast = Restorer(tiny_model, device, precision='fp32', fast=True)(x)
    torch.testing.assert_close(fast, exact, atol=1e-5, rtol=0)


def test_channels_last_input_and_model_match_contiguous(tiny_model, device):
    tiny_model.to(device)
    x = natural_batch(device=device)
    with torch.no_grad():
        reference = tiny_model(x)
        from_cl_input = tiny_model(x.contiguous(memory_format=torch.channels_last))
        cl_model = copy.deepcopy(tiny_model).to(memory_format=torch.channels_last)
        both_cl = cl_model(x.contiguous(memory_format=torch.channels_last))
    for a, b, c in zip(reference, from_cl_input, both_cl):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
        torch.testing.assert_close(c, a, atol=1e-5, rtol=0)


def test_bf16_autocast_stays_close_to_fp32(tiny_model, device):
    """bf16 keeps 8 significant bits: one rounding of a value in [0.5, 1) errs by up to
    2^-9 ~ 0.002 (half a unit in the last place; the ulp there is 2^-8 ~ 0.004). Autocast
    rounds every convolution's inputs and weights, and the output is the fp32 input plus a
    stage-3 residual that here (random weights) reaches 0.4-1.0, carrying the rounding of
    ~100 layers. Measured over eight random initialisations at this size (24x32, two images,
    clamped like the Restorer): mean |difference| 0.0009-0.0015, max 0.0063-0.0134, PSNR
    52.8-58.0 dB. Bounds with margin: mean < 1 ulp (2^-8), max < 8 ulps (2^-5), and PSNR
    > 45 dB, the fast path's faithfulness target."""
    tiny_model.to(device)
    x = natural_batch(device=device)
    reference = Restorer(copy.deepcopy(tiny_model), device)(x)
    result = Restorer(tiny_model, device, precision='bf16')(x)
    diff = (result - reference).abs()
    assert diff.max() > 0, 'bf16 autocast changed nothing: it did not run'
    assert diff.mean() < 2 ** -8
    assert diff.max() < 2 ** -5
    psnr = 10 * math.log10(1.0 / ((result - reference) ** 2).mean().item())
    assert psnr > 45.0


def load_benchmark():
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'benchmarks', 'infer_speed.py')
    spec = importlib.util.spec_from_file_location('infer_speed', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.benchmark
def test_benchmark_rows_and_faithfulness(tmp_path):
    """The benchmark's published row (the published order, run in a second process) computes the
    exact path's output bit for bit; the batched and fast rows are within fp32 reordering error of
    it; the markdown file holds one line per row."""
    bench = load_benchmark()
    out = tmp_path / 'bench.md'
    rows = bench.main(['--device', 'cpu', '--tasks', 'deraining', '--compact', 'none', '--sizes', '16x16',
                       '--warmup', '1', '--repeats', '2', '--variants', 'published', 'fp32+batched', 'fp32-fast',
                       '--out', str(out)])
    by_name = {r.variant.name: r for r in rows}
    assert list(by_name) == ['published', 'fp32+batched', 'fp32-fast']
    assert by_name['published'].max_abs_diff == 0 and math.isinf(by_name['published'].psnr_db)
    for name in ('fp32+batched', 'fp32-fast'):
        row = by_name[name]
        assert row.max_abs_diff < 1e-5 and row.psnr_db > 100
        assert row.median_ms > 0 and row.images_per_s == pytest.approx(1000 / row.median_ms)
    text = out.read_text()
    assert text.count('| Deraining | 16x16 |') == 3 and 'PyTorch ' + torch.__version__ in text


@pytest.mark.slow
@pytest.mark.benchmark
def test_benchmark_default_cpu_rows(tmp_path):
    """The default CPU rows: published and exact under glibc's default malloc (second process), exact
    with the project's allocator, fast fp32 and auto; for a preset and a compact model; with GFLOP/s
    from the counted FLOPs and the CPU's precision flags in the report."""
    bench = load_benchmark()
    out = tmp_path / 'bench.md'
    rows = bench.main(['--device', 'cpu', '--tasks', 'deraining', '--compact', 'random', '--sizes', '16x16',
                       '--warmup', '1', '--repeats', '1', '--out', str(out)])
    names = ['published', 'exact-system-malloc', 'exact', 'fp32-fast', 'auto']
    assert [(r.task, r.variant.name) for r in rows] == [(m, n) for m in ('Deraining', 'Deraining compact')
                                                        for n in names]
    flops = {m: bench.count_flops(cfg, (16, 16), 1)
             for m, cfg in (('Deraining', MPRNet.for_task('Deraining').config), ('Deraining compact', bench.COMPACT))}
    assert flops['Deraining compact'] < flops['Deraining']
    for r in rows:
        assert r.median_ms > 0 and r.gflops_per_s == pytest.approx(flops[r.task] / 1e9 / (r.median_ms / 1e3))
        if r.variant.name in ('published', 'exact-system-malloc', 'exact'):
            assert r.max_abs_diff == 0, r  # the same function, bit for bit, whatever the allocator
        elif r.variant.name == 'fp32-fast':
            assert r.max_abs_diff < 1e-5
        else:
            assert r.resolved in ('bf16 + fast', 'fp32 + fast') and r.psnr_db > 45
    text = out.read_text()
    assert 'avx512_bf16 ' in text and 'amx_bf16 ' in text and 'MPRNET_ALLOCATOR=system' in text
    assert text.count('| Deraining compact | 16x16 |') == 5 and '| exact (default allocator) |' in text


def test_benchmark_skips_a_missing_bundled_compact_model(tmp_path, monkeypatch):
    bench = load_benchmark()
    monkeypatch.setattr(bench, 'bundled_compact_path', lambda task: str(tmp_path / 'missing.pth'))
    model, why = bench.make_compact_model('Deraining', 'bundled', 0)
    assert model is None and 'missing.pth' in why and '--compact random' in why


@pytest.mark.slow
@pytest.mark.benchmark
def test_conv_ceiling_bounds_the_measured_speed_up():
    """Convolution time is part of the forward's time, so for every fast path the share is at most
    100% and the ceiling (published / bf16 convolution time) is at least the measured speed-up."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'benchmarks', 'conv_ceiling.py')
    spec = importlib.util.spec_from_file_location('conv_ceiling', path)
    ceiling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ceiling)
    result = ceiling.measure('Deraining', 16, 24, repeats=1)
    times, convs = result['times'], result['convs']
    assert list(times) == ['published', 'exact', 'fp32 fast', 'bf16 fast']
    for name, conv in convs.items():
        assert 0 < conv <= times[name] * 1.05, name  # 5%: the profiled call is another call than the timed ones
    text = ceiling.report('Deraining', '16x24', 1, result)
    assert text.count('\n| ') == 5 and 'Ceiling of bf16 + fast' in text
