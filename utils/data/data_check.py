"""A fast look at a training set before training starts: every file opens and every pair agrees in size.

Only the image headers are read (``utils.files.image_header.image_size``: the size
without decoding the pixels), so a folder of thousands of images is checked in seconds and a bad
file stops the run at start-up with its name, instead of in a DataLoader
worker somewhere in epoch 1. ``TRAINING.SCAN_DATA False`` skips it for
very large sets.
"""
import os
from typing import List, Optional, Sequence, Tuple

from utils.files.image_header import image_size
from utils.files.image_io import DEFAULT_MAX_MEGAPIXELS, check_pixel_limit

__all__ = ['DataCheckError', 'scan_pairs', 'scan_images', 'patch_note']

_LISTED = 5


class DataCheckError(ValueError):
    """Some training files are unreadable or mismatched; the message lists them."""


def _safe_size(path: str, problems: List[str]) -> Optional[Tuple[int, int]]:
    """The image's size, or None with what is wrong appended to `problems`: an unreadable header,
    or more pixels than the training readers take (read_image's default limit), which would
    otherwise stop a DataLoader worker in the middle of an epoch."""
    try:
        size = image_size(path)
        check_pixel_limit(path, *size, DEFAULT_MAX_MEGAPIXELS,
                          advice=f'training reads images of up to {DEFAULT_MAX_MEGAPIXELS:g} megapixels: shrink or '
                                 'cut it into tiles')
        return size
    except ValueError as err:
        problems.append(str(err))
        return None


def _raise(problems: List[str], what: str) -> None:
    if problems:
        more = f'\n  ... and {len(problems) - _LISTED} more' if len(problems) > _LISTED else ''
        raise DataCheckError(f'{len(problems)} problem(s) in {what}:\n  ' + '\n  '.join(problems[:_LISTED]) + more
                             + '\n  (TRAINING.SCAN_DATA False skips this check)')


def scan_pairs(pairs: Sequence[Tuple[str, str]], what: str) -> List[Tuple[int, int]]:
    """Every (input, target) opens and both have the same size; DataCheckError lists what does not.
    Returns the (width, height) of every pair."""
    problems: List[str] = []
    sizes = []
    for inp, tar in pairs:
        a, b = _safe_size(inp, problems), _safe_size(tar, problems)
        if a and b and a != b:
            problems.append(f'sizes differ within a pair: {os.path.basename(inp)} is {a[0]}x{a[1]}, '
                            f'{os.path.basename(tar)} is {b[0]}x{b[1]} ({os.path.dirname(inp)})')
        sizes.append(a or (0, 0))
    _raise(problems, what)
    return sizes


def scan_images(paths: Sequence[str], what: str) -> List[Tuple[int, int]]:
    """Every image opens; DataCheckError lists the ones that do not. Returns their (width, height)."""
    problems: List[str] = []
    sizes = [_safe_size(path, problems) or (0, 0) for path in paths]
    _raise(problems, what)
    return sizes


def patch_note(sizes: Sequence[Tuple[int, int]], patch: int, key: str) -> Optional[str]:
    """A note when a patch of `patch` pixels fits in none of the images of `sizes` (each is
    smaller in width or height): every patch is then mostly reflect-padding, not photo."""
    if not sizes or any(w >= patch and h >= patch for w, h in sizes):
        return None
    w, h = max(sizes, key=lambda size: min(size))
    return (f'{key} {patch} is larger than every training image (the largest, {w}x{h}): every patch is '
            'partly reflect-padded; a smaller patch trains on more of the photos')
