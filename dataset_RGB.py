"""Paired image datasets for training, validation and testing, and MixUp for denoising.

A paired folder holds ``input/`` (degraded) and ``target/`` (clean) images that
pair up by file stem, so ``input/a.png`` pairs with ``target/a.jpg``. Items are
``(target, input, filename)`` as published: float32 tensors (3, H, W) in [0, 1]
and the target's file stem.

Training samples follow the published recipe: reflect-pad to the patch size,
(Deblurring only) a saturation change shared by the pair, a random crop and
one of 8 flips/rotations drawn as ``random.randint(0, 8)``. All augmentation
randomness comes from Python's ``random`` so the DataLoader's per-worker
seeding applies.
"""
import os
import random
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset

from utils.image_io import IMAGE_EXTENSIONS, image_to_tensor, list_images, read_image
from utils.padding import pad_reflect

__all__ = ['DataLoaderTrain', 'DataLoaderVal', 'DataLoaderTest', 'MixUp', 'get_training_data',
           'get_validation_data', 'get_test_data', 'pair_by_stem', 'flip_rotate', 'adjust_saturation',
           'NUM_AUG_DRAWS']

# The published draw: random.randint(0, 8) gives 9 outcomes for 8 modes; 0 and 8 both
# leave the pair unchanged.
NUM_AUG_DRAWS = 9
# Luma weights of PIL's convert('L') (the published jitter ran on PIL images).
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)
_MAX_LISTED = 20  # names shown in an error before "... and N more"


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _name_list(names: Sequence[str]) -> str:
    shown = ', '.join(names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f' ... and {more} more' if more > 0 else '')


def _images_by_stem(folder: str) -> Dict[str, str]:
    """{stem: path} of the images in `folder`; an empty folder or a repeated stem is an error."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'image folder not found: {folder}')
    paths = list_images(folder)
    image_names = {os.path.basename(p) for p in paths}
    others = sorted(f for f in os.listdir(folder) if f not in image_names and not f.startswith('.')
                    and os.path.isfile(os.path.join(folder, f)))
    if others:
        warnings.warn(f'{folder}: ignoring {len(others)} non-image file(s): {_name_list(others)}')
    if not paths:
        raise ValueError(f'no images in {folder}: expected files ending in {", ".join(IMAGE_EXTENSIONS)}')
    by_stem: Dict[str, str] = {}
    for path in paths:
        stem = _stem(path)
        if stem in by_stem:
            raise ValueError(f'{folder}: {os.path.basename(by_stem[stem])} and {os.path.basename(path)} '
                             'have the same name; keep one, results and pairs are named by stem')
        by_stem[stem] = path
    return by_stem


def pair_by_stem(rgb_dir: str) -> List[Tuple[str, str]]:
    """[(input_path, target_path)] from `<rgb_dir>/input` and `<rgb_dir>/target`, sorted by stem.

    Every input needs a target of the same stem and vice versa; otherwise the
    error lists the unmatched names of both sides.
    """
    if not os.path.isdir(rgb_dir):
        raise FileNotFoundError(f'dataset folder not found: {rgb_dir} (expected {rgb_dir}/input and '
                                f'{rgb_dir}/target)')
    inputs = _images_by_stem(os.path.join(rgb_dir, 'input'))
    targets = _images_by_stem(os.path.join(rgb_dir, 'target'))
    no_target = sorted(set(inputs) - set(targets))
    no_input = sorted(set(targets) - set(inputs))
    if no_target or no_input:
        lines = [f'{rgb_dir}: input and target images must pair up by file name (without extension)']
        if no_target:
            lines.append(f'  inputs without a target ({len(no_target)}): {_name_list(no_target)}')
        if no_input:
            lines.append(f'  targets without an input ({len(no_input)}): {_name_list(no_input)}')
        raise ValueError('\n'.join(lines))
    return [(inputs[stem], targets[stem]) for stem in sorted(inputs)]


def _read_pair(inp_path: str, tar_path: str) -> torch.Tensor:
    """Both images of a pair as one (2, 3, H, W) tensor: [input, target]."""
    inp, _ = read_image(inp_path)
    tar, _ = read_image(tar_path)
    if inp.shape != tar.shape:
        raise ValueError(f'image sizes differ within a pair: {inp_path} is {inp.shape[1]}x{inp.shape[0]}, '
                         f'{tar_path} is {tar.shape[1]}x{tar.shape[0]} (width x height)')
    return torch.stack([image_to_tensor(inp), image_to_tensor(tar)])


def _pad_to_at_least(x: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect-pad (N, C, H, W) at the bottom and right so that H, W >= size."""
    h, w = x.shape[-2:]
    return pad_reflect(x, max(size - h, 0), max(size - w, 0))


def adjust_saturation(img: torch.Tensor, factor: float) -> torch.Tensor:
    """Saturation change of (..., 3, H, W) in [0, 1]: gray + factor * (img - gray), clamped to [0, 1].

    The formula of torchvision's/PIL's adjust_saturation; factor 0 gives gray, 1 the image.
    """
    weights = img.new_tensor(_GRAY_WEIGHTS).view(3, 1, 1)
    gray = (img * weights).sum(dim=-3, keepdim=True)
    return (factor * img + (1.0 - factor) * gray).clamp_(0.0, 1.0)


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


def _patch_size(img_options: Optional[dict], allow_none: bool) -> Optional[int]:
    if not img_options or 'patch_size' not in img_options:
        raise ValueError("img_options needs 'patch_size' (TRAINING.TRAIN_PS / TRAINING.VAL_PS)")
    ps = img_options['patch_size']
    if ps is None and allow_none:
        return None
    if isinstance(ps, bool) or not isinstance(ps, int) or ps <= 0:
        raise ValueError(f'patch size must be a positive integer{" or None" if allow_none else ""}, got {ps!r}')
    return ps


