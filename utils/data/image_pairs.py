"""Helpers shared by every source of (target, input) image pairs.

dataset_RGB.py (paired folders), utils/data/synthetic.py (pairs made from clean
photos) and the evaluation scripts (results against targets) use these:

- ``images_by_stem`` / ``pair_by_stem``: images of a folder by file name
  without extension, and two folders paired by it (``a.png`` with ``a.jpg``),
  in natural order (img2 before img10); unmatched names are an error that
  lists both sides.
- ``check_patch_size``: a patch size is a positive integer (or None where whole
  images are allowed).
- ``pad_to_at_least``: reflect padding at the bottom and right up to a size.
- ``centre_origin``: torchvision's centre-crop corner.
- ``flip_rotate``: the published flip/rotate modes.
"""
import os
import unicodedata
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from natsort import natsorted

from utils.files.image_io import IMAGE_EXTENSIONS, list_images
from utils.padding import pad_reflect

__all__ = ['stem', 'name_list', 'images_by_stem', 'pair_by_stem', 'check_patch_size', 'pad_to_at_least',
           'centre_origin', 'flip_rotate', 'NUM_FLIP_ROTATE']

NUM_FLIP_ROTATE = 8  # flip_rotate modes 0..7: the 8 distinct flips and rotations (8 repeats 0)
MAX_LISTED = 20  # names shown in an error before "... and N more"


def stem(path: str) -> str:
    """The file name without folder and extension: 'a/b/img.png' -> 'img'."""
    return os.path.splitext(os.path.basename(path))[0]


def name_list(names: Sequence[str], limit: int = MAX_LISTED) -> str:
    """'a, b, c' for an error message, the first `limit` names then '... and N more'."""
    shown = ', '.join(names[:limit])
    more = len(names) - limit
    return shown + (f' ... and {more} more' if more > 0 else '')


def images_by_stem(folder: str) -> Dict[str, str]:
    """{stem: path} of the images directly in `folder`, in natural order of the file names.

    A missing folder, a folder without images and two images with the same stem
    (``a.png`` and ``a.jpg``) are errors; other files are skipped with a warning.
    """
    paths = list_images(folder)  # FileNotFoundError for a missing folder
    image_names = {os.path.basename(p) for p in paths}
    others = sorted(f for f in os.listdir(folder) if f not in image_names and not f.startswith('.')
                    and os.path.isfile(os.path.join(folder, f)))
    if others:
        warnings.warn(f'{folder}: ignoring {len(others)} non-image file(s): {name_list(others)}')
    if not paths:
        raise ValueError(f'no images in {folder}: expected files ending in {", ".join(IMAGE_EXTENSIONS)}')
    by_stem: Dict[str, str] = {}
    for path in paths:
        name = stem(path)
        if name in by_stem:
            raise ValueError(f'{folder}: {os.path.basename(by_stem[name])} and {os.path.basename(path)} '
                             'have the same name; keep one, results and pairs are named by stem')
        by_stem[name] = path
    return by_stem


def pair_by_stem(first_dir: str, second_dir: str,
                 unmatched: Tuple[str, str] = ('inputs without a target', 'targets without an input'),
                 ) -> List[Tuple[str, str]]:
    """[(first_path, second_path)] of the images of two folders with the same stem, in natural order.

    Every image needs a partner of the same stem in the other folder; otherwise
    the error lists the names without one on each side, introduced by the two
    phrases of `unmatched` ('inputs without a target: a, b').
    """
    first, second = images_by_stem(first_dir), images_by_stem(second_dir)
    lonely = natsorted(set(first) - set(second)), natsorted(set(second) - set(first))
    lines = [f'  {phrase}: {name_list(names)}' for phrase, names in zip(unmatched, lonely) if names]
    # One name written with composed and decomposed accents (a copy through macOS) looks the same
    # and is two names to the file system.
    composed = {unicodedata.normalize('NFC', name): name for name in lonely[1]}
    twins = [name for name in lonely[0] if composed.get(unicodedata.normalize('NFC', name), name) != name]
    if twins:
        lines.append(f'  {name_list(twins)}: the same name in both folders with its accents encoded differently '
                     '(Unicode NFC and NFD, e.g. after a copy through macOS); rename one side so the bytes match')
    if lines:
        raise ValueError('\n'.join([f'{first_dir} and {second_dir}: images must pair up by file name '
                                     '(without extension)'] + lines))
    return [(first[name], second[name]) for name in natsorted(first)]


def check_patch_size(patch_size, allow_none: bool = False) -> Optional[int]:
    """`patch_size` if it is a positive integer (or None with `allow_none`); otherwise ValueError."""
    if patch_size is None and allow_none:
        return None
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size <= 0:
        raise ValueError(f'patch size must be a positive integer{" or None" if allow_none else ""}, '
                         f'got {patch_size!r}')
    return patch_size


def pad_to_at_least(x: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect-pad (..., C, H, W) at the bottom and right so that H, W >= size (as published)."""
    h, w = x.shape[-2:]
    return pad_reflect(x, max(size - h, 0), max(size - w, 0))


def centre_origin(height: int, width: int, crop_h: int, crop_w: int) -> Tuple[int, int]:
    """(top, left) of the centre crop_h x crop_w window of a height x width image.

    torchvision's centre_crop: round((height - crop_h) / 2), Python rounding
    half to even, so an odd margin of 25 gives 12.
    """
    return int(round((height - crop_h) / 2.0)), int(round((width - crop_w) / 2.0))


def flip_rotate(x: torch.Tensor, mode: int) -> torch.Tensor:
    """One of the published flip/rotate modes on the last two dims of (..., H, W).

    0 and 8: unchanged; 1: flip rows; 2: flip columns; 3, 4, 5: rotate by 90, 180,
    270 degrees; 6, 7: flip rows or columns, then rotate by 90 degrees.
    """
    dims = (-2, -1)
    if mode in (0, 8):
        return x
    if mode == 1:
        return x.flip(-2)
    if mode == 2:
        return x.flip(-1)
    if mode in (3, 4, 5):
        return torch.rot90(x, k=mode - 2, dims=dims)
    if mode == 6:
        return torch.rot90(x.flip(-2), dims=dims)
    if mode == 7:
        return torch.rot90(x.flip(-1), dims=dims)
    raise ValueError(f'flip/rotate mode must be in 0..8, got {mode}')
