"""Reading and writing images the same way everywhere (datasets, demo, test scripts).

Images are handled as float32 RGB arrays of shape (H, W, 3) in [0, 1]; 8-bit
files are divided by 255 and 16-bit files by 65535, so nothing is clipped
to 8 bits on the way in.
"""
import os
import tempfile
from typing import List, Tuple

import cv2
import numpy as np
import torch

__all__ = ['IMAGE_EXTENSIONS', 'is_image_file', 'list_images', 'read_image', 'write_image',
           'image_to_tensor', 'tensor_to_image', 'load_mat_array']

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')

# The process's umask, read once at import (reading it means setting it, which is not thread-safe):
# results get the usual permissions rather than mkstemp's 0600.
_UMASK = os.umask(0o022)
os.umask(_UMASK)

# OpenCV threads fight DataLoader workers for the same cores.
cv2.setNumThreads(0)


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not os.path.basename(name).startswith('.')


def list_images(folder: str) -> List[str]:
    """Image files directly in `folder`, sorted by name; other files are ignored."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'image folder not found: {folder}')
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if is_image_file(f) and os.path.isfile(os.path.join(folder, f)))


def read_image(path: str) -> Tuple[np.ndarray, int]:
    """Read any supported image as float32 RGB (H, W, 3) in [0, 1].

    Grayscale is repeated to three channels, palette images are expanded, and
    an alpha channel is dropped. Returns the array and the file's bit depth
    (8 or 16; 32 for float TIFFs) so results can be written back alike.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'image not found: {path}')
    data = np.fromfile(path, dtype=np.uint8)  # works for any path encoding
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise ValueError(f'cannot decode image {path}: the file is damaged or not an image')
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    if channels == 1:
        img = np.repeat(img, 3, axis=2)
    elif channels == 2:  # gray + alpha
        img = np.repeat(img[:, :, :1], 3, axis=2)
    elif channels in (3, 4):
        img = cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]), cv2.COLOR_BGR2RGB)
    else:
        raise ValueError(f'{path}: {channels}-channel images are not supported')
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0, 8
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0, 16
    if img.dtype in (np.float32, np.float64):
        return np.clip(img.astype(np.float32), 0.0, 1.0), 32
    raise ValueError(f'{path}: unsupported pixel type {img.dtype}')


def write_image(path: str, img: np.ndarray, bit_depth: int = 8) -> None:
    """Write float RGB (H, W, 3) in [0, 1] as an 8- or 16-bit image (rounded, clipped).

    The format follows the file extension; 16 bits need PNG or TIFF. The file
    appears whole or not at all: it is written under a temporary name in the same
    folder and renamed (an interrupted run never leaves half an image).
    """
    img = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
    if bit_depth == 16:
        if not path.lower().endswith(('.png', '.tif', '.tiff')):
            raise ValueError(f'{path}: 16-bit output needs a .png or .tif name')
        out = np.round(img * 65535.0).astype(np.uint16)
    else:
        out = np.round(img * 255.0).astype(np.uint8)
    if out.ndim == 3:
        out = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
    ext = os.path.splitext(path)[1] or '.png'
    ok, buf = cv2.imencode(ext, out)
    if not ok:
        raise ValueError(f'cannot encode image as {ext}: {path}')
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(buf.tobytes())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def image_to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float array -> (3, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def tensor_to_image(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor -> (H, W, 3) float32 array in [0, 1]."""
    return t.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def load_mat_array(path: str, key: str) -> np.ndarray:
    """Array `key` of a MATLAB .mat file: v5 through scipy, v7.3 (HDF5) through h5py in MATLAB's axis order."""
    import h5py
    import scipy.io
    if not os.path.isfile(path):
        raise FileNotFoundError(f'file not found: {path}')
    if h5py.is_hdf5(path):  # MATLAB v7.3 stores arrays column-major: h5py sees the axes reversed
        with h5py.File(path, 'r') as f:
            if key not in f:
                raise ValueError(f'{path} has no variable {key!r} (it has: {", ".join(f.keys())})')
            return np.asarray(f[key]).T
    try:
        data = scipy.io.loadmat(path, variable_names=[key])
    except ValueError as err:
        raise ValueError(f'cannot read {path} as a .mat file: {err}') from err
    if key not in data:
        raise ValueError(f'{path} has no variable {key!r}')
    return data[key]
