"""Inference speed of MPRNet: the published-style path against this project's fast paths, in one run.

For every task preset and image size, each variant restores the same
natural-looking image with the same weights (seeded random initialisation,
or the official files with --weights). A row reports the median of repeated
timed calls after warm-up (CUDA events on a GPU, perf_counter on CPU),
images per second, peak memory, and how far the variant's output is from
the exact fp32 path (max absolute difference and PSNR). The table is printed
last and written as markdown with --out.

    python benchmarks/infer_speed.py --device cuda --out benchmarks/results/infer_cuda.md
    python benchmarks/infer_speed.py --device cpu --threads 2 --out benchmarks/results/infer_cpu.md
"""
import argparse
import copy
import ctypes
import datetime
import gc
import math
import os
import platform
import shlex
import statistics
import sys
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from MPRNet import PRESETS, MPRNet  # noqa: E402
from utils.checkpoint import build_model  # noqa: E402
from utils.inference import Restorer, resolve_device  # noqa: E402
from benchmarks.common import GIB, device_description, fmt, parse_task, require_positive, timed_ms  # noqa: E402



@dataclass(frozen=True)
class Variant:
    """One way of running the model; `published` is the published code's way."""
    name: str
    precision: str       # 'fp32' | 'bf16' | 'fp16' (autocast)
    fast: bool           # Restorer(fast=True): batched patches + channels-last + cudnn.benchmark
    batch_patches: bool  # stage-1 quadrants / stage-2 halves as one batched call
    about: str


VARIANTS = [
    Variant('published', 'fp32', False, False, 'fp32, eager, per-quadrant loop, contiguous (the published code)'),
    Variant('fp32+batched', 'fp32', False, True, 'fp32, quadrants and halves batched'),
    Variant('fp32-fast', 'fp32', True, True, 'Restorer(fast=True): batched + channels-last + cudnn.benchmark'),
    Variant('bf16', 'bf16', False, False, 'bf16 autocast, per-quadrant loop, contiguous'),
    Variant('bf16-fast', 'bf16', True, True, "Restorer(fast=True, precision='bf16')"),
    Variant('fp16', 'fp16', False, False, 'fp16 autocast, per-quadrant loop, contiguous'),
    Variant('fp16-fast', 'fp16', True, True, "Restorer(fast=True, precision='fp16')"),
]
VARIANT_BY_NAME = {v.name: v for v in VARIANTS}

# Sizes as W x H: a 720p video frame for deblurring, a typical rain-dataset image, an SIDD block.
CUDA_SIZES = {'Deblurring': (1280, 720), 'Deraining': (480, 320), 'Denoising': (256, 256)}
CPU_SIZE = (256, 256)


@dataclass
class Row:
    task: str
    size: Tuple[int, int]
    variant: Variant
    median_ms: float = math.nan
    images_per_s: float = math.nan
    peak_gib: Optional[float] = None
    max_abs_diff: float = math.nan
    psnr_db: float = math.nan
    finite: bool = True  # False: the variant's output held inf or NaN (e.g. fp16 overflow)
    error: str = ''


# ---------------------------------------------------------------- inputs and models

def parse_size(text: str) -> Tuple[int, int]:
    """'1280x720' -> (1280, 720) = (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'size {text!r} must look like WIDTHxHEIGHT, e.g. 1280x720') from None
    if w < 8 or h < 8:
        raise argparse.ArgumentTypeError(f'size {text!r} is too small: at least 8x8')
    return w, h


def natural_input(size: Tuple[int, int], batch: int) -> torch.Tensor:
    """(batch, 3, H, W) in [0, 1]: scikit-image's astronaut photo resized to W x H
    (later images of a batch are mirrored copies) rather than noise, so activations
    have the magnitudes of real use."""
    from skimage import data
    w, h = size
    photo = data.astronaut()
    shrinking = w * h < photo.shape[0] * photo.shape[1]
    img = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    x = torch.from_numpy(np.clip(img.astype(np.float32) / 255.0, 0, 1)).permute(2, 0, 1)
    return torch.stack([x if i % 2 == 0 else x.flip(-1) for i in range(batch)])


def make_model(task: str, weights_dir: Optional[str], seed: int) -> Tuple[MPRNet, str]:
    """The task's preset with official weights if found in `weights_dir`, else a seeded random init."""
    if weights_dir:
        path = os.path.join(weights_dir, f'model_{task.lower()}.pth')
        if not os.path.isfile(path):
            raise FileNotFoundError(f'--weights {weights_dir}: no {os.path.basename(path)} there '
                                    f'(expected the official file name for {task})')
        return build_model(task, weights=path).eval(), path
    torch.manual_seed(seed)
    return MPRNet.for_task(task).eval(), f'random init (default PyTorch init, seed {seed})'


