"""Judge the bundled compact models on held-out photos, degraded by the held-out generator.

For each task, every photo of --photos (scripts/prepare_photos.py's test/
split: never trained on, never used to pick an epoch) is shrunk to --max_side,
degraded by ``utils.data.degradations_heldout`` (not the training generator),
saved to 8 bits as a user's file would be, and restored by:

- the degraded input itself;
- classical baselines, each given an oracle's advantage (the true kernel or
  sigma, and its parameter tuned on these very photos):
  Denoising: OpenCV non-local means (h tuned) and CBM3D (the `bm3d` package,
  true sigma); Deblurring: Richardson-Lucy with the true kernel (iterations
  tuned); Deraining: a median filter (size tuned);
- the bundled model in exact fp32 and in the demo's default precision.

Scores are MATLAB-style PSNR and SSIM on 8-bit RGB (utils.evaluation.metrics), means
over the photos. Deblurring degrades every photo three times, once per blur
extent bucket (BLUR_BUCKETS: up to 9, 10-19 and 20-31 px, the extent drawn
within the bucket and the kernel family drawn from the held-out generator's
spline / defocus / linear, deterministic by photo name), and also reports
PSNR per bucket. Also timed: one 1280x720 photo in the demo's default mode.

    pip install bm3d            # for the CBM3D row (optional; skipped with a note if absent)
    python scripts/evaluate_synthetic.py --photos Datasets/photos/test Datasets/photos/test_source \
        --out pretrained_models/synthetic/EVALUATION.md

Several --photos folders are judged one after the other, each in its own
table (test/: the hash split of the training sources; test_source/: a whole
source never trained on).

A learning curve: ``--checkpoints`` judges training checkpoints of one task
(model_epoch_*.pth) instead of the bundled weights, the model in exact fp32
only, and tabulates PSNR against the CPU-hours each had cost (the
checkpoint's ``cpu_seconds``):

    python scripts/evaluate_synthetic.py --tasks Deblurring --limit 24 --max_side 384 \
        --photos Datasets/photos/test Datasets/photos/test_source \
        --checkpoints ~/runs/Deblurring/models/varied_ft128/model_epoch_*.pth
"""
import argparse
import importlib.util
import math
import os
import statistics
import sys
import time
import zlib
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from MPRNet import PRESETS  # noqa: E402
from utils.evaluation import metrics  # noqa: E402
from utils.allocator import keep_freed_memory  # noqa: E402
from utils.files.atomic import check_output_file, write_atomically  # noqa: E402
from utils.files.checkpoint import build_model, check_task, load_checkpoint_file  # noqa: E402
from utils.data import degradations as training_degradations  # noqa: E402
from utils.data.degradations_heldout import blur, extent_kernel, gaussian_noise, streak_rain  # noqa: E402
from utils.files.image_io import list_images, read_image, shrink_to_fit, to_uint8  # noqa: E402
from utils.inference.restorer import Restorer, choose_precision  # noqa: E402
from utils.files.weights import resolve_weights  # noqa: E402

NOISE_SIGMA = 25.0
NLM_H = (6, 9, 12, 15, 18, 21)
RL_ITERATIONS = (1, 2, 5, 10, 20, 40)
MEDIAN_SIZES = (3, 5, 7)
BLUR_BUCKETS = ((3, 9), (10, 19), (20, 31))  # blur extent ranges in px (support_extent), inclusive
Scores = List[Tuple[float, float]]


def degrade(clean: np.ndarray, task: str, rng: np.random.Generator,
            extent: Optional[int] = None, generator: str = 'heldout') -> Tuple[np.ndarray, dict]:
    """(8-bit-valued degraded float image, what a baseline may know: the kernel or sigma);
    Deblurring needs the blur `extent` in px. `generator` 'training' uses the training generator
    (utils/data/degradations.py) instead: a diagnostic on the training distribution, not a judgement."""
    if generator == 'training':
        if task == 'Deblurring':
            kernel = training_degradations.blur_kernel(rng, None, extent, 31)
            return to_uint8(training_degradations.motion_blur(clean, rng, kernel=kernel)) / 255.0, {'kernel': kernel}
        if task == 'Deraining':
            return to_uint8(training_degradations.add_rain(clean, rng)) / 255.0, {}
        return to_uint8(training_degradations.add_noise(clean, rng, NOISE_SIGMA)) / 255.0, {'sigma': NOISE_SIGMA}
    if task == 'Deblurring':
        kernel = extent_kernel(rng, extent)
        return to_uint8(blur(clean, rng, kernel=kernel)) / 255.0, {'kernel': kernel}
    if task == 'Deraining':
        return to_uint8(streak_rain(clean, rng)) / 255.0, {}
    return to_uint8(gaussian_noise(clean, rng, NOISE_SIGMA)) / 255.0, {'sigma': NOISE_SIGMA}


