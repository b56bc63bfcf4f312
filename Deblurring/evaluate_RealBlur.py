"""PSNR and SSIM of RealBlur-J / RealBlur-R results, as the published evaluate_RealBlur.py computes them.

Each <result_dir>/<dataset>/<name>.png is paired by name with
<gt_dir>/<dataset>/test/target/<name>.(png|jpg). The result is scaled to the
target's intensity, aligned to it with an ECC homography, and scored on the
pixels the alignment maps: masked PSNR (peak 1) and a masked Gaussian SSIM
per channel (5-pixel border excluded). Prints 'For <dataset> dataset PSNR: <x> SSIM: <y>'.
--datasets takes any other dataset folder in the same layout too.

    python evaluate_RealBlur.py --workers 8
"""
import os
import sys
from typing import Dict, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.inference.cli import run_main  # noqa: E402
from utils.evaluation.scoring import evaluate_folders, score_realblur  # noqa: E402

DATASETS = ('RealBlur_J', 'RealBlur_R')


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Tuple[float, float]]:
    """Score each dataset with results; returns {dataset: (mean PSNR, mean SSIM)}."""
    return evaluate_folders(argv, 'Aligned, masked PSNR/SSIM for RealBlur results', DATASETS, score_realblur)


if __name__ == '__main__':
    sys.exit(run_main(main))
