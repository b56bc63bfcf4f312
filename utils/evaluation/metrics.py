"""PSNR and SSIM with the exact semantics of the evaluation behind the paper's numbers.

Three families, one per published evaluation script:

* MATLAB ``psnr`` / ``ssim`` (GoPro, HIDE, SIDD): the dynamic range comes from
  the class (uint8 -> 255, single/double -> 1). ``ssim`` treats an H x W x 3
  array as a 3-D volume: a Gaussian of sigma 1.5 and 11 taps is applied along
  rows, columns *and channels*, with replicate padding, and the SSIM map is
  averaged over all H x W x 3 entries.
* Wang et al. 2004 ``SSIM_index`` on the Y channel of MATLAB ``rgb2ycbcr``
  (Deraining): 11 x 11 Gaussian window, sigma 1.5, 'valid' filtering, L = 255.
* RealBlur: ECC homography alignment of the result to the target, PSNR over the
  valid (mapped) pixels and a masked Gaussian SSIM per channel (the published
  ``evaluate_RealBlur.py``, itself built on scikit-image's SSIM).

Everything is vectorised: separable filters (OpenCV, in float64) plus numpy.
Inputs are numpy arrays (H, W) or (H, W, C); results are Python floats.
"""
import math
from typing import Optional, Tuple

import cv2
import numpy as np

__all__ = ['matlab_data_range', 'gaussian_taps', 'filter_spatial', 'replicate_mixing_matrix',
           'matlab_gaussian_filter', 'psnr', 'ssim', 'ssim_map', 'rgb_to_y', 'ssim_wang', 'psnr_ssim_y',
           'align_ecc', 'masked_psnr', 'masked_ssim', 'realblur_psnr_ssim']

_BORDERS = {'replicate': cv2.BORDER_REPLICATE, 'reflect': cv2.BORDER_REFLECT}


