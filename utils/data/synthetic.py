"""Training pairs made on the fly from a folder of clean photos (no pairs stored on disk).

Each item crops a patch from a clean photo, degrades it with
``utils.data.degradations.degrade`` ('deblur', 'derain' or 'denoise') and returns
``(target, input, filename)`` like ``dataset_RGB``: float32 tensors
(3, ps, ps) in [0, 1] and the photo's name.

Randomness:
- Training draws a fresh crop, flip/rotation and degradation every time. All
  of it comes from a numpy Generator seeded with (seed, 64 bits drawn from
  Python's ``random``), so whoever seeds ``random`` controls the draws: the
  training engine reseeds it from (seed, epoch, index) before every item, in
  DataLoader workers as in the main process, which makes a run reproducible
  and gives a new degradation of each photo every epoch.
- Validation is fixed: the centre crop, degraded with a Generator seeded by
  (seed, index), so every epoch (and every dataset instance) sees the same pairs.

The degradation is applied to the patch plus a margin of context (then cut
away), not to the whole photo, so it is fast and blur or rain streaks at the
patch border still come from real neighbouring pixels.
"""
import os
import random
from typing import Any, List, Mapping, Optional, Tuple

import numpy as np
import torch
from natsort import natsorted, ns
from torch.utils.data import Dataset

from utils.data.degradations import KINDS, degrade
from utils.files.image_io import IMAGE_EXTENSIONS, image_to_tensor, list_images, read_image
from utils.data.image_pairs import NUM_FLIP_ROTATE, centre_origin, check_patch_size, flip_rotate, pad_to_at_least

__all__ = ['SyntheticTrainingData', 'SyntheticValidationData', 'get_synthetic_training_data',
           'get_synthetic_validation_data', 'find_photos', 'CONTEXT_MARGIN']

# Pixels of context around a patch that the degradation sees: half the largest blur kernel
# (31 px) plus one, and half the longest rain streak (60 px) plus one, so a streak that crosses
# the patch border is drawn whole. Noise is per pixel and needs none.
CONTEXT_MARGIN = {'deblur': 16, 'derain': 31, 'denoise': 0}
# Decoded photos kept in memory per dataset copy (each DataLoader worker has its own): decoding a
# 1024-px PNG costs about 10 ms, as much as a training step's worth of degradation for 8 patches.
PHOTO_CACHE_BYTES = 1 << 30


def find_photos(photo_dir: str) -> List[str]:
    """Every image in `photo_dir` and its subfolders (hidden ones excluded), in natural order of the paths.

    Wallpaper packages nest their pictures, so the search recurses. An empty
    tree is an error that says how to get photos.
    """
    if not os.path.isdir(photo_dir):
        raise FileNotFoundError(f'photo folder not found: {photo_dir}')
    photos = []
    for folder, subfolders, _ in os.walk(photo_dir):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith('.'))
        photos.extend(list_images(folder))
    if not photos:
        raise ValueError(f'no photos in {photo_dir} or its subfolders (looked for {", ".join(IMAGE_EXTENSIONS)}); '
                         'scripts/prepare_photos.py prepares a free set in Datasets/photos')
    return natsorted(photos, alg=ns.PATH)


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic degradation {kind!r}: choose one of {', '.join(KINDS)}")
    return kind


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f'seed must be a non-negative integer, got {seed!r}')
    return seed