class DataLoaderTrain(Dataset):
    """Random training patches: items (target, input, filename), tensors (3, ps, ps)."""

    def __init__(self, rgb_dir: str, img_options: Optional[dict] = None):
        super().__init__()
        self.pairs = pair_by_stem(rgb_dir)
        self.ps = _patch_size(img_options, allow_none=False)
        self.saturation_jitter = bool(img_options.get('saturation_jitter', False))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        ps = self.ps
        inp_path, tar_path = self.pairs[index % len(self.pairs)]
        pair = _pad_to_at_least(_read_pair(inp_path, tar_path), ps)
        h, w = pair.shape[-2:]
        # Draws in the published order: saturation (Deblurring only), crop, flip/rotate.
        factor = None
        if self.saturation_jitter and random.randint(0, 2) == 1:
            factor = random.uniform(0.8, 1.2)
        top = random.randint(0, h - ps)
        left = random.randint(0, w - ps)
        mode = random.randint(0, NUM_AUG_DRAWS - 1)
        pair = pair[..., top:top + ps, left:left + ps]
        if factor is not None:  # per-pixel, so cropping first gives the same result for less work
            pair = adjust_saturation(pair, factor)
        pair = flip_rotate(pair, mode).contiguous()
        return pair[1], pair[0], _stem(tar_path)


class DataLoaderVal(Dataset):
    """Validation pairs: items (target, input, filename).

    With an integer patch size, the centre ps x ps crop (torchvision's centre);
    images smaller than that are reflect-padded first (the published code padded
    with zeros, which inflates PSNR). With None, whole images: they batch only if
    they share a size.
    """

    def __init__(self, rgb_dir: str, img_options: Optional[dict] = None):
        super().__init__()
        self.pairs = pair_by_stem(rgb_dir)
        self.ps = _patch_size(img_options, allow_none=True)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        inp_path, tar_path = self.pairs[index % len(self.pairs)]
        pair = _read_pair(inp_path, tar_path)
        if self.ps is not None:
            ps = self.ps
            pair = _pad_to_at_least(pair, ps)
            h, w = pair.shape[-2:]
            top, left = int(round((h - ps) / 2.0)), int(round((w - ps) / 2.0))
            pair = pair[..., top:top + ps, left:left + ps].contiguous()
        return pair[1], pair[0], _stem(tar_path)


class DataLoaderTest(Dataset):
    """Every image of one folder: items (input, filename), input (3, H, W) at its own size."""

    def __init__(self, inp_dir: str, img_options: Optional[dict] = None):
        super().__init__()
        self.paths = [path for _, path in sorted(_images_by_stem(inp_dir).items())]
        self.img_options = img_options or {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = self.paths[index]
        img, _ = read_image(path)
        return image_to_tensor(img), _stem(path)


def get_training_data(rgb_dir: str, img_options: dict) -> DataLoaderTrain:
    """img_options: {'patch_size': int, 'saturation_jitter': bool (default False)}."""
    return DataLoaderTrain(rgb_dir, img_options)


def get_validation_data(rgb_dir: str, img_options: dict) -> DataLoaderVal:
    """img_options: {'patch_size': int, or None for whole images}."""
    return DataLoaderVal(rgb_dir, img_options)


def get_test_data(rgb_dir: str, img_options: Optional[dict] = None) -> DataLoaderTest:
    """All images directly in `rgb_dir` (no input/target subfolders)."""
    return DataLoaderTest(rgb_dir, img_options)


class MixUp:
    """MixUp of (target, input) batches as published for denoising.

    Each sample i becomes lam_i * x[i] + (1 - lam_i) * x[perm[i]], with
    lam_i ~ Beta(alpha, alpha) and one permutation of the batch, both shared by
    target and input. Runs on the inputs' device; pass a torch.Generator for
    reproducible draws (they are made on the generator's device).
    """

    def __init__(self, alpha: float = 0.6, generator: Optional[torch.Generator] = None):
        if alpha <= 0:
            raise ValueError(f'MixUp alpha must be positive, got {alpha}')
        self.alpha = alpha
        self.generator = generator

    def _draw_device(self, device: torch.device) -> torch.device:
        return self.generator.device if self.generator is not None else device

    def sample_lambda(self, n: int, device: torch.device) -> torch.Tensor:
        """n draws of Beta(alpha, alpha) as a float32 tensor (n,) on `device`.

        Beta(a, a) = X / (X + Y) for X, Y ~ Gamma(a, 1); torch's Gamma sampler is
        the one that accepts a generator.
        """
        alpha = torch.full((2, n), float(self.alpha), device=self._draw_device(torch.device(device)))
        gammas = torch._standard_gamma(alpha, generator=self.generator)
        # X + Y underflows to 0 with negligible probability; avoid 0/0 all the same.
        lam = gammas[0] / (gammas[0] + gammas[1]).clamp_min(torch.finfo(torch.float32).tiny)
        return lam.to(device)

    def __call__(self, target: torch.Tensor, input_: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(N, C, H, W) pair of batches -> the mixed pair, same shapes, dtypes and device."""
        if target.shape[0] != input_.shape[0]:
            raise ValueError(f'MixUp needs batches of the same size, got {target.shape[0]} targets '
                             f'and {input_.shape[0]} inputs')
        n, device = target.shape[0], target.device
        perm = torch.randperm(n, generator=self.generator, device=self._draw_device(device)).to(device)
        lam = self.sample_lambda(n, device).view(-1, *([1] * (target.dim() - 1)))

        def mix(x: torch.Tensor) -> torch.Tensor:
            weight = lam.to(x.dtype)
            return weight * x + (1 - weight) * x[perm]

        return mix(target), mix(input_)
