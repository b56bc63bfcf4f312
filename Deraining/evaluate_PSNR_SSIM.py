"""PSNR and SSIM of the deraining results, with the numbers of the published evaluate_PSNR_SSIM.m.

Each <result_dir>/<name>/<image>.png is paired by name with
<gt_dir>/<name>/target/<image>.(png|jpg); both are converted to the Y channel
of MATLAB's rgb2ycbcr (uint8), then PSNR (peak 255) and the SSIM index of
Wang et al. (11x11 Gaussian window, sigma 1.5, 'valid') are averaged per set.
Prints 'For <name> dataset PSNR: <x> SSIM: <y>' per set and the mean over sets.

    python evaluate_PSNR_SSIM.py --workers 8
"""
import argparse
import math
import os
import sys
from typing import Dict, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.testing import pair_by_name, report, run_main, score_pairs, score_y_channel  # noqa: E402

DATASETS = ('Rain100L', 'Rain100H', 'Test100', 'Test1200', 'Test2800')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='MATLAB-equivalent Y-channel PSNR/SSIM for deraining results')
    parser.add_argument('--datasets', nargs='+', default=list(DATASETS),
                        help='test sets to score (default: %(default)s)')
    parser.add_argument('--result_dir', default='./results/',
                        help='root of the results, <result_dir>/<name>/*.png (default: %(default)s)')
    parser.add_argument('--gt_dir', default='./Datasets/test/',
                        help='root holding <name>/target (default: %(default)s)')
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1,
                        help='processes scoring images in parallel (default: all cores, %(default)s)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Tuple[float, float]]:
    """Score each test set with results; returns {name: (mean PSNR, mean SSIM)}."""
    args = parse_args(argv)
    scores = {}
    for name in args.datasets:
        result_dir = os.path.join(args.result_dir, name)
        if not os.path.isdir(result_dir):
            print(f'skipping {name}: no results in {result_dir}', file=sys.stderr, flush=True)
            continue
        pairs = pair_by_name(result_dir, os.path.join(args.gt_dir, name, 'target'))
        scores[name] = report(name, score_pairs(score_y_channel, pairs, args.workers, desc=name))
    if not scores:
        raise FileNotFoundError(f'no results for {", ".join(args.datasets)} under {args.result_dir}')
    mean_psnr = math.fsum(p for p, _ in scores.values()) / len(scores)
    mean_ssim = math.fsum(s for _, s in scores.values()) / len(scores)
    label = 'all datasets' if len(scores) == len(args.datasets) else f'the {len(scores)} datasets scored'
    print(f'For {label} PSNR: {mean_psnr:f} SSIM: {mean_ssim:f}')
    return scores


if __name__ == '__main__':
    run_main(main)