def cases(task: str, photos: List[Tuple[str, np.ndarray]], seed: int, generator: str = 'heldout'):
    """(name, clean, degraded, known, bucket label or None) for each degradation of each photo:
    one per photo, or for Deblurring one per blur bucket, each seeded by the photo's name."""
    for name, clean in photos:
        base = [seed, zlib.crc32(name.encode()), zlib.crc32(task.encode())]
        if task != 'Deblurring':
            yield (name, clean, *degrade(clean, task, np.random.default_rng(base), generator=generator), None)
            continue
        for index, (low, high) in enumerate(BLUR_BUCKETS):
            rng = np.random.default_rng(base + [index])
            extent = int(rng.integers(low, high + 1))
            yield (f'{name} (extent {extent})', clean, *degrade(clean, task, rng, extent, generator),
                   f'{low}-{high} px')


def score(result: np.ndarray, clean8: np.ndarray) -> Tuple[float, float]:
    result8 = to_uint8(result)
    return metrics.psnr(result8, clean8), metrics.ssim(result8, clean8)


def nlm(img: np.ndarray, h: float) -> np.ndarray:
    return cv2.fastNlMeansDenoisingColored(to_uint8(img), None, h, h, 7, 21) / 255.0


def cbm3d(img: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d  # lazy: an optional baseline, not a dependency of the project
    return np.clip(bm3d.bm3d_rgb(img, sigma / 255.0), 0, 1)


def richardson_lucy(img: np.ndarray, kernel: np.ndarray, iterations: int) -> np.ndarray:
    from skimage.restoration import richardson_lucy as rl  # lazy: only this baseline loads skimage's restoration
    return np.stack([rl(img[:, :, c], kernel.astype(np.float64), num_iter=iterations, clip=True)
                     for c in range(3)], axis=-1)


def median(img: np.ndarray, size: int) -> np.ndarray:
    return cv2.medianBlur(to_uint8(img), size) / 255.0


def baselines(task: str, have_bm3d: bool) -> Dict[str, Tuple[Sequence, Callable]]:
    """{row name: (parameter grid, fn(degraded, known, parameter) -> restored)}."""
    if task == 'Denoising':
        rows = {'non-local means (OpenCV, h tuned)': (NLM_H, lambda x, k, h: nlm(x, h))}
        if have_bm3d:
            rows['CBM3D (true sigma)'] = ((None,), lambda x, k, _: cbm3d(x, k['sigma']))
        return rows
    if task == 'Deblurring':
        return {'Richardson-Lucy (true kernel, iterations tuned)':
                (RL_ITERATIONS, lambda x, k, n: richardson_lucy(x, k['kernel'], n))}
    return {'median filter (size tuned)': (MEDIAN_SIZES, lambda x, k, s: median(x, s))}


def mean_scores(scores: Scores) -> Tuple[float, float]:
    return statistics.fmean(s[0] for s in scores), statistics.fmean(s[1] for s in scores)


def restore(restorer: Restorer, img: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))[None]
    return restorer(x)[0].permute(1, 2, 0).numpy()


