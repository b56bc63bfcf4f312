"""What the benchmark test and evaluation scripts share.

Test scripts: common options (weights, device, batch size, precision),
loading the model with a clear message when the weights are missing,
restoring lists of images in same-size batches, refusing to overwrite results.
Evaluation scripts: pairing results with targets by file name, reading 8-bit
images exactly, scoring pairs in worker processes, printing the MATLAB-style
result line. The per-pair scorers live here (not in the scripts) so worker
processes can import them under any start method.
"""
import argparse
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from utils import metrics
from utils.checkpoint import OFFICIAL_WEIGHTS_URL, build_model
from utils.image_io import list_images, read_image, write_image
from utils.inference import PRECISIONS, Restorer, resolve_device

__all__ = ['default_weights_path', 'add_inference_arguments', 'load_restorer', 'check_free', 'same_size_batches',
           'restore_batch', 'restore_images', 'plan_folder', 'restore_folder', 'load_mat_array', 'read_uint8_rgb',
           'pair_by_name', 'score_pairs', 'score_matlab_rgb', 'score_y_channel', 'score_realblur',
           'score_matlab_float', 'evaluation_arguments', 'evaluate_datasets', 'report', 'run_main']

Pair = Tuple[str, str]
T = TypeVar('T')


# ---------------------------------------------------------------- test scripts


def default_weights_path(task: str) -> str:
    """The published default: ./pretrained_models/model_<task>.pth, relative to the task folder."""
    return os.path.join('.', 'pretrained_models', f'model_{task.lower()}.pth')


def add_inference_arguments(parser: argparse.ArgumentParser, task: str) -> None:
    """--weights, --device, --batch_size, --precision, --fast and --overwrite."""
    parser.add_argument('--weights', default=default_weights_path(task),
                        help=f'checkpoint to test: the released model_{task.lower()}.pth or one of ours '
                             '(default: %(default)s)')
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'],
                        help='where to run: auto = CUDA when available, else CPU (default: %(default)s)')
    parser.add_argument('--batch_size', type=int, default=1,
                        help='images per forward pass; only images of the same size share a batch '
                             '(default: %(default)s)')
    parser.add_argument('--precision', default='fp32', choices=list(PRECISIONS),
                        help='fp32 reproduces the published numbers; fp16/bf16 autocast is faster on GPUs '
                             '(default: %(default)s)')
    parser.add_argument('--fast', action='store_true',
                        help='channels-last, batched stage-1/2 patches, cuDNN autotuning (same function, '
                             'another order of operations)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace result files that already exist (otherwise the script stops)')


def load_restorer(task: str, args: argparse.Namespace) -> Restorer:
    """The model for `task` from args.weights, wrapped in a Restorer on args.device."""
    if args.batch_size < 1:
        raise ValueError(f'--batch_size must be at least 1, got {args.batch_size}')
    if not os.path.isfile(args.weights):
        raise FileNotFoundError(
            f'weights not found: {args.weights}\n'
            f'  put the official {task} model (model_{task.lower()}.pth) there, from {OFFICIAL_WEIGHTS_URL},\n'
            '  or point --weights at a checkpoint of yours')
    device = resolve_device(args.device)
    model = build_model(task, args.weights)
    print(f'===> Testing {task} with {args.weights} on {device} ({args.precision}'
          f'{", fast" if args.fast else ""})', flush=True)
    return Restorer(model, device, precision=args.precision, fast=args.fast)


def check_free(paths: Sequence[str], overwrite: bool) -> None:
    """Stop before any work when result files exist and --overwrite was not given."""
    existing = [p for p in paths if os.path.exists(p)]
    if existing and not overwrite:
        more = f' ... (+{len(existing) - 5} more)' if len(existing) > 5 else ''
        raise FileExistsError(f'{len(existing)} result file(s) already exist: ' + ', '.join(existing[:5]) + more +
                              '\n  pass --overwrite to replace them, or choose another --result_dir')


def same_size_batches(items: Iterable[T], batch_size: int, size_of: Callable[[T], tuple]) -> Iterator[List[T]]:
    """Lazily group consecutive items of equal size_of(item) into lists of at most batch_size."""
    batch: List[T] = []
    for item in items:
        if batch and (len(batch) == batch_size or size_of(batch[0]) != size_of(item)):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def restore_batch(restorer: Restorer, images: Sequence[np.ndarray]) -> np.ndarray:
    """Same-size float (H, W, 3) images in [0, 1] -> restored float32 (N, H, W, 3) in [0, 1]."""
    batch = torch.from_numpy(np.stack([np.asarray(img, dtype=np.float32) for img in images]))
    out = restorer(batch.permute(0, 3, 1, 2))
    return out.permute(0, 2, 3, 1).cpu().numpy()


def restore_images(restorer: Restorer, images: Sequence[np.ndarray], batch_size: int = 1) -> List[np.ndarray]:
    """Restore a list of (H, W, 3) images of any sizes, batching consecutive images of equal size."""
    restored: List[np.ndarray] = []
    for batch in same_size_batches(images, batch_size, lambda img: img.shape):
        restored.extend(restore_batch(restorer, batch))
    return restored