def matlab_data_range(dtype: np.dtype) -> float:
    """diff(getrangefromclass(x)) of MATLAB: 255 for uint8, 65535 for uint16, 1 for single/double."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if np.issubdtype(dtype, np.floating):
        return 1.0
    raise TypeError(f'no MATLAB dynamic range for images of type {dtype}')


def gaussian_taps(sigma: float = 1.5, radius: Optional[int] = None) -> np.ndarray:
    """Normalised 1-D Gaussian of 2*radius+1 taps; radius defaults to ceil(3*sigma) (MATLAB: 11 taps at 1.5)."""
    if radius is None:
        radius = int(math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return taps / taps.sum()


def filter_spatial(x: np.ndarray, taps: np.ndarray, border: str = 'replicate') -> np.ndarray:
    """Filter (H, W) or (H, W, C) with `taps` along rows and columns, in float64.

    border: 'replicate' (MATLAB imfilter 'replicate') or 'reflect' (edge
    repeated: d c b a | a b c d, scipy.ndimage's 'reflect').
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim == 3 and x.shape[2] > 4:  # OpenCV's fast path takes at most 4 channels
        return np.concatenate([filter_spatial(x[:, :, c:c + 4], taps, border)
                               for c in range(0, x.shape[2], 4)], axis=2)
    return cv2.sepFilter2D(x, cv2.CV_64F, taps, taps, borderType=_BORDERS[border]).reshape(x.shape)


def replicate_mixing_matrix(channels: int, taps: np.ndarray) -> np.ndarray:
    """(C, C) matrix of filtering a length-C axis with `taps` and replicate padding.

    With 3 channels and 11 taps each end channel is repeated 5 times, so every
    output channel is a fixed weighted sum of the 3 input channels.
    """
    radius = len(taps) // 2
    mix = np.zeros((channels, channels))
    for out_c in range(channels):
        for k, weight in enumerate(taps):
            mix[out_c, min(max(out_c + k - radius, 0), channels - 1)] += weight
    return mix


def _filter_volume(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """imgaussfilt3 with 'replicate' padding on an (H, W, C) float64 volume."""
    spatial = filter_spatial(x, taps, 'replicate')
    mix = replicate_mixing_matrix(x.shape[2], taps)
    if x.shape[2] <= 4:  # OpenCV applies a per-pixel channel matrix in one vectorised pass
        return cv2.transform(spatial, mix).reshape(x.shape)
    return np.einsum('hwj,ij->hwi', spatial, mix)


def matlab_gaussian_filter(x: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """imgaussfilt (2-D input) or imgaussfilt3 (3-D input), 'replicate' padding, 2*ceil(3*sigma)+1 taps."""
    taps = gaussian_taps(sigma)
    x = np.ascontiguousarray(x, dtype=np.float64)
    return _filter_volume(x, taps) if x.ndim == 3 else filter_spatial(x, taps, 'replicate')


def _check_pair(img: np.ndarray, ref: np.ndarray) -> None:
    if img.shape != ref.shape:
        raise ValueError(f'image sizes differ: {img.shape} vs reference {ref.shape}')
    if img.dtype != ref.dtype:
        raise ValueError(f'image types differ: {img.dtype} vs reference {ref.dtype} (MATLAB needs one class)')


def psnr(img: np.ndarray, ref: np.ndarray, data_range: Optional[float] = None) -> float:
    """MATLAB psnr(img, ref): 10*log10(L^2 / mse) with L from the class; inf for identical images."""
    _check_pair(img, ref)
    peak = matlab_data_range(img.dtype) if data_range is None else float(data_range)
    mse = np.mean((img.astype(np.float64) - ref.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def _ssim_from_moments(mu_x, mu_y, xx, yy, xy, data_range: float) -> np.ndarray:
    """SSIM map from filtered x, y, x^2, y^2, xy (equation 13 of Wang et al., C3 = C2/2).

    Works in place on its (freshly filtered) arguments: on a 1280x720x3 frame,
    allocating a temporary per operation would cost as much as the filtering.
    """
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_xy = mu_x * mu_y
    mu_x *= mu_x                    # mu_x^2
    mu_y *= mu_y                    # mu_y^2
    xx -= mu_x                      # var_x
    yy -= mu_y                      # var_y
    xy -= mu_xy                     # cov
    mu_xy *= 2
    mu_xy += c1                     # 2 mu_x mu_y + C1
    xy *= 2
    xy += c2                        # 2 cov + C2
    mu_xy *= xy                     # numerator
    mu_x += mu_y
    mu_x += c1                      # mu_x^2 + mu_y^2 + C1
    xx += yy
    xx += c2                        # var_x + var_y + C2
    mu_x *= xx                      # denominator
    mu_xy /= mu_x
    return mu_xy


def _moments(x: np.ndarray, y: np.ndarray, filt) -> tuple:
    """filt(x), filt(y), filt(x^2), filt(y^2), filt(xy): the local means SSIM needs."""
    return filt(x), filt(y), filt(x * x), filt(y * y), filt(x * y)


def ssim_map(img: np.ndarray, ref: np.ndarray, data_range: Optional[float] = None) -> np.ndarray:
    """MATLAB [~, map] = ssim(img, ref): same shape as the input, Gaussian sigma 1.5 over 2-D or 3-D."""
    _check_pair(img, ref)
    if img.ndim not in (2, 3):
        raise ValueError(f'ssim needs a 2-D or 3-D array, got shape {img.shape}')
    peak = matlab_data_range(img.dtype) if data_range is None else float(data_range)
    x, y = img.astype(np.float64), ref.astype(np.float64)
    return _ssim_from_moments(*_moments(x, y, matlab_gaussian_filter), peak)


def ssim(img: np.ndarray, ref: np.ndarray, data_range: Optional[float] = None) -> float:
    """MATLAB ssim(img, ref): mean of the SSIM map (an H x W x 3 image is a 3-D volume)."""
    return float(np.mean(ssim_map(img, ref, data_range)))


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """Y channel of MATLAB rgb2ycbcr on a uint8 (H, W, 3) RGB image, as uint8.

    MATLAB scales the BT.601 matrix by 1/255, evaluates T1*R + T2*G + T3*B + 16
    in double precision (imlincomb, left to right) and rounds half away from
    zero. The same operations in the same order are done here, so the pixels
    whose exact value is k + 0.5 round the way MATLAB's arithmetic makes them.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f'rgb_to_y needs a uint8 (H, W, 3) image, got {rgb.dtype} {rgb.shape}')
    weights = [65.481 * (1 / 255), 128.553 * (1 / 255), 24.966 * (1 / 255)]
    y = weights[0] * rgb[..., 0].astype(np.float64)
    y = y + weights[1] * rgb[..., 1]
    y = y + weights[2] * rgb[..., 2]
    y = y + 16.0
    return np.clip(np.floor(y + 0.5), 0, 255).astype(np.uint8)


def ssim_wang(img: np.ndarray, ref: np.ndarray, data_range: float = 255.0) -> float:
    """SSIM_index of Wang et al. (2004): 11x11 Gaussian (sigma 1.5), 'valid' window, mean of the map.

    img, ref: 2-D arrays of at least 11 x 11.
    """
    _check_pair(img, ref)
    if img.ndim != 2 or min(img.shape) < 11:
        raise ValueError(f'SSIM_index needs 2-D images of at least 11x11, got shape {img.shape}')
    taps = gaussian_taps(1.5, radius=5)

    def filt(image):  # 'same' filtering, then keep the pixels whose window lies inside: 'valid'
        return filter_spatial(image, taps, 'replicate')[5:-5, 5:-5]

    moments = _moments(img.astype(np.float64), ref.astype(np.float64), filt)
    return float(np.mean(_ssim_from_moments(*moments, data_range)))


def psnr_ssim_y(result: np.ndarray, target: np.ndarray) -> Tuple[float, float]:
    """The Deraining evaluation of two uint8 RGB images: PSNR (peak 255) and SSIM_index on MATLAB's Y."""
    y_res, y_tar = rgb_to_y(result), rgb_to_y(target)
    return psnr(y_res, y_tar, 255.0), ssim_wang(y_res, y_tar, 255.0)


# ---------------------------------------------------------------- RealBlur


def align_ecc(result: np.ndarray, target: np.ndarray, iterations: int = 100) -> Tuple[np.ndarray, np.ndarray,
                                                                                      np.ndarray]:
    """Align a float32 RGB result to its target as the RealBlur evaluation does.

    The result is scaled to the target's intensity (least squares), a
    homography is fitted with ECC on the grey images (100 iterations, Gaussian
    pre-filter of 5), the scaled result is warped onto the target (cubic,
    reflected border) and a mask marks the pixels that came from inside the
    result (nearest, zero border). Returns (warped result * mask,
    target * mask, mask), all float32 (H, W, 3). Raises RuntimeError when ECC fails.
    """
    z = result.astype(np.float32)
    x = target.astype(np.float32)
    scale = float(np.sum(x.astype(np.float64) * z) / np.sum(z.astype(np.float64) * z))
    zs = (scale * z).astype(np.float32)
    warp = np.eye(3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 0)
    try:
        _, warp = cv2.findTransformECC(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.cvtColor(zs, cv2.COLOR_RGB2GRAY),
                                       warp, cv2.MOTION_HOMOGRAPHY, criteria, None, 5)
    except cv2.error as err:
        raise RuntimeError(f'ECC alignment failed: {str(err).strip().splitlines()[-1]}') from err
    size = (x.shape[1], x.shape[0])
    zr = cv2.warpPerspective(zs, warp, size, flags=cv2.INTER_CUBIC + cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REFLECT)
    mask = cv2.warpPerspective(np.ones_like(zs), warp, size, flags=cv2.INTER_NEAREST + cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return zr * mask, x * mask, mask


def masked_psnr(target: np.ndarray, result: np.ndarray, mask: np.ndarray, data_range: float = 1.0) -> float:
    """10*log10(L^2 / (sum of squared errors / sum of the mask)), errors summed in float64."""
    err = np.sum((target.astype(np.float64) - result) ** 2) / np.sum(mask, dtype=np.float64)
    return math.inf if err == 0 else 10.0 * math.log10(data_range ** 2 / err)


def masked_ssim(target: np.ndarray, result: np.ndarray, mask: np.ndarray, data_range: float = 1.0) -> float:
    """RealBlur SSIM of (H, W, C) images: per-channel Gaussian SSIM map (sigma 1.5, 11 taps,
    'reflect' border, population covariance), times the mask, 5-pixel border dropped,
    sum of map / sum of mask per channel, mean over channels."""
    taps = gaussian_taps(1.5, radius=5)
    moments = _moments(target.astype(np.float64), result.astype(np.float64),
                       lambda image: filter_spatial(image, taps, 'reflect'))
    smap = _ssim_from_moments(*moments, data_range) * mask
    inner, inner_mask = smap[5:-5, 5:-5], mask[5:-5, 5:-5].astype(np.float64)
    per_channel = inner.sum(axis=(0, 1)) / inner_mask.sum(axis=(0, 1))
    return float(np.mean(per_channel))


def realblur_psnr_ssim(result: np.ndarray, target: np.ndarray) -> Tuple[float, float]:
    """PSNR and SSIM of a float32 RGB result in [0, 1] against its target after ECC alignment."""
    _check_pair(result, target)
    aligned, target_masked, mask = align_ecc(result, target)
    return (masked_psnr(target_masked, aligned, mask),
            masked_ssim(target_masked, aligned, mask))