def time_photo(restorer: Restorer, photo: np.ndarray, repeats: int) -> float:
    """Median seconds to restore `photo` resized to 1280x720, after one warm-up call."""
    img = cv2.resize(photo, (1280, 720), interpolation=cv2.INTER_AREA)
    restore(restorer, img)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        restore(restorer, img)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def evaluate_task(task: str, photos: List[Tuple[str, np.ndarray]], weights: str, seed: int,
                  have_bm3d: bool, time_repeats: int) -> dict:
    device = torch.device('cpu')
    model = build_model(task, weights)
    exact = Restorer(model, device)
    precision, fast, mode = choose_precision('auto', False, device)
    default = Restorer(build_model(task, weights), device, precision=precision, fast=fast)
    rows: Dict[str, Scores] = {'degraded input': []}
    grids = baselines(task, have_bm3d)
    tuned: Dict[str, Dict] = {name: {p: [] for p in grid} for name, (grid, _) in grids.items()}
    rows['bundled model, fp32 exact'] = []
    rows[f'bundled model, demo default ({mode})'] = []
    agreement, buckets = [], []
    for name, clean, degraded, known, bucket in cases(task, photos, seed):
        buckets.append(bucket)
        clean8 = to_uint8(clean)
        rows['degraded input'].append(score(degraded, clean8))
        for row, (grid, fn) in grids.items():
            for parameter in grid:
                tuned[row][parameter].append(score(fn(degraded, known, parameter), clean8))
        out_exact, out_default = restore(exact, degraded), restore(default, degraded)
        rows['bundled model, fp32 exact'].append(score(out_exact, clean8))
        rows[f'bundled model, demo default ({mode})'].append(score(out_default, clean8))
        mse = float(np.mean((out_exact.astype(np.float64) - out_default) ** 2))
        agreement.append(10 * math.log10(1 / mse) if mse > 0 else math.inf)
        print(f'  {task} {name}: input {rows["degraded input"][-1][0]:.2f} dB, model '
              f'{rows["bundled model, fp32 exact"][-1][0]:.2f} dB', flush=True)
    for row, by_parameter in tuned.items():
        best = max(by_parameter, key=lambda p: mean_scores(by_parameter[p])[0])
        label = row if best is None else f'{row}: {best}'
        rows[label] = by_parameter[best]
    order = ['degraded input'] + [r for r in rows if r not in ('degraded input', 'bundled model, fp32 exact')
                                  and not r.startswith('bundled')] + \
            ['bundled model, fp32 exact', f'bundled model, demo default ({mode})']
    seconds = time_photo(default, photos[0][1], time_repeats) if time_repeats else None
    # PSNR means per blur bucket, each baseline at the parameter tuned over all buckets.
    by_bucket = [(label, buckets.count(label),
                  [statistics.fmean(p for (p, _), b in zip(rows[r], buckets) if b == label) for r in order])
                 for label in dict.fromkeys(b for b in buckets if b is not None)]
    return {'rows': [(r, *mean_scores(rows[r])) for r in order], 'mode': mode,
            'default_vs_fp32_db': min(agreement), 'seconds_720p': seconds,
            'bucket_rows': order, 'buckets': by_bucket}


def markdown(results: Dict[Tuple[str, str], dict], counts: Dict[str, int], max_side: int, seed: int,
             weights: Dict[str, str], command: str) -> str:
    """The tables of every (folder, task) in `results`, one section per folder."""
    lines = ['# Bundled compact models on held-out photos', '',
             f'Photos never trained on, longest side {max_side} px (Deblurring: each at {len(BLUR_BUCKETS)} blur '
             f'extents), degraded by `utils/data/degradations_heldout.py` (seed {seed}); MATLAB-style PSNR (dB) / SSIM '
             'on 8-bit RGB, means over the photos. Baselines get an oracle\'s help: the true kernel or sigma, and '
             'the parameter after the colon tuned on these same photos.', '', f'Command: `{command}`', '']
    for (folder, task), result in results.items():
        lines += [f'## {task} on {folder} ({counts[folder]} photos)', '', f'Weights: `{weights[task]}`', '',
                  '| method | PSNR | SSIM |', '|---|---:|---:|']
        lines += [f'| {row} | {p:.2f} | {s:.4f} |' for row, p, s in result['rows']]
        if result['buckets']:
            lines += ['', 'PSNR (dB) by blur extent (side of the box of kernel pixels >= 1% of the peak; one '
                      'draw per photo and bucket, the rows above are the means over all of them):', '',
                      '| extent | draws | ' + ' | '.join(result['bucket_rows']) + ' |',
                      '|---|---:|' + '---:|' * len(result['bucket_rows'])]
            lines += [f'| {label} | {count} | ' + ' | '.join(f'{p:.2f}' for p in psnrs) + ' |'
                      for label, count, psnrs in result['buckets']]
        extra = f'Demo default ({result["mode"]}) against fp32 exact: at least {result["default_vs_fp32_db"]:.1f} ' \
                'dB PSNR on every photo.'
        if result['seconds_720p'] is not None:
            extra += f' One 1280x720 photo in the demo default: {result["seconds_720p"]:.2f} s on this CPU.'
        lines += ['', extra, '']
    return '\n'.join(lines)


def checkpoint_cpu_hours(path: str) -> Tuple[int, Optional[float]]:
    """(epoch, CPU-hours of training so far) recorded in a training checkpoint (None if not recorded)."""
    ckpt = load_checkpoint_file(path)
    seconds = ckpt.get('cpu_seconds') if isinstance(ckpt, dict) else None
    epoch = ckpt.get('epoch', -1) if isinstance(ckpt, dict) else -1
    return int(epoch), (None if seconds is None else float(seconds) / 3600)