def _output_names(inputs: Sequence[str], output_dir: str) -> List[str]:
    """<output_dir>/<stem>.png per input; two inputs with one stem would write one file: an error."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in inputs]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise ValueError(f'several inputs share a name (results are <name>.png): {", ".join(clashes[:10])}')
    return [os.path.join(output_dir, s + '.png') for s in stems]


def plan_folder(input_dir: str, output_dir: str, overwrite: bool = False) -> List[Pair]:
    """(input, output) paths for every image in `input_dir`: output = `output_dir`/<name>.png.

    Checked before any work: the folder has images, no two share a name, and
    no result would overwrite a file unless `overwrite`.
    """
    inputs = list_images(input_dir)
    if not inputs:
        raise FileNotFoundError(f'no images in {input_dir}')
    outputs = _output_names(inputs, output_dir)
    check_free(outputs, overwrite)
    return list(zip(inputs, outputs))


def restore_folder(restorer: Restorer, plan: Sequence[Pair], batch_size: int = 1,
                   desc: Optional[str] = None) -> List[str]:
    """Restore each (input, output) of `plan` (from plan_folder) into an 8-bit PNG; returns the outputs.

    Images are read in order; consecutive images of the same size share a
    batch of up to `batch_size`. PNGs are encoded in background threads while
    the model runs.
    """
    images = ((out, read_image(path)[0]) for path, out in plan)  # read lazily, in order
    pending: list = []
    with ThreadPoolExecutor(max_workers=2) as writer, tqdm(total=len(plan), desc=desc, unit='img') as bar:
        for batch in same_size_batches(images, batch_size, lambda item: item[1].shape):
            restored = restore_batch(restorer, [img for _, img in batch])
            pending.extend(writer.submit(write_image, out, img, 8) for (out, _), img in zip(batch, restored))
            bar.update(len(batch))
            while len(pending) > 8:  # bound the memory held by images waiting to be written
                pending.pop(0).result()
        for future in pending:
            future.result()
    return [out for _, out in plan]


def load_mat_array(path: str, key: str) -> np.ndarray:
    """Array `key` of a MATLAB .mat file: v5 through scipy, v7.3 (HDF5) through h5py in MATLAB's axis order."""
    import h5py
    import scipy.io
    if not os.path.isfile(path):
        raise FileNotFoundError(f'file not found: {path}')
    if h5py.is_hdf5(path):  # MATLAB v7.3 stores arrays column-major: h5py sees the axes reversed
        with h5py.File(path, 'r') as f:
            if key not in f:
                raise ValueError(f'{path} has no variable {key!r} (it has: {", ".join(f.keys())})')
            return np.asarray(f[key]).T
    try:
        data = scipy.io.loadmat(path, variable_names=[key])
    except ValueError as err:
        raise ValueError(f'cannot read {path} as a .mat file: {err}') from err
    if key not in data:
        raise ValueError(f'{path} has no variable {key!r}')
    return data[key]


# ---------------------------------------------------------------- evaluation scripts


def read_uint8_rgb(path: str) -> np.ndarray:
    """An 8-bit image file as uint8 (H, W, 3) RGB, exactly as MATLAB's imread gives it."""
    img, bit_depth = read_image(path)
    if bit_depth != 8:
        raise ValueError(f'{path}: {bit_depth}-bit image; the evaluation compares 8-bit images')
    return np.round(img * 255.0).astype(np.uint8)  # read_image divided by 255: exact inverse


def _by_stem(paths: Sequence[str], folder: str) -> Dict[str, str]:
    stems: Dict[str, str] = {}
    for p in paths:
        stem = os.path.splitext(os.path.basename(p))[0]
        if stem in stems:
            raise ValueError(f'{folder}: two images named {stem!r}: {os.path.basename(stems[stem])} and '
                             f'{os.path.basename(p)}')
        stems[stem] = p
    return stems


def pair_by_name(result_dir: str, gt_dir: str) -> List[Pair]:
    """(result, target) paths paired by file name without extension; unmatched names are an error."""
    results, targets = _by_stem(list_images(result_dir), result_dir), _by_stem(list_images(gt_dir), gt_dir)
    if not results:
        raise FileNotFoundError(f'no result images in {result_dir}')
    only_res, only_gt = sorted(set(results) - set(targets)), sorted(set(targets) - set(results))
    if only_res or only_gt:
        lines = [f'results in {result_dir} and targets in {gt_dir} do not match by name:']
        for label, names in ((f'{len(only_res)} result(s) without target', only_res),
                             (f'{len(only_gt)} target(s) without result', only_gt)):
            if names:
                more = f' ... (+{len(names) - 10} more)' if len(names) > 10 else ''
                lines.append(f'  {label}: ' + ', '.join(names[:10]) + more)
        raise ValueError('\n'.join(lines))
    return [(results[s], targets[s]) for s in sorted(results)]


