"""Training speed of MPRNet: images/s and peak memory per preset, for each speed switch of the engine.

Every row times ``Trainer.train_step`` of utils/training/trainer.py, the step that
training runs: forward, the task's published loss, backward, Adam, and the
loss read-back that checks for NaN. Batches are random tensors already on the
device, so data loading is not measured. Rows add one switch at a time:

    fp32 -> bf16 -> + channels_last -> + batch_patches -> + fused Adam -> + grad checkpointing

(and + torch.compile with --compile). A row that runs out of memory shows 'OOM'. On a CPU each row
also gives patches per CPU-second (the process's CPU time, all its threads): the figure that says
whether one process of two threads or two processes of one thread (``--processes 2``, every
process timing the same rows at the same moment, their patches/s summed) uses a machine better.

    python benchmarks/train_speed.py --out benchmarks/results/train_cuda.md         # GPU, published sizes
    python benchmarks/train_speed.py --device cpu --batch 2 --patch 32 --steps 2   # CPU smoke check
    python benchmarks/train_speed.py --device cpu --config pretrained_models/synthetic/training.yml \
        --tasks Deblurring --batch 8 --patch 64 128 192 --threads 2                 # the compact model
"""
import argparse
import datetime
import gc
import math
import multiprocessing
import os
import queue
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from torch.profiler import ProfilerActivity, profile
from tqdm import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from MPRNet import PRESETS  # noqa: E402
from utils.training.config import load_config  # noqa: E402
from utils.training.trainer import Trainer  # noqa: E402
from utils.inference.restorer import OutOfMemoryError  # noqa: E402
from utils.device import resolve_device  # noqa: E402
from benchmarks.common import (GIB, cpu_precision_description, device_description, fmt, print_report,  # noqa: E402
                               require_positive, timed_ms)
from utils.inference.cli import task_type  # noqa: E402
from utils.padding import MULTIPLE  # noqa: E402



@dataclass(frozen=True)
class Setting:
    """One row: a name and the OPTIM keys it sets."""
    name: str
    options: Dict[str, object] = field(default_factory=dict)


_BF16_CL = {'AMP': 'bf16', 'CHANNELS_LAST': True}
_BATCHED = {**_BF16_CL, 'BATCH_PATCHES': True}
_FUSED = {**_BATCHED, 'FUSED_ADAM': True}
SETTINGS = [
    Setting('fp32', {'AMP': 'off'}),
    Setting('bf16', {'AMP': 'bf16'}),
    Setting('bf16 + channels_last', _BF16_CL),
    Setting('+ batch_patches', _BATCHED),
    Setting('+ fused Adam', _FUSED),
    Setting('+ grad checkpointing', {**_FUSED, 'GRAD_CHECKPOINT': True}),
]
COMPILE_SETTING = Setting('+ fused Adam + torch.compile', {**_FUSED, 'COMPILE': True})
DEFAULT_CONFIG = "each task's training.yml"
SETTING_BY_NAME = {s.name: s for s in SETTINGS + [COMPILE_SETTING]}
# Every switch a row may set, off unless the row sets it: a config that turns some on (the compact
# one does) must not leak them into the fp32 row.
SWITCHES_OFF = {'AMP': 'off', 'CHANNELS_LAST': False, 'BATCH_PATCHES': False, 'FUSED_ADAM': False,
                'GRAD_CHECKPOINT': False, 'COMPILE': False}


@dataclass
class Row:
    task: str
    patch: int
    batch: int
    setting: Setting
    processes: int = 1
    step_ms: float = math.nan
    images_per_s: float = math.nan
    images_per_cpu_s: float = math.nan  # CPU only: images per second of the process's CPU time
    profile: List[Tuple[str, float]] = field(default_factory=list)  # --profile: (operator, % of a step)
    peak_gib: Optional[float] = None
    error: str = ''


def task_config(task: str, setting: Setting, batch: int, patch: int, config: Optional[str] = None):
    """`config` (default: the task's training.yml) for `task` with the row's OPTIM switches (the
    others off), batch and patch size."""
    opts = ['MODEL.MODE', task, 'OPTIM.BATCH_SIZE', batch, 'TRAINING.TRAIN_PS', patch]
    for key, value in {**SWITCHES_OFF, **setting.options}.items():
        opts += [f'OPTIM.{key}', value]
    return load_config(config or os.path.join(ROOT, task, 'training.yml'), [str(v) for v in opts])