def learning_curve(task: str, folders: Dict[str, List[Tuple[str, np.ndarray]]], checkpoints: Sequence[str],
                   seed: int, generator: str = 'heldout') -> List[str]:
    """Markdown table: per checkpoint (in training order), the fp32 model's mean PSNR on each photo
    folder (and, for Deblurring, per blur bucket on all folders together), the degraded input first."""
    device = torch.device('cpu')
    prepared = {folder: list(cases(task, photos, seed, generator)) for folder, photos in folders.items()}
    labels = [label for label in dict.fromkeys(c[4] for cs in prepared.values() for c in cs) if label is not None]
    header = ['checkpoint', 'epoch', 'CPU-h'] + [f'{folder} PSNR' for folder in folders] + \
        [f'extent {label}' for label in labels]
    table = ['| ' + ' | '.join(header) + ' |', '|---|' + '---:|' * (len(header) - 1)]

    def row(name: str, epoch: str, hours: str, fn: Callable[[np.ndarray], np.ndarray]) -> str:
        scores = {folder: [(score(fn(c[2]), to_uint8(c[1]))[0], c[4]) for c in cs] for folder, cs in prepared.items()}
        everything = [s for folder_scores in scores.values() for s in folder_scores]
        cells = [f'{statistics.fmean(p for p, _ in scores[f]):.2f}' for f in folders]
        cells += [f'{statistics.fmean(p for p, b in everything if b == label):.2f}' for label in labels]
        print(f'  {name}: ' + ', '.join(cells), flush=True)
        return f'| {name} | {epoch} | {hours} | ' + ' | '.join(cells) + ' |'

    table.append(row('degraded input', '-', '-', lambda x: x))
    # Training order: weights that record no CPU time (a bundled or published file a run started
    # from) first, then by CPU-hours, then by epoch. Each file's record is read once.
    records = [(path, *checkpoint_cpu_hours(path)) for path in checkpoints]
    records.sort(key=lambda record: (record[2] is not None, record[2] or 0.0, record[1]))
    for path, epoch, hours in records:
        restorer = Restorer(build_model(task, path), device)
        table.append(row(os.path.basename(path), str(epoch), '-' if hours is None else f'{hours:.2f}',
                         lambda x: restore(restorer, x)))
    return table


def evenly_spaced(paths: List[str], limit: Optional[int]) -> List[str]:
    """At most `limit` of `paths`, spread evenly over the sorted list (all of them if None)."""
    if limit is None or len(paths) <= limit:
        return paths
    return [paths[round(i * (len(paths) - 1) / (limit - 1))] if limit > 1 else paths[0] for i in range(limit)]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--photos', nargs='+', default=['Datasets/photos/test'],
                   help='folders of clean held-out photos (scripts/prepare_photos.py writes test/ and '
                        'test_source/), each judged in its own table (default: %(default)s)')
    p.add_argument('--limit', type=int, default=None,
                   help='judge at most this many photos of each folder, evenly spread by name (default: all)')
    p.add_argument('--generator', choices=('heldout', 'training'), default='heldout',
                   help='degrade with the held-out generator (judging) or, with --checkpoints, the training '
                        'one (a diagnostic on the training distribution, e.g. on the val/ photos) '
                        '(default: %(default)s)')
    p.add_argument('--checkpoints', nargs='+', default=None,
                   help='learning curve: judge these training checkpoints of the one task in --tasks '
                        '(fp32, no baselines) against the CPU-hours each had cost')
    p.add_argument('--tasks', nargs='+', default=list(PRESETS), choices=list(PRESETS), help='tasks to judge')
    p.add_argument('--weights', default='bundled',
                   help="bundled (default), official, or auto: which weights of each task to judge")
    p.add_argument('--max_side', type=int, default=512, help='shrink photos to this longest side (default: %(default)s)')
    p.add_argument('--seed', type=int, default=0, help='seed of the held-out degradations (default: %(default)s)')
    p.add_argument('--time_repeats', type=int, default=3,
                   help='timed calls on a 1280x720 photo per task; 0 skips timing (default: %(default)s)')
    p.add_argument('--threads', type=int, default=None, help='torch threads (default: all cores)')
    p.add_argument('--out', default=None, help='also write the tables as markdown to this file (never a '
                   'checkpoint or photo it judges)')
    p.add_argument('--overwrite', action='store_true', help='replace an existing --out file')
    return p.parse_args(argv)


