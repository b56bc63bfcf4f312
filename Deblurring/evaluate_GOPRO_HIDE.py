"""PSNR and SSIM of GoPro / HIDE results, with the numbers MATLAB's evaluate_GOPRO_HIDE.m gives.

For each dataset, every <result_dir>/<dataset>/<name>.png is paired by name
with <gt_dir>/<dataset>/test/target/<name>.(png|jpg) and scored as MATLAB
does on uint8 RGB: psnr with peak 255 and ssim treating the H x W x 3 array
as a volume (Gaussian sigma 1.5 over rows, columns and channels, replicate
padding). Prints 'For <dataset> dataset PSNR: <x> SSIM: <y>' per dataset.
--datasets takes any other dataset folder in the same layout too.

    python evaluate_GOPRO_HIDE.py --workers 8
"""
import os
import sys
from typing import Dict, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.inference.cli import run_main  # noqa: E402
from utils.evaluation.scoring import evaluate_folders, score_matlab_rgb  # noqa: E402

DATASETS = ('GoPro', 'HIDE')


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Tuple[float, float]]:
    """Score each dataset with results; returns {dataset: (mean PSNR, mean SSIM)}."""
    return evaluate_folders(argv, 'MATLAB-equivalent PSNR/SSIM for GoPro and HIDE results', DATASETS, score_matlab_rgb)


if __name__ == '__main__':
    sys.exit(run_main(main))
