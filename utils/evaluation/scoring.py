"""Scoring restored images against their targets: what the evaluation scripts share.

Results are paired with targets by file name (without extension), read
exactly as MATLAB's imread reads 8-bit files, scored in worker processes, and
summarised in the MATLAB scripts' result line. The per-pair scorers live here
(not in the scripts) so worker processes can import them under any start method.

Any two folders, from the repository root:

    python -m utils.evaluation.scoring --restored results/mine --target Datasets/mine/target [--y_channel]

scores with GoPro's semantics (MATLAB psnr and 3-D ssim on uint8 RGB) or, with
--y_channel, the deraining ones (the Y channel of rgb2ycbcr); exit 2 with one
message when the folders do not pair up (the names without a partner are listed).
"""
import argparse
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from utils.evaluation import metrics
from utils.files.image_io import list_images, read_image
from utils.data.image_pairs import pair_by_stem

__all__ = ['read_uint8_rgb', 'pair_by_name', 'score_pairs', 'worker_count', 'score_matlab_rgb', 'score_y_channel',
           'score_realblur', 'score_matlab_float', 'evaluation_arguments', 'evaluate_datasets', 'evaluate_folders',
           'score_folder', 'report', 'main']

Pair = Tuple[str, str]
LOSSY = ('.jpg', '.jpeg')


def read_uint8_rgb(path: str) -> np.ndarray:
    """An 8-bit image file as uint8 (H, W, 3) RGB, exactly as MATLAB's imread gives it."""
    img, bit_depth = read_image(path)
    if bit_depth != 8:
        raise ValueError(f'{path}: {bit_depth}-bit image; the evaluation compares 8-bit images')
    return np.round(img * 255.0).astype(np.uint8)  # read_image divided by 255: exact inverse


def pair_by_name(result_dir: str, gt_dir: str) -> List[Pair]:
    """(result, target) paths paired by file name without extension (utils.data.image_pairs.pair_by_stem),
    in natural order; unmatched names are an error. Lossy results against lossless targets are warned about."""
    if not os.path.isdir(result_dir) or not list_images(result_dir):
        raise FileNotFoundError(f'no result images in {result_dir}')
    pairs = pair_by_stem(result_dir, gt_dir, unmatched=('result(s) without target', 'target(s) without result'))
    lossy = [r for r, t in pairs if r.lower().endswith(LOSSY) and not t.lower().endswith(LOSSY)]
    if lossy:
        print(f'warning: {len(lossy)} result(s) in {result_dir} are JPEG (lossy) while their targets are not, '
              f'e.g. {os.path.basename(lossy[0])}: the scores include the JPEG loss; save results as PNG '
              '(the test scripts do)', file=sys.stderr, flush=True)
    return pairs


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


def worker_count(text: str) -> int:
    """argparse type of --workers: an integer of at least 1 (below, a run would fall back to one
    process without a word)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'must be a whole number, got {text!r}') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value


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
    parser.add_argument('--workers', type=worker_count, default=os.cpu_count() or 1,
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
        scores[name] = score_folder(result_dir, target_dir(name), score, args.workers, name)
    if not scores:
        raise FileNotFoundError(f'no results for {", ".join(args.datasets)} under {args.result_dir}')
    return scores


def evaluate_folders(argv: Optional[Sequence[str]], description: str, datasets: Sequence[str],
                     score: Callable[[Pair], Tuple[float, float]], target_layout: str = '<dataset>/test/target'
                     ) -> Dict[str, Tuple[float, float]]:
    """The whole of an evaluation script whose targets sit in <gt_dir>/<dataset>/test/target (GoPro,
    HIDE, RealBlur, or any other dataset folder in that layout): parse `argv`, score each dataset
    with results; {dataset: (PSNR, SSIM)}."""
    args = evaluation_arguments(description, datasets, gt_default='./Datasets/', gt_layout=target_layout,
                                restrict=False).parse_args(argv)
    return evaluate_datasets(args, score, lambda name: os.path.join(args.gt_dir, name, 'test', 'target'))


def score_folder(restored_dir: str, target_dir: str, score: Callable[[Pair], Tuple[float, float]],
                 workers: int = 1, name: Optional[str] = None) -> Tuple[float, float]:
    """The one evaluator: pair the folders by name, score every pair, print the MATLAB line for
    `name` (default: the restored folder's name); returns (mean PSNR, mean SSIM)."""
    if not os.path.isdir(target_dir):
        raise FileNotFoundError(f'target folder not found: {target_dir}')
    name = name or os.path.basename(os.path.normpath(restored_dir))
    return report(name, score_pairs(score, pair_by_name(restored_dir, target_dir), workers, desc=name))


def report(name: str, scores: Sequence[Tuple[float, float]]) -> Tuple[float, float]:
    """Print 'For <name> dataset PSNR: <x> SSIM: <y>' (the MATLAB scripts' line); returns the means."""
    mean_psnr = math.fsum(s[0] for s in scores) / len(scores)
    mean_ssim = math.fsum(s[1] for s in scores) / len(scores)
    print(f'For {name} dataset PSNR: {mean_psnr:f} SSIM: {mean_ssim:f}', flush=True)
    return mean_psnr, mean_ssim


def main(argv: Optional[Sequence[str]] = None) -> int:
    """python -m utils.evaluation.scoring: score two folders; returns the exit code (0, or 2 when
    nothing could be scored)."""
    parser = argparse.ArgumentParser(prog='python -m utils.evaluation.scoring',
                                     description='PSNR and SSIM of every restored image against the target of the '
                                                 'same name, computed as the MATLAB evaluation scripts compute them')
    parser.add_argument('--restored', required=True, help='folder of restored images (8-bit)')
    parser.add_argument('--target', required=True, help='folder of ground-truth images with the same names')
    parser.add_argument('--y_channel', action='store_true',
                        help="score the Y channel of MATLAB's rgb2ycbcr (the deraining benchmarks) instead of "
                             'RGB with the 3-D ssim (GoPro, HIDE)')
    parser.add_argument('--workers', type=worker_count, default=os.cpu_count() or 1,
                        help='processes scoring images in parallel (default: all cores, %(default)s)')
    args = parser.parse_args(argv)
    # The scorers by their module's name, not this run's __main__: worker processes import them.
    from utils.evaluation import scoring
    try:
        score_folder(args.restored, args.target, scoring.score_y_channel if args.y_channel else scoring.score_matlab_rgb,
                     args.workers)
    except (OSError, ValueError, RuntimeError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