# ---------------------------------------------------------------- measuring

def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _rss_bytes() -> Optional[int]:
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError, IndexError):
        return None


def _release_freed_memory() -> None:
    """Return freed heap to the OS (glibc), so the next RSS baseline is not inflated by caches."""
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory of a block: CUDA max_memory_allocated (weights, input and activations), or on
    CPU the growth of the resident set above its level at entry, sampled every millisecond by a
    thread (PyTorch ops release the GIL). `gib` is None where it cannot be measured."""

    def __init__(self, device: torch.device):
        self.device, self.gib = device, None
        self._stop = threading.Event()

    def __enter__(self):
        if self.device.type == 'cuda':
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _release_freed_memory()
            self._base = self._peak = _rss_bytes()
            if self._base is not None:
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
        return self

    def restart_cuda_peak(self):
        """Forget the CUDA peak so far (the first call's cuDNN autotuning workspaces)."""
        if self.device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(self.device)

    def _sample(self):
        while not self._stop.wait(0.001):
            self._peak = max(self._peak, _rss_bytes() or 0)

    def __exit__(self, *exc):
        if self.device.type == 'cuda':
            self.gib = torch.cuda.max_memory_allocated(self.device) / GIB
        elif self._base is not None:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _rss_bytes() or 0)
            self.gib = (self._peak - self._base) / GIB
        return False


def faithfulness(out: torch.Tensor, reference: torch.Tensor) -> Tuple[float, float]:
    """Max absolute difference and PSNR (peak 1) of `out` against `reference`, both in [0, 1]."""
    diff = out.double() - reference.double()
    mse = diff.pow(2).mean().item()
    return diff.abs().max().item(), (math.inf if mse == 0 else 10 * math.log10(1.0 / mse))


def set_tf32(enabled: bool) -> None:
    torch.backends.cudnn.allow_tf32 = enabled
    torch.backends.cuda.matmul.allow_tf32 = enabled


