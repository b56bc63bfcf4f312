"""PSNR of batches of tensors, as training validation measures it: on the device, in float32,
one value per image. Apart from utils/evaluation/metrics.py, whose MATLAB-semantics scores take
numpy arrays and must not pull torch into the evaluation scripts' worker processes."""
import torch

__all__ = ['psnr_per_image']


def psnr_per_image(restored: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) pair in [0, 1] -> (N,) PSNR in dB: 20 log10(1 / RMSE) over all pixels and channels."""
    diff = restored.float().clamp(0, 1) - target.float().clamp(0, 1)
    mse = diff.pow(2).flatten(1).mean(1)
    return -10.0 * torch.log10(mse)
