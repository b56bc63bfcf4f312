"""PSNR and SSIM of GoPro / HIDE results, with the numbers MATLAB's evaluate_GOPRO_HIDE.m gives.

For each dataset, every <result_dir>/<dataset>/<name>.png is paired by name
with <gt_dir>/<dataset>/test/target/<name>.(png|jpg) and scored as MATLAB
does on uint8 RGB: psnr with peak 255 and ssim treating the H x W x 3 array
as a volume (Gaussian sigma 1.5 over rows, columns and channels, replicate
padding). Prints 'For <dataset> dataset PSNR: <x> SSIM: <y>' per dataset.

    python evaluate_GOPRO_HIDE.py --workers 8
"""
import argparse
import os
import sys
from typing import Dict, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.testing import pair_by_name, report, run_main, score_matlab_rgb, score_pairs  # noqa: E402

DATASETS = ('GoPro', 'HIDE')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='MATLAB-equivalent PSNR/SSIM for GoPro and HIDE results')
    parser.add_argument('--datasets', nargs='+', default=list(DATASETS), choices=DATASETS,
                        help='datasets to score (default: %(default)s)')
    parser.add_argument('--result_dir', default='./results/',
                        help='root of the results, <result_dir>/<dataset>/*.png (default: %(default)s)')
    parser.add_argument('--gt_dir', default='./Datasets/',
                        help='datasets root holding <dataset>/test/target (default: %(default)s)')
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1,
                        help='processes scoring images in parallel (default: all cores, %(default)s)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Tuple[float, float]]:
    """Score each dataset with results; returns {dataset: (mean PSNR, mean SSIM)}."""
    args = parse_args(argv)
    scores = {}
    for name in args.datasets:
        result_dir = os.path.join(args.result_dir, name)
        if not os.path.isdir(result_dir):
            print(f'skipping {name}: no results in {result_dir}', file=sys.stderr, flush=True)
            continue
        pairs = pair_by_name(result_dir, os.path.join(args.gt_dir, name, 'test', 'target'))
        scores[name] = report(name, score_pairs(score_matlab_rgb, pairs, args.workers, desc=name))
    if not scores:
        raise FileNotFoundError(f'no results for {", ".join(args.datasets)} under {args.result_dir}')
    return scores


if __name__ == '__main__':
    run_main(main)