def exact_reference(model: MPRNet, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The exact path's output on CPU: fp32, published order, TF32 off (true fp32 convolutions)."""
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    set_tf32(False)
    try:
        return Restorer(copy.deepcopy(model), device)(x.to(device)).cpu()
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


def run_variant(row: Row, model: MPRNet, x: torch.Tensor, reference: torch.Tensor, device: torch.device,
                warmup: int, repeats: int, progress: tqdm) -> None:
    """Fill `row` with timings, memory and faithfulness of one variant."""
    variant = row.variant
    # PyTorch's defaults (TF32 convolutions, no autotuning) for everything but the fast rows.
    torch.backends.cudnn.benchmark = False
    model = copy.deepcopy(model)
    model.batch_patches = variant.batch_patches
    x = x.to(device)
    try:
        # Memory is watched over the warm-up calls only, so the sampling never touches the timings.
        with PeakMemory(device) as memory:
            restorer = Restorer(model, device, precision=variant.precision, fast=variant.fast)
            out = restorer(x).cpu()  # the first warm-up call, kept for faithfulness
            progress.update()
            if warmup > 1:
                memory.restart_cuda_peak()
            for _ in range(warmup - 1):
                restorer(x)
                progress.update()
            synchronize(device)
        times = []
        for _ in range(repeats):
            times.append(timed_ms(lambda: restorer(x), device))
            progress.update()
    except torch.cuda.OutOfMemoryError:
        row.error = 'out of memory'
        return
    finally:
        torch.backends.cudnn.benchmark = False
    row.median_ms = statistics.median(times)
    row.images_per_s = x.shape[0] / (row.median_ms / 1e3)
    row.peak_gib = memory.gib
    row.finite = bool(torch.isfinite(out).all())
    if row.finite:
        row.max_abs_diff, row.psnr_db = faithfulness(out, reference)


# ---------------------------------------------------------------- the table

def _speedup(base_ms: float, ms: float) -> str:
    return '-' if math.isnan(base_ms) or math.isnan(ms) else f'{base_ms / ms:.2f}x'


def markdown_table(rows: List[Row], device: torch.device) -> str:
    mem_label = 'peak GiB (allocated)' if device.type == 'cuda' else 'peak RSS growth GiB'
    lines = [f'| task | size (WxH) | variant | median ms | images/s | speed-up | {mem_label} | '
             'max abs diff | PSNR vs exact dB |',
             '|---|---|---|---:|---:|---:|---:|---:|---:|']
    published = {(r.task, r.size): r.median_ms for r in rows if r.variant.name == 'published'}
    for r in rows:
        size = f'{r.size[0]}x{r.size[1]}'
        if r.error:
            lines.append(f'| {r.task} | {size} | {r.variant.name} | {r.error} | - | - | - | - | - |')
            continue
        base = published.get((r.task, r.size), math.nan)
        faithful = (f'{fmt(r.max_abs_diff, ".2e")} | {fmt(r.psnr_db, ".1f")}' if r.finite
                    else 'non-finite output | -')
        lines.append(f'| {r.task} | {size} | {r.variant.name} | {fmt(r.median_ms, ".1f")} | '
                     f'{fmt(r.images_per_s, ".2f")} | {_speedup(base, r.median_ms)} | '
                     f'{fmt(r.peak_gib, ".2f")} | {faithful} |')
    return '\n'.join(lines)


def report(rows: List[Row], args, device: torch.device, weights: Dict[str, str], notes: List[str]) -> str:
    variants = sorted({r.variant.name: r.variant for r in rows}.values(), key=VARIANTS.index)
    memory_note = ('torch.cuda.max_memory_allocated over the warm-up calls after the first (which '
                   'also autotunes): weights, input and activations' if device.type == 'cuda' else
                   'growth of the resident set above its level before the variant ran, sampled every '
                   'millisecond over the warm-up calls after returning freed heap to the OS (glibc '
                   'malloc_trim); approximate')
    head = [
        '# MPRNet inference speed',
        '',
        f'- Device: {device_description(device, torch.get_num_threads())}',
        f'- PyTorch {torch.__version__}, Python {platform.python_version()}, '
        f'{datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")}',
        f'- Command: `python {shlex.join(sys.argv)}`',
        f'- Batch {args.batch}; {args.warmup} warm-up and {args.repeats} timed calls per row; median reported; '
        + ('CUDA-event timing.' if device.type == 'cuda' else 'perf_counter timing.'),
        '- Each call is the whole `Restorer` path: pad to a multiple of 8, forward, crop, clamp.',
        f'- Peak memory: {memory_note}.',
        '- Faithfulness: max |difference| and PSNR (peak 1) against the exact path on the same input and '
        'weights: fp32, published order, TF32 off. On CUDA the published row itself differs from it '
        'because PyTorch runs fp32 convolutions in TF32 by default.',
        '- Weights: ' + '; '.join(f'{task}: {src}' for task, src in weights.items()),
        '- Input: scikit-image astronaut photo resized to each size.',
        '',
        '| variant | what runs |',
        '|---|---|',
        *[f'| {v.name} | {v.about} |' for v in variants],
        '',
    ]
    return '\n'.join(head + [f'- Note: {n}' for n in notes] + ([''] if notes else []) +
                     [markdown_table(rows, device), ''])


# ---------------------------------------------------------------- command line

def _cpu_supports(precision: str) -> bool:
    """Whether oneDNN has native convolutions in `precision` on this CPU."""
    try:
        return bool(getattr(torch.ops.mkldnn, f'_is_mkldnn_{precision}_supported')())
    except (AttributeError, RuntimeError):
        return False


def default_variants(device: torch.device) -> Tuple[List[Variant], List[str]]:
    """All variants on CUDA; on CPU the reduced precisions only where the CPU runs them natively."""
    if device.type == 'cuda':
        return list(VARIANTS), []
    native = {'fp32': True, 'bf16': _cpu_supports('bf16'), 'fp16': _cpu_supports('fp16')}
    skipped = sorted({v.precision for v in VARIANTS if not native[v.precision]})
    notes = []
    if skipped:
        notes.append(f'{" and ".join(skipped)} rows skipped: this CPU has no native '
                     f'{"/".join(skipped)} convolutions (AVX512-BF16/AVX512-FP16/AMX), and autocast falls back '
                     'to a reference convolution tens of times slower than fp32; pass --variants to run them anyway')
    return [v for v in VARIANTS if native[v.precision]], notes


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--device', default='auto', help="'auto' (CUDA if available), 'cuda', 'cuda:1' or 'cpu'")
    p.add_argument('--tasks', nargs='+', default=list(PRESETS), type=parse_task,
                   help='presets to time: Deblurring Deraining Denoising')
    p.add_argument('--sizes', nargs='+', type=parse_size, default=None,
                   help='image sizes WIDTHxHEIGHT; every task runs at every size. Default: on CUDA '
                        'Deblurring 1280x720, Deraining 480x320, Denoising 256x256; on CPU 256x256 for each')
    p.add_argument('--variants', nargs='+', choices=list(VARIANT_BY_NAME), default=None,
                   help='rows to run (default: all on CUDA; on CPU those the CPU runs natively)')
    p.add_argument('--batch', type=int, default=1, help='images per call')
    p.add_argument('--warmup', type=int, default=None,
                   help='untimed calls before timing, at least 1 (default: 10 on CUDA, 1 on CPU)')
    p.add_argument('--repeats', type=int, default=None,
                   help='timed calls; the median is reported (default: 30 on CUDA, 3 on CPU)')
    p.add_argument('--threads', type=int, default=None,
                   help='CPU threads for PyTorch (torch.set_num_threads); default: PyTorch\'s choice')
    p.add_argument('--weights', default=None,
                   help='folder with the official model_deblurring.pth / model_deraining.pth / '
                        'model_denoising.pth; default: seeded random weights')
    p.add_argument('--seed', type=int, default=0, help='seed of the random weights')
    p.add_argument('--out', default=None, help='write the report (markdown) to this file as well')
    args = p.parse_args(argv)
    require_positive(p, args, ('batch', 'warmup', 'repeats', 'threads'))
    return args


def main(argv=None) -> List[Row]:
    args = parse_args(argv)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    on_cuda = device.type == 'cuda'
    args.warmup = args.warmup or (10 if on_cuda else 1)
    args.repeats = args.repeats or (30 if on_cuda else 3)
    if args.variants:
        variants, notes = [VARIANT_BY_NAME[n] for n in args.variants], []
    else:
        variants, notes = default_variants(device)
    if 'published' not in {v.name for v in variants}:
        notes.append('the published row was not run, so there is no speed-up column baseline')

    cases = [(task, size) for task in args.tasks
             for size in (args.sizes or [CUDA_SIZES[task] if on_cuda else CPU_SIZE])]
    rows, weights = [], {}
    calls_per_row = args.warmup + args.repeats
    with tqdm(total=len(cases) * len(variants) * calls_per_row, desc='benchmark', unit='call') as progress:
        for task, size in cases:
            model, weights[task] = make_model(task, args.weights, args.seed)
            x = natural_input(size, args.batch)
            progress.set_postfix_str(f'{task} {size[0]}x{size[1]} exact reference')
            reference = exact_reference(model, x, device)
            for variant in variants:
                progress.set_postfix_str(f'{task} {size[0]}x{size[1]} {variant.name}')
                row = Row(task, size, variant)
                run_variant(row, model, x, reference, device, args.warmup, args.repeats, progress)
                rows.append(row)
                _release_freed_memory()
                if on_cuda:
                    torch.cuda.empty_cache()

    text = report(rows, args, device, weights, notes)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        replaced = os.path.exists(args.out)
        with open(args.out, 'w') as f:
            f.write(text)
        print(f'{"replaced" if replaced else "wrote"} {args.out}', file=sys.stderr)
    print(text)
    return rows


if __name__ == '__main__':
    main()
