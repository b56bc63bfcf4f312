"""Cut SIDD-Medium sRGB pairs into random training patches.

Reads ``<src_dir>/<scene>/*NOISY*.PNG`` with the ``*GT*.PNG`` of the same name
(``0001_NOISY_SRGB_010.PNG`` pairs with ``0001_GT_SRGB_010.PNG``) and writes
``--num_patches`` crops of ``--patch_size`` per pair, at the same position in
both images, to ``<tar_dir>/input/`` and ``<tar_dir>/target/`` as
``<pair>_<patch>.png`` (the published script wrote ``groundtruth/``, which the
loader never read). Pixels are copied as decoded, so patches are lossless.

Pair k draws its positions from a generator seeded with (seed, k): the output
does not depend on --num_workers.

    python Denoising/generate_patches_SIDD.py --src_dir SIDD_Medium_Srgb/Data \\
        --tar_dir Denoising/Datasets/SIDD/train
"""
import argparse
import os
import shutil
import sys
from multiprocessing import Pool
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

# OpenCV's own threads would compete with the worker processes.
cv2.setNumThreads(0)


def find_pairs(src_dir: str) -> List[Tuple[str, str]]:
    """[(noisy_path, gt_path)] for every *NOISY*.PNG under src_dir/<scene>/, sorted by path."""
    if not os.path.isdir(src_dir):
        raise FileNotFoundError(f'SIDD folder not found: {src_dir} (expected SIDD_Medium_Srgb/Data with one '
                                'folder per scene)')
    pairs, missing = [], []
    for scene in sorted(os.listdir(src_dir)):
        scene_dir = os.path.join(src_dir, scene)
        if not os.path.isdir(scene_dir):
            continue
        for name in sorted(os.listdir(scene_dir)):
            if 'NOISY' not in name or not name.upper().endswith('.PNG'):
                continue
            gt_path = os.path.join(scene_dir, name.replace('NOISY', 'GT'))
            if os.path.isfile(gt_path):
                pairs.append((os.path.join(scene_dir, name), gt_path))
            else:
                missing.append(os.path.join(scene, name))
    if missing:
        raise FileNotFoundError(f'no GT image for {len(missing)} noisy image(s) in {src_dir}: '
                                + ', '.join(missing[:20]) + (' ...' if len(missing) > 20 else ''))
    if not pairs:
        raise FileNotFoundError(f'no *NOISY*.PNG images in the scene folders of {src_dir}')
    return pairs


def _read_raw(path: str) -> np.ndarray:
    """Decode an image without converting it (bit depth and channel order kept)."""
    img = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f'cannot decode image {path}: the file is damaged or not an image')
    return img


def _write_png(path: str, img: np.ndarray) -> None:
    ok, buf = cv2.imencode('.png', img)
    if not ok:
        raise ValueError(f'cannot encode patch {path}')
    buf.tofile(path)


def crop_positions(height: int, width: int, patch_size: int, num_patches: int,
                   seed: int, pair_index: int) -> np.ndarray:
    """(num_patches, 2) top-left corners (row, col), uniform over every position that fits."""
    rng = np.random.default_rng([seed, pair_index])
    rows = rng.integers(0, height - patch_size + 1, size=num_patches)
    cols = rng.integers(0, width - patch_size + 1, size=num_patches)
    return np.stack([rows, cols], axis=1)


def save_patches(job: Tuple[int, str, str, str, int, int, int]) -> int:
    """Cut and write the patches of one pair; returns how many were written."""
    index, noisy_path, gt_path, tar_dir, patch_size, num_patches, seed = job
    noisy, gt = _read_raw(noisy_path), _read_raw(gt_path)
    if noisy.shape != gt.shape:
        raise ValueError(f'sizes differ: {noisy_path} {noisy.shape} vs {gt_path} {gt.shape}')
    height, width = noisy.shape[:2]
    if height < patch_size or width < patch_size:
        raise ValueError(f'{noisy_path} is {width}x{height}, smaller than the patch size {patch_size}')
    for j, (top, left) in enumerate(crop_positions(height, width, patch_size, num_patches, seed, index)):
        name = f'{index + 1}_{j + 1}.png'  # published naming: pair and patch, counted from 1
        window = (slice(top, top + patch_size), slice(left, left + patch_size))
        _write_png(os.path.join(tar_dir, 'input', name), noisy[window])
        _write_png(os.path.join(tar_dir, 'target', name), gt[window])
    return num_patches


def prepare_output(tar_dir: str, overwrite: bool) -> None:
    """Create tar_dir/input and tar_dir/target; an existing non-empty tar_dir needs overwrite."""
    if os.path.isdir(tar_dir) and os.listdir(tar_dir):
        if not overwrite:
            raise FileExistsError(f'output folder {tar_dir} exists and is not empty: choose another '
                                  '--tar_dir or pass --overwrite to replace its input/ and target/')
        for sub in ('input', 'target'):  # only what this script writes; nothing else in tar_dir
            shutil.rmtree(os.path.join(tar_dir, sub), ignore_errors=True)
    for sub in ('input', 'target'):
        os.makedirs(os.path.join(tar_dir, sub), exist_ok=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='Cut SIDD-Medium sRGB pairs into random training patches.')
    parser.add_argument('--src_dir', default='SIDD_Medium_Srgb/Data',
                        help='SIDD-Medium Data folder: one folder per scene with *NOISY*.PNG and *GT*.PNG '
                             '(default: %(default)s)')
    parser.add_argument('--tar_dir', default='Denoising/Datasets/SIDD/train',
                        help='output folder; patches go to its input/ and target/ (default: %(default)s)')
    parser.add_argument('--patch_size', type=int, default=256, help='patch side in pixels (default: %(default)s)')
    parser.add_argument('--num_patches', type=int, default=300,
                        help='random patches per image pair (default: %(default)s)')
    parser.add_argument('--num_workers', type=int, default=os.cpu_count() or 1,
                        help='worker processes; 1 runs in this process (default: all cores, %(default)s)')
    parser.add_argument('--seed', type=int, default=1234,
                        help='seed of the crop positions; same seed, same patches (default: %(default)s)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace input/ and target/ of an existing non-empty --tar_dir')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for option, low in (('patch_size', 1), ('num_patches', 1), ('num_workers', 1), ('seed', 0)):
        if getattr(args, option) < low:
            parser.error(f'--{option} must be at least {low}, got {getattr(args, option)}')
    try:
        pairs = find_pairs(args.src_dir)
        prepare_output(args.tar_dir, args.overwrite)
    except (FileNotFoundError, FileExistsError) as err:
        parser.error(str(err))
    jobs = [(i, noisy, gt, args.tar_dir, args.patch_size, args.num_patches, args.seed)
            for i, (noisy, gt) in enumerate(pairs)]
    progress = tqdm(total=len(jobs) * args.num_patches, unit='patch', desc='SIDD patches')
    if args.num_workers == 1:
        for job in jobs:
            progress.update(save_patches(job))
    else:
        with Pool(min(args.num_workers, len(jobs))) as pool:
            for written in pool.imap_unordered(save_patches, jobs):
                progress.update(written)
    progress.close()
    print(f'{len(jobs) * args.num_patches} patch pairs from {len(jobs)} image pairs in {args.tar_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