def score_pairs(score: Callable, items: Sequence, workers: int = 1, desc: Optional[str] = None) -> List[tuple]:
    """[score(item) for item in items] with a progress bar, in `workers` processes when > 1."""
    if workers <= 1 or len(items) <= 1:
        return [score(item) for item in tqdm(items, desc=desc, unit='img')]
    with ProcessPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(tqdm(pool.map(score, items, chunksize=1), total=len(items), desc=desc, unit='img'))


def _checked_pair(pair: Pair, reader: Callable) -> Tuple[np.ndarray, np.ndarray]:
    result, target = reader(pair[0]), reader(pair[1])
    if result.shape != target.shape:
        raise ValueError(f'{pair[0]} is {result.shape[1]}x{result.shape[0]} but its target {pair[1]} is '
                         f'{target.shape[1]}x{target.shape[0]}')
    return result, target


def score_matlab_rgb(pair: Pair) -> Tuple[float, float]:
    """GoPro/HIDE: MATLAB psnr and (3-D) ssim of two 8-bit RGB files."""
    result, target = _checked_pair(pair, read_uint8_rgb)
    return metrics.psnr(result, target), metrics.ssim(result, target)


def score_y_channel(pair: Pair) -> Tuple[float, float]:
    """Deraining: PSNR and SSIM_index on the Y channel of MATLAB's rgb2ycbcr."""
    return metrics.psnr_ssim_y(*_checked_pair(pair, read_uint8_rgb))


def score_realblur(pair: Pair) -> Tuple[float, float]:
    """RealBlur: ECC-aligned, masked PSNR and SSIM of two 8-bit files read as float32 in [0, 1]."""
    result, target = _checked_pair(pair, lambda p: (read_uint8_rgb(p).astype(np.float32) / 255.0))
    try:
        return metrics.realblur_psnr_ssim(result, target)
    except RuntimeError as err:
        raise RuntimeError(f'{pair[0]}: {err}') from err


def score_matlab_float(blocks: Tuple[np.ndarray, np.ndarray]) -> Tuple[float, float]:
    """SIDD: MATLAB psnr and (3-D) ssim of a float block in [0, 1] against its target (L = 1)."""
    result, target = blocks
    return metrics.psnr(result, target, 1.0), metrics.ssim(result, target, 1.0)


def evaluation_arguments(description: str, datasets: Sequence[str], gt_default: str,
                         gt_layout: str, restrict: bool = True) -> argparse.ArgumentParser:
    """The options every evaluation script shares: --datasets, --result_dir, --gt_dir, --workers."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--datasets', nargs='+', default=list(datasets), choices=list(datasets) if restrict else None,
                        help='datasets to score (default: %(default)s)')
    parser.add_argument('--result_dir', default='./results/',
                        help='root of the results, <result_dir>/<dataset>/*.png (default: %(default)s)')
    parser.add_argument('--gt_dir', default=gt_default,
                        help=f'root holding {gt_layout} (default: %(default)s)')
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1,
                        help='processes scoring images in parallel (default: all cores, %(default)s)')
    return parser


def evaluate_datasets(args: argparse.Namespace, score: Callable[[Pair], Tuple[float, float]],
                      target_dir: Callable[[str], str]) -> Dict[str, Tuple[float, float]]:
    """Score <result_dir>/<dataset> against target_dir(dataset) for each of args.datasets.

    A dataset without results is reported and skipped; none at all is an error.
    Returns {dataset: (mean PSNR, mean SSIM)} and prints the MATLAB-style line per dataset.
    """
    scores = {}
    for name in args.datasets:
        result_dir = os.path.join(args.result_dir, name)
        if not os.path.isdir(result_dir):
            print(f'skipping {name}: no results in {result_dir}', file=sys.stderr, flush=True)
            continue
        pairs = pair_by_name(result_dir, target_dir(name))
        scores[name] = report(name, score_pairs(score, pairs, args.workers, desc=name))
    if not scores:
        raise FileNotFoundError(f'no results for {", ".join(args.datasets)} under {args.result_dir}')
    return scores


def report(name: str, scores: Sequence[Tuple[float, float]]) -> Tuple[float, float]:
    """Print 'For <name> dataset PSNR: <x> SSIM: <y>' (the MATLAB scripts' line); returns the means."""
    mean_psnr = math.fsum(s[0] for s in scores) / len(scores)
    mean_ssim = math.fsum(s[1] for s in scores) / len(scores)
    print(f'For {name} dataset PSNR: {mean_psnr:f} SSIM: {mean_ssim:f}', flush=True)
    return mean_psnr, mean_ssim


def run_main(main: Callable[[Optional[Sequence[str]]], object]) -> None:
    """Run a script's main(); a problem with the user's files or options ends in one clear line, exit 1."""
    try:
        main(None)
    except (OSError, ValueError, RuntimeError) as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(1)