def folder_labels(folders: Sequence[str]) -> List[str]:
    """The table name of each --photos folder: its last component (test, test_source), or the
    path as given where two folders share one (a/test and b/test); ValueError for a folder
    given twice."""
    real = [os.path.realpath(f) for f in folders]
    for i, r in enumerate(real):
        if r in real[:i]:
            raise ValueError(f'--photos names {folders[real.index(r)]} twice (as {folders[i]}); give each folder once')
    names = [os.path.basename(os.path.normpath(f)) for f in folders]
    return [n if names.count(n) == 1 else os.path.normpath(f) for n, f in zip(names, folders)]


def check_options(args: argparse.Namespace) -> None:
    """ValueError naming the option, for values that would fail (or be ignored) after the work."""
    for name, low in (('limit', 1), ('max_side', 8), ('threads', 1), ('time_repeats', 0)):
        value = getattr(args, name)
        if value is not None and value < low:
            raise ValueError(f'--{name} must be at least {low}, got {value}')
    if args.generator == 'training' and not args.checkpoints:
        raise ValueError('--generator training is a diagnostic for --checkpoints; judging uses the held-out one')
    if args.checkpoints and len(args.tasks) != 1:
        raise ValueError("--checkpoints needs exactly one task in --tasks (the checkpoints' task)")


def main(argv=None) -> int:  # 0 when done, 2 (one line) for what stops it before any work
    args = parse_args(argv)
    try:
        folders, weights = prepare(args)
    except (OSError, ValueError, RuntimeError) as err:  # options, photos, weights, --out: before the work
        print(f'error: {err}', file=sys.stderr)
        return 2
    return judge(args, folders, weights, argv)


def prepare(args: argparse.Namespace) -> Tuple[Dict[str, List[Tuple[str, np.ndarray]]], Dict[str, str]]:
    """Everything checked before the work: options, the weights or checkpoints (readable, of the
    task), --out (atomic.check_output_file), and the photos read; returns (photos by table name,
    weights by task)."""
    check_options(args)
    keep_freed_memory()
    weights = {} if args.checkpoints else {t: os.path.relpath(resolve_weights(t, args.weights)[0]) for t in args.tasks}
    for path in args.checkpoints or []:
        check_task(load_checkpoint_file(path), args.tasks[0], path, hint='Judge it with --tasks {trained_for}')
    paths = {label: evenly_spaced(list_images(folder) if os.path.isdir(folder) else [], args.limit)
             for label, folder in zip(folder_labels(args.photos), args.photos)}
    for (label, found), folder in zip(paths.items(), args.photos):
        if not found:
            raise FileNotFoundError(f'no photos in {folder}; run scripts/prepare_photos.py first')
    if args.out:
        judged = [('a judged checkpoint', w) for w in list(weights.values()) + (args.checkpoints or [])]
        check_output_file(args.out, '--out', args.overwrite,
                          judged + [('a judged photo', p) for ps in paths.values() for p in ps])
    if args.threads:
        torch.set_num_threads(args.threads)
    return {label: [(os.path.splitext(os.path.basename(p))[0], shrink_to_fit(read_image(p)[0], args.max_side))
                    for p in ps] for label, ps in paths.items()}, weights


def judge(args: argparse.Namespace, folders: Dict[str, List[Tuple[str, np.ndarray]]], weights: Dict[str, str],
          argv) -> int:
    """The tables (or the learning curve), printed and written to --out."""
    command = 'python scripts/evaluate_synthetic.py ' + ' '.join(sys.argv[1:] if argv is None else argv)
    if args.checkpoints:
        task = args.tasks[0]
        table = learning_curve(task, folders, args.checkpoints, args.seed, args.generator)
        title = f'# Learning curve: {task}' + (' (training generator: the training distribution)'
                                               if args.generator == 'training' else '')
        text = '\n'.join([title, '', f'Command: `{command}`', ''] + table + [''])
    else:
        have_bm3d = importlib.util.find_spec('bm3d') is not None
        if not have_bm3d:
            print('note: the bm3d package is not installed, so there is no CBM3D row (pip install bm3d)',
                  file=sys.stderr)
        results = {}
        for folder, photos in folders.items():
            for task in args.tasks:
                print(f'{task} on {folder}: {len(photos)} photos, weights {weights[task]}', flush=True)
                results[folder, task] = evaluate_task(task, photos, weights[task], args.seed, have_bm3d,
                                                      args.time_repeats)
        text = markdown(results, {f: len(p) for f, p in folders.items()}, args.max_side, args.seed, weights, command)
    print(text)
    if args.out:
        write_atomically(args.out, lambda f: f.write(text.encode()), replace=args.overwrite)
    return 0


if __name__ == '__main__':
    sys.exit(main())
