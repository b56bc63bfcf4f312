"""Denoise the DND benchmark with MPRNet and write the submission files.

Reads <input_dir>/info.mat (HDF5: info/boundingboxes, one 4 x 20 box table per
image, 1-based inclusive [top, left, bottom, right]) and
<input_dir>/images_srgb/0001.mat ... (HDF5: InoisySRGB, single in [0, 1]).
Restores the 20 boxes of every image and writes the DND sRGB submission:
<result_dir>/mat/<nnnn>.mat with Idenoised (a cell of the 20 single crops),
israw = false and eval_version = '1.0', ready to upload. --save_crops also
writes the per-box files <nnnn>_<bb>.mat (Idenoised_crop) of the DND kit,
--save_images the crops as PNGs. Every file is written atomically: a failed
write (a full disk) keeps the previous file, never leaves half of one.

    python test_DND.py
"""
import argparse
import os
import sys
from typing import List, Optional, Sequence

import h5py
import numpy as np
import scipy.io
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.files.atomic import write_atomically  # noqa: E402
from utils.inference.cli import (add_test_script_arguments, check_inference_arguments, load_restorer,  # noqa: E402
                                 refuse_existing, run_main)
from utils.inference.folder_restore import restore_images  # noqa: E402
from utils.files.image_io import write_image  # noqa: E402

TASK = 'Denoising'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Image denoising with MPRNet: DND benchmark submission')
    parser.add_argument('--save_crops', action='store_true',
                        help="also write the DND kit's per-box files <result_dir>/crops/<nnnn>_<bb>.mat")
    parser.add_argument('--save_images', action='store_true',
                        help='also write every denoised box as <result_dir>/png/<nnnn>_<bb>.png')
    add_test_script_arguments(parser, TASK, ('./Datasets/DND/test/', 'folder holding info.mat and images_srgb/'),
                              ('./results/DND/', 'writes the submission to <result_dir>/mat/'), skippable=False)
    return parser.parse_args(argv)


def read_boxes(info_path: str) -> List[np.ndarray]:
    """Per image, an int (boxes, 4) array of 1-based inclusive [top, left, bottom, right]."""
    if not os.path.isfile(info_path):
        raise FileNotFoundError(f'{info_path} not found (DND benchmark data; see Datasets/README.md)')
    with h5py.File(info_path, 'r') as f:
        if 'info' not in f or 'boundingboxes' not in f['info']:
            raise ValueError(f'{info_path}: no info/boundingboxes; is this the DND info.mat?')
        refs = f['info']['boundingboxes']
        boxes = [np.asarray(f[ref]).T.astype(np.int64) for ref in np.asarray(refs).ravel()]
    for i, b in enumerate(boxes):
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f'{info_path}: boxes of image {i + 1} have shape {b.shape}, expected (n, 4)')
    return boxes


def read_noisy(path: str) -> np.ndarray:
    """float32 (H, W, 3) sRGB image of images_srgb/<nnnn>.mat (stored transposed by MATLAB)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path} not found (DND images_srgb)')
    with h5py.File(path, 'r') as f:
        if 'InoisySRGB' not in f:
            raise ValueError(f'{path}: no InoisySRGB variable')
        img = np.asarray(f['InoisySRGB'], dtype=np.float32).T
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'{path}: InoisySRGB has shape {img.shape}, expected (H, W, 3)')
    return img


def crop_boxes(img: np.ndarray, boxes: np.ndarray, name: str) -> List[np.ndarray]:
    """The boxes of one image as (h, w, 3) crops; a box outside the image is an error."""
    crops = []
    for k, (top, left, bottom, right) in enumerate(boxes):
        if not (1 <= top <= bottom <= img.shape[0] and 1 <= left <= right <= img.shape[1]):
            raise ValueError(f'{name}: box {k + 1} {[top, left, bottom, right]} lies outside the '
                             f'{img.shape[0]}x{img.shape[1]} image')
        crops.append(img[top - 1:bottom, left - 1:right])
    return crops


def save_mat(path: str, variables: dict) -> None:
    """scipy.io.savemat, atomically (utils.files.atomic): the file is whole or the previous one stays."""
    write_atomically(path, lambda f: scipy.io.savemat(f, variables))


def save_submission(path: str, crops: Sequence[np.ndarray]) -> None:
    """One image's DND sRGB submission file: Idenoised = 1 x n cell of single crops."""
    cell = np.empty(len(crops), dtype=object)
    for k, crop in enumerate(crops):
        cell[k] = crop.astype(np.float32)
    save_mat(path, {'Idenoised': cell, 'israw': False, 'eval_version': '1.0'})


def main(argv: Optional[Sequence[str]] = None) -> List[str]:
    """Denoise every box; returns the paths of the submission files."""
    args = parse_args(argv)
    boxes = read_boxes(os.path.join(args.input_dir, 'info.mat'))
    names = [f'{i + 1:04d}' for i in range(len(boxes))]
    mat_dir, crop_dir, png_dir = (os.path.join(args.result_dir, d) for d in ('mat', 'crops', 'png'))
    outputs = [os.path.join(mat_dir, f'{n}.mat') for n in names]
    per_box = [f'{n}_{k + 1:02d}' for n, b in zip(names, boxes) for k in range(len(b))]
    refuse_existing(outputs + [os.path.join(crop_dir, f'{s}.mat') for s in per_box if args.save_crops]
                    + [os.path.join(png_dir, f'{s}.png') for s in per_box if args.save_images], args.overwrite,
                    skippable=False)
    restorer, info = load_restorer(TASK, check_inference_arguments(args))
    print(f'===> Testing {info}', flush=True)
    os.makedirs(mat_dir, exist_ok=True)
    for name, image_boxes, out_path in zip(tqdm(names, desc='DND', unit='img'), boxes, outputs):
        noisy_path = os.path.join(args.input_dir, 'images_srgb', f'{name}.mat')
        crops = crop_boxes(read_noisy(noisy_path), image_boxes, noisy_path)
        denoised = restore_images(restorer, crops, args.batch_size)
        save_submission(out_path, denoised)
        for k, crop in enumerate(denoised):
            if args.save_crops:
                save_mat(os.path.join(crop_dir, f'{name}_{k + 1:02d}.mat'), {'Idenoised_crop': crop})
            if args.save_images:
                write_image(os.path.join(png_dir, f'{name}_{k + 1:02d}.png'), crop, 8)
    return outputs


if __name__ == '__main__':
    sys.exit(run_main(main))
