"""Denoise the SIDD validation blocks with MPRNet (the paper's SIDD numbers).

Reads <input_dir>/ValidationNoisyBlocksSrgb.mat (40 x 32 blocks of 256x256x3
uint8) and writes <result_dir>/mat/Idenoised.mat with the variable Idenoised:
single, same shape, in [0, 1], the file evaluate_SIDD.py (and the published
evaluate_SIDD.m) scores. --save_images also writes <result_dir>/png/iiii_kk.png.
Every file is written atomically: a failed write (a full disk) keeps the
previous result, never leaves half of one.

    python test_SIDD.py
"""
import argparse
import os
import sys
from typing import Optional, Sequence

import numpy as np
import scipy.io
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.files.atomic import write_atomically  # noqa: E402
from utils.inference.cli import (add_test_script_arguments, check_inference_arguments, load_restorer,  # noqa: E402
                                 refuse_existing, run_main)
from utils.inference.folder_restore import restore_batch  # noqa: E402
from utils.files.image_io import load_mat_array, write_image  # noqa: E402

TASK = 'Denoising'
NOISY_FILE, NOISY_KEY = 'ValidationNoisyBlocksSrgb.mat', 'ValidationNoisyBlocksSrgb'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Image denoising with MPRNet: SIDD validation blocks')
    parser.add_argument('--save_images', action='store_true',
                        help='also write every denoised block as <result_dir>/png/<image>_<block>.png')
    add_test_script_arguments(parser, TASK, ('./Datasets/SIDD/test/', f'folder holding {NOISY_FILE}'),
                              ('./results/SIDD/', 'writes <result_dir>/mat/Idenoised.mat'), skippable=False)
    return parser.parse_args(argv)


def load_noisy_blocks(path: str) -> np.ndarray:
    """The uint8 (images, blocks, H, W, 3) array of ValidationNoisyBlocksSrgb.mat."""
    blocks = load_mat_array(path, NOISY_KEY)
    if blocks.ndim != 5 or blocks.shape[-1] != 3 or blocks.dtype != np.uint8:
        raise ValueError(f'{path}: expected {NOISY_KEY} as uint8 (images, blocks, H, W, 3), '
                         f'got {blocks.dtype} {blocks.shape}')
    return blocks


def main(argv: Optional[Sequence[str]] = None) -> str:
    """Denoise every block; returns the path of Idenoised.mat."""
    args = parse_args(argv)
    noisy_path = os.path.join(args.input_dir, NOISY_FILE)
    if not os.path.isfile(noisy_path):
        raise FileNotFoundError(f'{noisy_path} not found (SIDD validation data; see Datasets/README.md)')
    mat_path = os.path.join(args.result_dir, 'mat', 'Idenoised.mat')
    refuse_existing([mat_path], args.overwrite, skippable=False)
    restorer, info = load_restorer(TASK, check_inference_arguments(args))
    print(f'===> Testing {info}', flush=True)
    noisy = load_noisy_blocks(noisy_path)
    n_images, n_blocks = noisy.shape[:2]
    png_names = [os.path.join(args.result_dir, 'png', f'{i + 1:04d}_{k + 1:02d}.png')
                 for i in range(n_images) for k in range(n_blocks)]
    if args.save_images:
        refuse_existing(png_names, args.overwrite, skippable=False)

    flat = noisy.reshape(-1, *noisy.shape[2:])
    denoised = np.empty(flat.shape, dtype=np.float32)
    for start in tqdm(range(0, len(flat), args.batch_size), desc='SIDD', unit='batch'):
        stop = min(start + args.batch_size, len(flat))
        denoised[start:stop] = restore_batch(restorer, flat[start:stop].astype(np.float32) / 255.0)
        if args.save_images:
            for j in range(start, stop):
                write_image(png_names[j], denoised[j], 8)

    write_atomically(mat_path, lambda f: scipy.io.savemat(f, {'Idenoised': denoised.reshape(noisy.shape)}))
    print(f'wrote {mat_path}')
    return mat_path


if __name__ == '__main__':
    sys.exit(run_main(main))
