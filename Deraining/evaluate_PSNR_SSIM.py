"""PSNR and SSIM of the deraining results, with the numbers of the published evaluate_PSNR_SSIM.m.

Each <result_dir>/<name>/<image>.png is paired by name with
<gt_dir>/<name>/target/<image>.(png|jpg); both are converted to the Y channel
of MATLAB's rgb2ycbcr (uint8), then PSNR (peak 255) and the SSIM index of
Wang et al. (11x11 Gaussian window, sigma 1.5, 'valid') are averaged per set.
Prints 'For <name> dataset PSNR: <x> SSIM: <y>' per set and the mean over sets.

    python evaluate_PSNR_SSIM.py --workers 8
"""
import math
import os
import sys
from typing import Dict, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.inference.cli import run_main  # noqa: E402
from utils.evaluation.scoring import evaluate_datasets, evaluation_arguments, score_y_channel  # noqa: E402

DATASETS = ('Rain100L', 'Rain100H', 'Test100', 'Test1200', 'Test2800')


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Tuple[float, float]]:
    """Score each test set with results; returns {name: (mean PSNR, mean SSIM)}."""
    parser = evaluation_arguments('MATLAB-equivalent Y-channel PSNR/SSIM for deraining results', DATASETS,
                                  gt_default='./Datasets/test/', gt_layout='<name>/target', restrict=False)
    args = parser.parse_args(argv)
    scores = evaluate_datasets(args, score_y_channel, lambda name: os.path.join(args.gt_dir, name, 'target'))
    mean_psnr = math.fsum(p for p, _ in scores.values()) / len(scores)
    mean_ssim = math.fsum(s for _, s in scores.values()) / len(scores)
    label = 'all datasets' if len(scores) == len(args.datasets) else f'the {len(scores)} datasets scored'
    print(f'For {label} PSNR: {mean_psnr:f} SSIM: {mean_ssim:f}')
    return scores


if __name__ == '__main__':
    sys.exit(run_main(main))
