"""PSNR and SSIM of the SIDD validation results, with the numbers of the published evaluate_SIDD.m.

Loads Idenoised (single, in [0, 1]) from <result_dir>/mat/Idenoised.mat and
ValidationGtBlocksSrgb (uint8, converted like im2single) from <gt_dir>, scores
every 256x256x3 block with MATLAB's psnr and ssim for single images (L = 1,
the block a 3-D volume) and averages over all blocks.
Prints 'For SIDD dataset PSNR: <x> SSIM: <y>'.

    python evaluate_SIDD.py --workers 8
"""
import argparse
import os
import sys
from typing import Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.inference.cli import run_main  # noqa: E402
from utils.evaluation.scoring import report, score_matlab_float, score_pairs, worker_count  # noqa: E402
from utils.files.image_io import load_mat_array  # noqa: E402

GT_FILE, GT_KEY = 'ValidationGtBlocksSrgb.mat', 'ValidationGtBlocksSrgb'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='MATLAB-equivalent PSNR/SSIM of SIDD validation results')
    parser.add_argument('--result_dir', default='./results/SIDD/',
                        help='folder of test_SIDD.py results, reads <result_dir>/mat/Idenoised.mat '
                             '(default: %(default)s)')
    parser.add_argument('--gt_dir', default='./Datasets/SIDD/test/',
                        help=f'folder holding {GT_FILE} (default: %(default)s)')
    parser.add_argument('--workers', type=worker_count, default=os.cpu_count() or 1,
                        help='processes scoring blocks in parallel (default: all cores, %(default)s)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Tuple[float, float]:
    """Score every block; returns (mean PSNR, mean SSIM)."""
    args = parse_args(argv)
    result_path = os.path.join(args.result_dir, 'mat', 'Idenoised.mat')
    gt_path = os.path.join(args.gt_dir, GT_FILE)
    denoised = load_mat_array(result_path, 'Idenoised')
    target = load_mat_array(gt_path, GT_KEY)
    if not np.issubdtype(denoised.dtype, np.floating):
        raise ValueError(f'{result_path}: Idenoised is {denoised.dtype}; expected single or double in [0, 1]')
    if target.dtype != np.uint8:
        raise ValueError(f'{gt_path}: {GT_KEY} is {target.dtype}; expected uint8')
    if denoised.shape != target.shape or denoised.ndim != 5:
        raise ValueError(f'{result_path} holds {denoised.shape} but {gt_path} holds {target.shape}; '
                         'expected the same (images, blocks, H, W, 3)')
    # MATLAB compares the blocks as single: im2single(uint8) is single(x) / 255.
    target = target.astype(np.float32) / np.float32(255)
    denoised = denoised.astype(np.float32, copy=False)
    blocks = list(zip(denoised.reshape(-1, *denoised.shape[2:]), target.reshape(-1, *target.shape[2:])))
    return report('SIDD', score_pairs(score_matlab_float, blocks, args.workers, desc='SIDD'))


if __name__ == '__main__':
    sys.exit(run_main(main))
