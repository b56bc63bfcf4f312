"""Paired image datasets for training and validation, and MixUp for denoising.

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
from typing import List, Optional, Tuple

import torch
from torch.distributions import Beta
from torch.utils.data import Dataset

from utils.files.image_io import image_to_tensor, read_image
from utils.data.image_pairs import centre_origin, check_patch_size, flip_rotate, pad_to_at_least, pair_by_stem, stem

__all__ = ['DataLoaderTrain', 'DataLoaderVal', 'MixUp', 'get_training_data', 'get_validation_data',
           'pair_folder', 'adjust_saturation', 'NUM_AUG_DRAWS']

# The published draw: random.randint(0, 8) gives 9 outcomes for 8 modes; 0 and 8 both
# leave the pair unchanged.
NUM_AUG_DRAWS = 9
# Luma weights of PIL's convert('L') (the published jitter ran on PIL images).
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def pair_folder(rgb_dir: str) -> List[Tuple[str, str]]:
    """[(input_path, target_path)] from `<rgb_dir>/input` and `<rgb_dir>/target`, paired by stem.

    Every input needs a target of the same stem and vice versa; otherwise the
    error lists the unmatched names of both sides (utils/data/image_pairs.py).
    """
    if not os.path.isdir(rgb_dir):
        raise FileNotFoundError(f'dataset folder not found: {rgb_dir} (expected {rgb_dir}/input and '
                                f'{rgb_dir}/target)')
    return pair_by_stem(os.path.join(rgb_dir, 'input'), os.path.join(rgb_dir, 'target'))


def _read_pair(inp_path: str, tar_path: str) -> torch.Tensor:
    """Both images of a pair as one (2, 3, H, W) tensor: [input, target]."""
    inp, _ = read_image(inp_path)
    tar, _ = read_image(tar_path)
    if inp.shape != tar.shape:
        raise ValueError(f'image sizes differ within a pair: {inp_path} is {inp.shape[1]}x{inp.shape[0]}, '
                         f'{tar_path} is {tar.shape[1]}x{tar.shape[0]} (width x height)')
    return torch.stack([image_to_tensor(inp), image_to_tensor(tar)])


def adjust_saturation(img: torch.Tensor, factor: float) -> torch.Tensor:
    """Saturation change of (..., 3, H, W) in [0, 1]: gray + factor * (img - gray), clamped to [0, 1].

    The formula of torchvision's/PIL's adjust_saturation; factor 0 gives gray, 1 the image.
    """
    weights = img.new_tensor(_GRAY_WEIGHTS).view(3, 1, 1)
    gray = (img * weights).sum(dim=-3, keepdim=True)
    return (factor * img + (1.0 - factor) * gray).clamp_(0.0, 1.0)


def _patch_size(img_options: Optional[dict], allow_none: bool) -> Optional[int]:
    if not img_options or 'patch_size' not in img_options:
        raise ValueError("img_options needs 'patch_size' (TRAINING.TRAIN_PS / TRAINING.VAL_PS)")
    return check_patch_size(img_options['patch_size'], allow_none)


class DataLoaderTrain(Dataset):
    """Random training patches: items (target, input, filename), tensors (3, ps, ps)."""

    def __init__(self, rgb_dir: str, img_options: Optional[dict] = None):
        super().__init__()
        self.pairs = pair_folder(rgb_dir)
        self.ps = _patch_size(img_options, allow_none=False)
        self.saturation_jitter = bool(img_options.get('saturation_jitter', False))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        ps = self.ps
        inp_path, tar_path = self.pairs[index % len(self.pairs)]
        pair = pad_to_at_least(_read_pair(inp_path, tar_path), ps)
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
        return pair[1], pair[0], stem(tar_path)


class DataLoaderVal(Dataset):
    """Validation pairs: items (target, input, filename).

    With an integer patch size, the centre ps x ps crop (torchvision's centre);
    images smaller than that are reflect-padded first (the published code padded
    with zeros, which inflates PSNR). With None, whole images: they batch only if
    they share a size.
    """

    def __init__(self, rgb_dir: str, img_options: Optional[dict] = None):
        super().__init__()
        self.pairs = pair_folder(rgb_dir)
        self.ps = _patch_size(img_options, allow_none=True)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        inp_path, tar_path = self.pairs[index % len(self.pairs)]
        pair = _read_pair(inp_path, tar_path)
        if self.ps is not None:
            ps = self.ps
            pair = pad_to_at_least(pair, ps)
            top, left = centre_origin(*pair.shape[-2:], ps, ps)
            pair = pair[..., top:top + ps, left:left + ps].contiguous()
        return pair[1], pair[0], stem(tar_path)


def get_training_data(rgb_dir: str, img_options: dict) -> DataLoaderTrain:
    """img_options: {'patch_size': int, 'saturation_jitter': bool (default False)}."""
    return DataLoaderTrain(rgb_dir, img_options)


def get_validation_data(rgb_dir: str, img_options: dict) -> DataLoaderVal:
    """img_options: {'patch_size': int, or None for whole images}."""
    return DataLoaderVal(rgb_dir, img_options)


class MixUp:
    """MixUp of (target, input) batches as published for denoising.

    Each sample i becomes lam_i * x[i] + (1 - lam_i) * x[perm[i]], with
    lam_i ~ Beta(alpha, alpha) and one permutation of the batch, both shared by
    target and input. Runs on the inputs' device; pass a torch.Generator for
    reproducible draws (the permutation is drawn on the generator's device, the
    weights on the CPU, see ``sample_lambda``).
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

        ``torch.distributions.Beta`` samples from the global RNG and takes no
        generator. With a generator, the draw runs inside ``torch.random.fork_rng``
        on the CPU with the global CPU RNG seeded from the generator: reproducible
        for a given generator state, and the global RNG is left as it was.
        """
        if self.generator is None:
            concentration = torch.tensor(float(self.alpha), device=device)
            return Beta(concentration, concentration).sample((n,))
        seed = int(torch.randint(2 ** 62, (1,), generator=self.generator, device=self.generator.device))
        concentration = torch.tensor(float(self.alpha))
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            lam = Beta(concentration, concentration).sample((n,))
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