PROFILE_OPERATORS = 8


def profile_step(step) -> List[Tuple[str, float]]:
    """The operators that take most of one call of step(), with their share (%) of its self CPU
    time, largest first (torch.profiler)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:PROFILE_OPERATORS]
    return [(e.key, 100.0 * e.self_cpu_time_total / total) for e in top]


def run_row(row: Row, device: torch.device, warmup: int, steps: int, repeats: int, progress: tqdm,
            config: Optional[str] = None, with_profile: bool = False) -> None:
    """Fill `row`: median ms per training step over `repeats` groups of `steps` steps, after warm-up
    (and, with_profile, where one more step's CPU time goes)."""
    cfg = task_config(row.task, row.setting, row.batch, row.patch, config)
    if device.type == 'cuda':
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    try:
        trainer = Trainer(cfg, device)
        target = torch.rand(row.batch, 3, row.patch, row.patch, device=device)
        input_ = (target + 0.1 * torch.randn_like(target)).clamp_(0, 1)
        trainer.start_epoch(cfg.OPTIM.WARMUP_EPOCHS + 1)  # the full learning rate

        def step_group():
            for i in range(steps):
                trainer.train_step(target, input_, epoch=1, step=i + 1)

        for i in range(warmup):
            trainer.train_step(target, input_, epoch=1, step=i + 1)
            progress.update()
        group_ms, group_cpu_s = [], []
        for _ in range(repeats):
            cpu = time.process_time()
            group_ms.append(timed_ms(step_group, device))
            group_cpu_s.append(time.process_time() - cpu)
            progress.update()
        if with_profile:
            row.profile = profile_step(lambda: trainer.train_step(target, input_, epoch=1, step=1))
    except OutOfMemoryError:
        row.error = 'OOM'
    finally:
        trainer = target = input_ = None  # noqa: F841 - free the row's memory before the next
        gc.collect()
    if device.type == 'cuda':
        row.peak_gib = torch.cuda.max_memory_allocated(device) / GIB
        torch.cuda.empty_cache()
    if row.error:
        return
    row.step_ms = statistics.median(group_ms) / steps
    row.images_per_s = row.batch / (row.step_ms / 1e3)
    if device.type == 'cpu':
        row.images_per_cpu_s = row.batch * steps / statistics.median(group_cpu_s)


def _worker(rows: List[Row], args: argparse.Namespace, barrier, results) -> None:
    """One of --processes: its own threads, every row started together with the other processes."""
    torch.set_num_threads(args.threads)  # main() made it 1 unless given
    device = torch.device('cpu')
    with tqdm(disable=True) as progress:
        for row in rows:
            barrier.wait()
            run_row(row, device, args.warmup, args.steps, args.repeats, progress, args.config, args.profile)
    results.put(rows)


def run_processes(rows: List[Row], args: argparse.Namespace) -> List[Row]:
    """`rows` timed by args.processes CPU processes at once: patches/s summed over the processes,
    ms per step and patches per CPU-second their mean (each process's own)."""
    context = multiprocessing.get_context('spawn')
    barrier, results = context.Barrier(args.processes), context.Queue()
    workers = [context.Process(target=_worker, args=(rows, args, barrier, results)) for _ in range(args.processes)]
    for w in workers:
        w.start()
    timed = []
    while len(timed) < len(workers):
        try:
            timed.append(results.get(timeout=1.0))
        except queue.Empty:
            failed = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
            if failed:  # the others would wait at the barrier for ever
                for w in workers:
                    w.terminate()
                raise SystemExit(f'error: a benchmark process ended with exit code {failed[0]}; '
                                 'run without --processes to see its error')
    for w in workers:
        w.join()
    combined = []
    for i, row in enumerate(rows):
        runs = [t[i] for t in timed]
        errors = sorted({r.error for r in runs if r.error})
        combined.append(Row(row.task, row.patch, row.batch, row.setting, processes=args.processes,
                            step_ms=statistics.mean(r.step_ms for r in runs),
                            images_per_s=sum(r.images_per_s for r in runs),
                            images_per_cpu_s=statistics.mean(r.images_per_cpu_s for r in runs),
                            profile=runs[0].profile,
                            error=', '.join(errors)))
    return combined


def markdown_table(rows: List[Row]) -> str:
    lines = ['| preset | patch | batch | setting | ms / step | images/s | images per CPU-s | speed-up vs fp32 '
             '| peak GiB |',
             '|---|---:|---:|---|---:|---:|---:|---:|---:|']
    fp32 = {(r.task, r.patch, r.batch): r.images_per_s for r in rows if r.setting.name == 'fp32'}
    for r in rows:
        head = f'| {r.task} | {r.patch} | {r.batch} | {r.setting.name} |'
        if r.error:
            lines.append(f'{head} {r.error} | {r.error} | - | - | {fmt(r.peak_gib, ".2f")} |')
            continue
        base = fp32.get((r.task, r.patch, r.batch), math.nan)
        speedup = r.images_per_s / base
        ratio = '-' if math.isnan(speedup) else f'{speedup:.2f}x'  # '-': no fp32 row to compare with
        lines.append(f'{head} {fmt(r.step_ms, ".1f")} | {fmt(r.images_per_s, ".2f")} | '
                     f'{fmt(r.images_per_cpu_s, ".2f")} | {ratio} | {fmt(r.peak_gib, ".2f")} |')
    profiles = [f'- {r.task} {r.patch} px, {r.setting.name}: '
                + ', '.join(f'{name} {share:.1f}%' for name, share in r.profile) for r in rows if r.profile]
    if profiles:
        lines += ['', 'Where one step\'s CPU time goes (torch.profiler, self time per operator, the largest '
                  f'{PROFILE_OPERATORS}):', '', *profiles]
    return '\n'.join(lines)


def default_settings(device: torch.device, with_compile: bool) -> Tuple[List[Setting], List[str]]:
    """Every row on CUDA; on a CPU without native bf16 convolutions only fp32 (bf16 falls back
    to reference kernels tens of times slower, which measures nothing useful)."""
    settings = SETTINGS + ([COMPILE_SETTING] if with_compile else [])
    if device.type == 'cuda' or torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return settings, []
    note = ('bf16 rows skipped: this CPU has no native bf16 convolutions (AVX512-BF16/AMX); '
            'pass --settings to run them anyway')
    return [s for s in settings if s.options.get('AMP') != 'bf16'], [note]


def report(rows: List[Row], args, device: torch.device, notes: List[str]) -> str:
    memory = ('torch.cuda.max_memory_allocated over the row (weights, Adam state, activations)'
              if device.type == 'cuda' else 'not measured on CPU')
    timing = 'CUDA events' if device.type == 'cuda' else 'perf_counter'
    if device.type == 'cuda':
        who = device_description(device)
    else:
        threads = args.threads or torch.get_num_threads()
        who = (f'{device_description(device, threads)}; {cpu_precision_description()}; '
               + (f'{args.processes} processes of {threads} thread(s) at once, images/s summed'
                  if args.processes > 1 else 'one process'))
    return '\n'.join([
        '# MPRNet training speed',
        '',
        f'- Device: {who}; PyTorch {torch.__version__}; '
        f'{datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")}',
        f'- Command: `python {shlex.join(sys.argv)}`',
        f'- Model: {args.config or DEFAULT_CONFIG}.',
        f'- One row: {args.warmup} warm-up steps, then {args.repeats} timed groups of {args.steps} steps '
        f'({timing}); the median group, per step.',
        '- Step: `Trainer.train_step` (forward, the task\'s published loss, backward, Adam, NaN check); random '
        'batches already on the device, no data loading. Random initialisation (seed 0).',
        f'- Peak memory: {memory}.',
        '- Rows are cumulative from "bf16 + channels_last" down: each adds one switch to the row above.',
        *[f'- Note: {n}' for n in notes],
        '',
        markdown_table(rows),
        '',
    ])


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--device', default='auto', help="'auto' (CUDA if available), 'cuda', 'cuda:1' or 'cpu'")
    p.add_argument('--tasks', nargs='+', type=task_type, default=list(PRESETS),
                   help='presets to time: Deblurring Deraining Denoising')
    p.add_argument('--config', default=None,
                   help="a training config for every task, e.g. pretrained_models/synthetic/training.yml "
                        "(the compact model); default: each task's training.yml")
    p.add_argument('--batch', type=int, default=16, help='training batch (the published 16)')
    p.add_argument('--patch', type=int, nargs='+', default=None,
                   help="square training patches, one row each; default: the config's TRAINING.TRAIN_PS "
                        "(256, 256, 128 for the presets)")
    p.add_argument('--warmup', type=int, default=None, help='untimed steps per row (default: 5 on CUDA, 1 on CPU)')
    p.add_argument('--steps', type=int, default=None, help='steps per timed group (default: 10 on CUDA, 2 on CPU)')
    p.add_argument('--repeats', type=int, default=None,
                   help='timed groups per row; the median is reported (default: 5 on CUDA, 2 on CPU)')
    p.add_argument('--compile', action='store_true', help='add a torch.compile row (slow to compile)')
    p.add_argument('--settings', nargs='+', choices=list(SETTING_BY_NAME), default=None, metavar='NAME',
                   help='rows to run, by name: ' + ', '.join(repr(n) for n in SETTING_BY_NAME)
                        + ' (default: all; on a CPU without native bf16, the fp32 row)')
    p.add_argument('--threads', type=int, default=None,
                   help="CPU threads for PyTorch, per process (default: its own choice; 1 with --processes)")
    p.add_argument('--processes', type=int, default=1,
                   help='CPU only: this many processes time every row at the same moment, images/s summed')
    p.add_argument('--profile', action='store_true',
                   help="CPU only: after each row's timing, profile one more step and list the operators "
                        'that take most of its CPU time')
    p.add_argument('--out', default=None, help='also write the markdown report to this file')
    args = p.parse_args(argv)
    require_positive(p, args, ('batch', 'warmup', 'steps', 'repeats', 'threads', 'processes'))
    for patch in args.patch or []:
        if patch < MULTIPLE or patch % MULTIPLE:
            p.error(f'--patch must be a positive multiple of {MULTIPLE} (MPRNet halves the image three times), '
                    f'got {patch}')
    if args.config and not os.path.isfile(args.config):
        p.error(f'--config {args.config}: no such file')
    return args


def main(argv=None) -> List[Row]:
    args = parse_args(argv)
    device = resolve_device(args.device)
    if args.processes > 1 and device.type != 'cpu':
        raise SystemExit('error: --processes is for the CPU (one GPU runs one process); pass --device cpu')
    if args.profile and device.type != 'cpu':
        raise SystemExit('error: --profile reads CPU time; on a GPU use torch.profiler with CUDA activities')
    if args.processes > 1:
        args.threads = args.threads or 1
    if args.threads:
        torch.set_num_threads(args.threads)
    on_cuda = device.type == 'cuda'
    args.warmup = args.warmup or (5 if on_cuda else 1)
    args.steps = args.steps or (10 if on_cuda else 2)
    args.repeats = args.repeats or (5 if on_cuda else 2)
    if on_cuda:
        torch.backends.cudnn.benchmark = True  # as in training: fixed sizes, autotuned kernels
    if args.settings:
        settings, notes = [SETTING_BY_NAME[n] for n in args.settings], []
    else:
        settings, notes = default_settings(device, args.compile)
    def patches(task):
        return args.patch or [load_config(args.config or os.path.join(ROOT, task, 'training.yml')).TRAINING.TRAIN_PS]

    rows = [Row(task, patch, args.batch, setting)
            for task in args.tasks for patch in patches(task) for setting in settings]
    if args.processes > 1:
        rows = run_processes(rows, args)
    else:
        with tqdm(total=len(rows) * (args.warmup + args.repeats), desc='benchmark', unit='step') as progress:
            for row in rows:
                progress.set_postfix_str(f'{row.task} {row.patch} {row.setting.name}')
                run_row(row, device, args.warmup, args.steps, args.repeats, progress, args.config, args.profile)
    text = report(rows, args, device, notes)
    print_report(text, args.out)
    return rows


if __name__ == '__main__':
    main()
