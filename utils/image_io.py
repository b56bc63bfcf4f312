"""Reading and writing images the same way everywhere (datasets, demo, test scripts).

Images are handled as float32 RGB arrays of shape (H, W, 3) in [0, 1]; 8-bit
files are divided by 255 and 16-bit files by 65535, so nothing is clipped
to 8 bits on the way in.
"""
import contextlib
import io
import os
import warnings
from typing import List, Tuple

import cv2
import numpy as np
import torch
from natsort import natsorted, ns

from utils.atomic import write_atomically

__all__ = ['IMAGE_EXTENSIONS', 'is_image_file', 'list_images', 'read_image', 'write_image',
           'image_to_tensor', 'tensor_to_image', 'to_uint8', 'shrink_to_fit', 'load_mat_array',
           'open_header', 'orientation_of', 'exif_orientation', 'apply_orientation']

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
_ORIENTATION_TAG = 0x0112

# OpenCV threads fight DataLoader workers for the same cores.
cv2.setNumThreads(0)


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not os.path.basename(name).startswith('.')


def list_images(folder: str) -> List[str]:
    """Image files directly in `folder`, in natural order of their names (img2 before img10,
    the order results, progress and reports show); other files are ignored."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'image folder not found: {folder}')
    return natsorted((os.path.join(folder, f) for f in os.listdir(folder)
                      if is_image_file(f) and os.path.isfile(os.path.join(folder, f))), alg=ns.PATH)


def read_image(path: str) -> Tuple[np.ndarray, int]:
    """Read any supported image as float32 RGB (H, W, 3) in [0, 1].

    Grayscale is repeated to three channels, palette images are expanded, and
    an alpha channel is dropped. The EXIF orientation tag is applied, so the
    array is upright as image viewers show it (``apply_orientation``). Float
    TIFFs are clipped to [0, 1] with a warning when they hold values outside.
    Returns the array and the file's bit depth (8 or 16; 32 for float TIFFs)
    so results can be written back alike.
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
    img = apply_orientation(img, exif_orientation(data))
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0, 8
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0, 16
    if img.dtype in (np.float32, np.float64):
        low, high = float(img.min()), float(img.max())
        if low < 0.0 or high > 1.0:
            warnings.warn(f'{path}: float image with values in [{low:.3g}, {high:.3g}] clipped to [0, 1] '
                          '(scale it to [0, 1] first to keep highlights)', stacklevel=2)
        return np.clip(img.astype(np.float32), 0.0, 1.0), 32
    raise ValueError(f'{path}: unsupported pixel type {img.dtype}')


_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _png_exif(stream) -> bytes:
    """The eXIf chunk of a PNG stream (b'' if none), found by stepping over the chunks by their
    lengths. Pillow's getexif() decodes the whole image to look behind IDAT, so every read_image
    of a PNG decoded it twice (4 ms more for a 1280x720 photo, as much as OpenCV's decode)."""
    stream.seek(len(_PNG_SIGNATURE))
    while True:
        head = stream.read(8)
        if len(head) < 8:
            return b''
        length, kind = int.from_bytes(head[:4], 'big'), head[4:]
        if kind == b'eXIf':
            return stream.read(length)
        if kind == b'IEND':
            return b''
        stream.seek(length + 4, io.SEEK_CUR)  # data and CRC


def orientation_of(pil) -> int:
    """The EXIF orientation tag (1-8) of an opened Pillow image, without decoding its pixels; 1
    (upright) when absent or out of range."""
    from PIL import Image
    if pil.format == 'PNG':
        exif = Image.Exif()
        raw = _png_exif(pil.fp)
        if raw:
            exif.load(raw)
    else:  # JPEG, TIFF and WebP carry EXIF in their headers, which open() has read
        exif = pil.getexif()
    value = exif.get(_ORIENTATION_TAG, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


@contextlib.contextmanager
def open_header(source):
    """Pillow's view of an image (a path or a binary stream) for its size, format and EXIF; no
    pixels may be decoded through it. Pillow's decompression-bomb limit guards decoding, so it is
    lifted here: otherwise a photo above 179 megapixels would raise instead of telling its size."""
    from PIL import Image
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(source) as pil:
            yield pil
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def exif_orientation(data: np.ndarray) -> int:
    """The EXIF orientation tag (1-8) of an encoded image's bytes; 1 (upright) when absent or unreadable."""
    from PIL import UnidentifiedImageError
    try:
        with open_header(io.BytesIO(data.tobytes())) as pil:
            return orientation_of(pil)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return 1


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, C) as stored -> as displayed, for EXIF orientation 1-8 (2: mirrored, 3: upside down,
    6: rotate 90 degrees clockwise to view, 8: counter-clockwise; 4, 5, 7: mirrored variants)."""
    transposed = img.transpose(1, 0, 2)
    views = {1: img, 2: img[:, ::-1], 3: img[::-1, ::-1], 4: img[::-1], 5: transposed,
             6: transposed[:, ::-1], 7: transposed[::-1, ::-1], 8: transposed[::-1]}
    return np.ascontiguousarray(views.get(orientation, img))


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8, clipped and rounded to the nearest level (as written to 8-bit files)."""
    return np.round(np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def shrink_to_fit(img: np.ndarray, max_side: int) -> np.ndarray:
    """(H, W, C) shrunk with area interpolation so that max(H, W) <= max_side, aspect kept;
    images already small enough come back unchanged (the same object)."""
    h, w = img.shape[:2]
    if max(h, w) <= max_side:
        return img
    scale = max_side / max(h, w)
    return cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


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
        out = to_uint8(img)
    if out.ndim == 3:
        out = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
    ext = os.path.splitext(path)[1] or '.png'
    ok, buf = cv2.imencode(ext, out)
    if not ok:
        raise ValueError(f'cannot encode image as {ext}: {path}')
    write_atomically(path, lambda f: f.write(buf.tobytes()))


def image_to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float array -> (3, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def tensor_to_image(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor -> (H, W, 3) float32 array in [0, 1]."""
    return t.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def load_mat_array(path: str, key: str) -> np.ndarray:
    """Array `key` of a MATLAB .mat file: v5 through scipy, v7.3 (HDF5) through h5py in MATLAB's axis order.

    A file that cannot be read (empty, not a .mat file, truncated) raises ValueError naming it.
    """
    import h5py
    import scipy.io
    if not os.path.isfile(path):
        raise FileNotFoundError(f'file not found: {path}')
    try:
        if h5py.is_hdf5(path):  # MATLAB v7.3 stores arrays column-major: h5py sees the axes reversed
            with h5py.File(path, 'r') as f:
                if key not in f:
                    raise KeyError(f'it has: {", ".join(f.keys())}')
                return np.asarray(f[key]).T
        data = scipy.io.loadmat(path, variable_names=[key])
    except KeyError as err:
        raise ValueError(f'{path} has no variable {key!r} ({err.args[0]})') from err
    except Exception as err:  # scipy and h5py raise MatReadError, ValueError, OSError... on damaged files
        reason = ' '.join(str(err).split()) or type(err).__name__
        raise ValueError(f'cannot read {path} as a .mat file ({reason}): it is empty, damaged or partly '
                         'downloaded') from err
    if key not in data:
        raise ValueError(f'{path} has no variable {key!r}')
    return data[key]