class _PhotoPairs(Dataset):
    """Shared part: the photo list, reading, and degrading a patch with context."""

    def __init__(self, photo_dir: str, kind: str, patch_size: Optional[int], seed: int, allow_none: bool,
                 params: Optional[Mapping[str, Any]] = None):
        super().__init__()
        self.params = dict(params or {})  # keyword arguments of the degradation (e.g. add_rain's ranges)
        self.photo_dir = photo_dir
        self.kind = _check_kind(kind)
        self.patch_size = check_patch_size(patch_size, allow_none)
        self.seed = _check_seed(seed)
        self.photos = find_photos(photo_dir)
        self.margin = CONTEXT_MARGIN[kind]
        self._cache, self._cached_bytes = {}, 0

    def read_photo(self, index: int) -> np.ndarray:
        """The decoded photo (H, W, 3) float32, from memory while PHOTO_CACHE_BYTES lasts."""
        photo = self._cache.get(index)
        if photo is None:
            photo = read_image(self.photos[index])[0]
            if self._cached_bytes + photo.nbytes <= PHOTO_CACHE_BYTES:
                self._cache[index] = photo
                self._cached_bytes += photo.nbytes
        return photo

    def photo_name(self, index: int) -> str:
        """The photo's path below photo_dir without extension, '/' written as '__'."""
        rel = os.path.relpath(self.photos[index], self.photo_dir)
        return os.path.splitext(rel)[0].replace(os.sep, '__')

    def read_padded(self, index: int) -> np.ndarray:
        """The photo as float32 (H, W, 3), reflect-padded at the bottom and right to at least the patch size."""
        photo = self.read_photo(index)
        if self.patch_size is None:
            return photo
        if min(photo.shape[:2]) < self.patch_size:
            padded = pad_to_at_least(torch.from_numpy(photo).permute(2, 0, 1)[None], self.patch_size)
            photo = padded[0].permute(1, 2, 0).numpy()
        return photo

    def degraded_patch(self, photo: np.ndarray, top: int, left: int, size: Tuple[int, int],
                       rng: np.random.Generator) -> torch.Tensor:
        """[clean, degraded] patch (2, 3, h, w) at (top, left) of `photo` (H, W, 3); the
        degradation runs on the patch with up to `margin` pixels of context on each side."""
        h, w = size
        height, width = photo.shape[:2]
        y0, x0 = max(top - self.margin, 0), max(left - self.margin, 0)
        y1, x1 = min(top + h + self.margin, height), min(left + w + self.margin, width)
        degraded = degrade(np.ascontiguousarray(photo[y0:y1, x0:x1]), self.kind, rng, **self.params)
        dy, dx = top - y0, left - x0
        return torch.stack([image_to_tensor(photo[top:top + h, left:left + w]),
                            image_to_tensor(degraded[dy:dy + h, dx:dx + w])])


class SyntheticTrainingData(_PhotoPairs):
    """Random training pairs: items (target, input, filename), tensors (3, ps, ps).

    `crops_per_photo` repeats the photo list so that an epoch draws that many
    patches from each photo (a folder of 100 photos is otherwise a 6-step epoch).
    """

    def __init__(self, photo_dir: str, kind: str, patch_size: int, seed: int, crops_per_photo: int = 1,
                 params: Optional[Mapping[str, Any]] = None):
        super().__init__(photo_dir, kind, patch_size, seed, allow_none=False, params=params)
        if isinstance(crops_per_photo, bool) or not isinstance(crops_per_photo, int) or crops_per_photo < 1:
            raise ValueError(f'crops_per_photo must be a positive integer, got {crops_per_photo!r}')
        self.crops_per_photo = crops_per_photo

    def __len__(self) -> int:
        return len(self.photos) * self.crops_per_photo

    def __getitem__(self, index: int):
        index %= len(self.photos)
        rng = np.random.default_rng([self.seed, random.getrandbits(64)])
        photo = self.read_padded(index)
        ps = self.patch_size
        top = int(rng.integers(0, photo.shape[0] - ps + 1))
        left = int(rng.integers(0, photo.shape[1] - ps + 1))
        mode = int(rng.integers(0, NUM_FLIP_ROTATE))
        pair = self.degraded_patch(photo, top, left, (ps, ps), rng)
        # As with the published paired data, the degraded pair is flipped/rotated together.
        pair = flip_rotate(pair, mode).contiguous()
        return pair[0], pair[1], self.photo_name(index)


class SyntheticValidationData(_PhotoPairs):
    """Fixed validation pairs: the centre ps x ps crop (whole photos with patch_size None),
    degraded with a Generator seeded by (seed, index). Items (target, input, filename)."""

    def __init__(self, photo_dir: str, kind: str, patch_size: Optional[int], seed: int,
                 params: Optional[Mapping[str, Any]] = None):
        super().__init__(photo_dir, kind, patch_size, seed, allow_none=True, params=params)

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, index])
        photo = self.read_padded(index)
        height, width = photo.shape[:2]
        h, w = (height, width) if self.patch_size is None else (self.patch_size, self.patch_size)
        top, left = centre_origin(height, width, h, w)  # as dataset_RGB's validation crop
        pair = self.degraded_patch(photo, top, left, (h, w), rng)
        return pair[0], pair[1], self.photo_name(index)


def get_synthetic_training_data(photo_dir: str, kind: str, patch_size: int, seed: int, crops_per_photo: int = 1,
                                params: Optional[Mapping[str, Any]] = None) -> SyntheticTrainingData:
    """Random (target, input, filename) training pairs made from the photos in `photo_dir` (recursive);
    `params` go to the degradation (``degrade``)."""
    return SyntheticTrainingData(photo_dir, kind, patch_size, seed, crops_per_photo, params)


def get_synthetic_validation_data(photo_dir: str, kind: str, patch_size: Optional[int], seed: int,
                                  params: Optional[Mapping[str, Any]] = None) -> SyntheticValidationData:
    """Fixed (target, input, filename) validation pairs from the photos in `photo_dir` (recursive)."""
    return SyntheticValidationData(photo_dir, kind, patch_size, seed, params)
