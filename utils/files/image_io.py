"""Reading and writing images the same way everywhere (datasets, demo, test scripts).

Images are handled as float32 RGB arrays of shape (H, W, 3) in [0, 1]. Every
pixel type a decoder can return is converted by one rule, or refused by name:

- unsigned integers are divided by their type's maximum (8-bit by 255, 16-bit
  by 65535, 32-bit by 2**32 - 1), so nothing is clipped to 8 bits on the way in;
- signed integers are divided by their positive maximum (int16 by 32767);
  negative values are clipped to 0, with a warning;
- floats are taken as [0, 1]: values outside are clipped, with a warning, and
  NaN or infinite values refuse the file;
- gray is repeated to three channels, gray+alpha and RGBA lose their alpha;
  more than four channels refuse the file, as do TIFFs OpenCV cannot decode
  faithfully (float16, 16-bit gray+alpha: see ``_refuse_undecodable``).

Before any pixel is decoded the header is read (``read_header`` of
utils/files/image_header.py) and the image
is refused if its header cannot be read or it has more than the reader's
pixel limit (``DEFAULT_MAX_MEGAPIXELS``, raised with --max_megapixels),
whatever its extension claims.
"""
import functools
import io
import os
import warnings
from typing import List, Optional, Tuple

import cv2
import numpy as np
import torch
from natsort import natsorted, ns

from utils.files.atomic import write_atomically
from utils.files.image_header import ImageHeader, read_header, require_regular_file

__all__ = ['IMAGE_EXTENSIONS', 'DEFAULT_MAX_MEGAPIXELS', 'ImageTooLargeError', 'check_pixel_limit', 'is_image_file',
           'list_images', 'read_image', 'write_image', 'image_to_tensor', 'tensor_to_image', 'to_uint8',
           'shrink_to_fit', 'load_mat_array', 'apply_orientation', 'encoded_budget']

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
# The reader's pixel limit: a 100-megapixel photo (e.g. 11648x8736) passes; a header claiming
# 20000x20000 does not. read_image(max_megapixels=) and the --max_megapixels options change it.
DEFAULT_MAX_MEGAPIXELS = 150.0
METADATA_BYTES = 64 * 2 ** 20  # what a file may hold beside its pixels (``encoded_budget``)
MAX_JPEG_SCANS = 256  # progressive JPEGs: each scan is a pass over the whole image (``_refuse_costly``)

# OpenCV threads fight DataLoader workers for the same cores.
cv2.setNumThreads(0)


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not os.path.basename(name).startswith('.')


def list_images(folder: str) -> List[str]:
    """Entries directly in `folder` with an image name, in natural order of their names (img2
    before img10, the order results, progress and reports show); other files and folders are
    ignored. Image names that are not regular files (dangling or looping symbolic links, pipes)
    are listed too, so the readers refuse them by name (``require_regular_file``) instead of
    their vanishing from the count."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'image folder not found: {folder}')
    return natsorted((os.path.join(folder, f) for f in os.listdir(folder)
                      if is_image_file(f) and not os.path.isdir(os.path.join(folder, f))), alg=ns.PATH)


class ImageTooLargeError(ValueError):
    """An image with more pixels than the reader's limit, found from its header before decoding."""

    def __init__(self, path: str, width: int, height: int, max_megapixels: float,
                 advice: str = 'pass --max_megapixels to raise it if the memory allows'):
        self.path, self.width, self.height, self.max_megapixels = path, width, height, max_megapixels
        super().__init__(f'{path} is {width}x{height} ({self.megapixels:.1f} megapixels), more than the limit of '
                         f'{max_megapixels:g}; {advice}')

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


def check_pixel_limit(path: str, width: int, height: int, max_megapixels: Optional[float],
                      advice: Optional[str] = None) -> None:
    """ImageTooLargeError when width x height is above `max_megapixels` (None: no limit); `advice`
    replaces the command-line advice where there is no --max_megapixels (training)."""
    if max_megapixels is not None and width * height > max_megapixels * 1e6:
        raise ImageTooLargeError(path, width, height, max_megapixels, *([advice] if advice else []))


def _too_many_channels(path: str, channels: int) -> str:
    return (f'{path} has {channels} channels per pixel; gray, gray+alpha, RGB and RGBA are read: save it with '
            'at most four channels')


def _refuse_undecodable(path: str, header: ImageHeader) -> None:
    """Valid TIFFs OpenCV cannot decode faithfully, refused by what they are rather than called
    damaged: more than four channels, float16 samples, and 16-bit gray + alpha (OpenCV gives 8 bits)."""
    if header.samples > 4:
        raise ValueError(_too_many_channels(path, header.samples))
    if header.sample_format == 3 and header.bits == 16:
        raise ValueError(f'{path} holds float16 samples, which OpenCV cannot decode: save it as float32 or '
                         '16-bit integers')
    if header.samples == 2 and header.bits > 8:
        raise ValueError(f'{path} is {header.bits}-bit gray + alpha, which OpenCV decodes as 8 bits only: save '
                         'it without alpha (16-bit gray) or as 16-bit RGBA to keep its depth')


def _refuse_costly(path: str, header: ImageHeader, data: np.ndarray) -> None:
    """Files whose decoding costs far more than their pixels: a progressive JPEG decodes each scan
    over the whole image, and one of a few MB can repeat a scan tens of thousands of times (hours
    of work). Encoders write about 10 scans; more than MAX_JPEG_SCANS are refused. Each scan
    starts with the SOS marker FF DA, which entropy-coded data never holds (it stuffs FF as FF 00)."""
    if header.format in ('JPEG', 'MPO'):
        scans = data.tobytes().count(b'\xff\xda')
        if scans > MAX_JPEG_SCANS:
            raise ValueError(f'{path} is a JPEG of {scans} scans (encoders write about 10): decoding it would take '
                             f'minutes to hours; more than {MAX_JPEG_SCANS} are refused, save it again')


def _to_unit_range(img: np.ndarray, path: str) -> Tuple[np.ndarray, int]:
    """Any pixel type -> (float32 in [0, 1], bits per sample), by the rule in the module docstring."""
    kind, bits = img.dtype, img.dtype.itemsize * 8
    if kind == np.uint8:
        return img.astype(np.float32) / 255.0, 8
    if np.issubdtype(kind, np.floating):
        if not np.isfinite(img).all():
            raise ValueError(f'{path} holds NaN or infinite values; replace them before restoring')
        low, high = float(img.min()), float(img.max())
        if low < 0.0 or high > 1.0:
            warnings.warn(f'{path}: float image with values in [{low:.3g}, {high:.3g}] clipped to [0, 1] '
                          '(scale it to [0, 1] first to keep highlights)', stacklevel=3)
        return np.clip(img.astype(np.float32), 0.0, 1.0), bits
    if np.issubdtype(kind, np.integer):
        top = np.iinfo(kind).max
        if np.iinfo(kind).min < 0 and int(img.min()) < 0:
            warnings.warn(f'{path}: signed image with negative values, clipped to 0', stacklevel=3)
            img = np.clip(img, 0, None)
        # float64 for the division: float32 cannot tell 32-bit levels apart.
        return (img.astype(np.float64 if bits > 16 else np.float32) / top).astype(np.float32), bits
    raise ValueError(f'{path}: pixel type {kind} is not supported; save it as 8- or 16-bit integers or floats')


def read_image(path: str, max_megapixels: Optional[float] = DEFAULT_MAX_MEGAPIXELS) -> Tuple[np.ndarray, int]:
    """Read any supported image as float32 RGB (H, W, 3) in [0, 1].

    The header is read first (``read_header``): a file whose header cannot be
    read is refused, and so is one with more than `max_megapixels` (None: no
    limit), before anything is decoded. Grayscale is repeated to three
    channels, palette images are expanded, and an alpha channel is dropped.
    The EXIF orientation tag is applied, so the array is upright as image
    viewers show it (``apply_orientation``). Pixel types are converted as the
    module docstring says. Returns the array and the file's bits per sample
    (8 or 16 for ordinary files; 32 or 64 for float and 32-bit TIFFs) so
    results can be written back alike. Every refusal is a ValueError (or
    FileNotFoundError) naming the file.
    """
    require_regular_file(path)
    size = os.path.getsize(path)
    if not size:
        raise ValueError(f'{path} is empty (0 bytes); it is not an image')
    header = read_header(path)  # from the file itself: nothing but the header is read yet
    check_pixel_limit(path, header.width, header.height, max_megapixels)
    _refuse_undecodable(path, header)
    budget = encoded_budget(header)
    data = np.fromfile(path, dtype=np.uint8, count=min(size, budget))  # works for any path encoding
    _refuse_costly(path, header, data)
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        img = None
        cv2_error = str(err).strip().splitlines()[-1]
    else:
        cv2_error = ''
    if img is None and size > budget:
        raise ValueError(f'{path} is {size / 2 ** 20:.0f} MiB, more than the pixels its header gives '
                         f'({header.width}x{header.height}) can fill, and its first {budget / 2 ** 20:.0f} MiB hold '
                         'no whole image; it is damaged or holds something else')
    if img is None:
        raise ValueError(f'cannot decode image {path}: the file is damaged or not an image'
                         + (f' ({cv2_error})' if cv2_error else ''))
    # OpenCV 5's TIFF decoder turns the image upright itself, 4.x's does not: apply it only once.
    orientation = 1 if header.format == 'TIFF' and decoder_applies_tiff_orientation() else header.orientation
    width, height = header.upright_size if orientation != header.orientation else (header.width, header.height)
    if img.shape[:2] != (height, width):  # the limit was checked on what the header said
        raise ValueError(f'{path}: the header says {width}x{height} but it decodes as '
                         f'{img.shape[1]}x{img.shape[0]}; the file is damaged')
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    if channels in (1, 2):  # gray, gray + alpha
        img = np.repeat(img[:, :, :1], 3, axis=2)
    elif channels in (3, 4):  # BGR(A) -> RGB by indexing: cvtColor refuses 64-bit and signed types
        img = np.ascontiguousarray(img[:, :, 2::-1])
    else:
        raise ValueError(_too_many_channels(path, channels))
    return _to_unit_range(apply_orientation(img, orientation), path)


@functools.lru_cache(maxsize=None)
def decoder_applies_tiff_orientation() -> bool:
    """Whether this OpenCV's TIFF decoder applies the Orientation tag itself (5.x does, 4.x does
    not), found once by decoding a 2x1 TIFF stored mirrored (orientation 2) rather than by version."""
    from PIL import Image  # deliberately lazy: only TIFFs need the probe
    buf = io.BytesIO()
    Image.fromarray(np.array([[0, 255]], np.uint8)).save(buf, 'TIFF', tiffinfo={274: 2})
    img = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_UNCHANGED)
    return img is not None and int(img.reshape(-1)[0]) == 255


def encoded_budget(header: ImageHeader) -> int:
    """The most bytes of a file ``read_image`` reads: twice its pixels uncompressed (the header's
    samples and bits, else 4 samples of 16 bits), plus METADATA_BYTES for EXIF, colour profiles
    and embedded previews. A decoder stops at the image's end, so a file padded beyond this
    (a valid small image, then gigabytes) costs this much memory, not its size."""
    samples, bits = header.samples or 4, max(header.bits, 8) if header.format == 'TIFF' else 16
    return 2 * header.width * header.height * samples * bits // 8 + METADATA_BYTES


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


def write_image(path: str, img: np.ndarray, bit_depth: int = 8, replace: bool = True) -> None:
    """Write float RGB (H, W, 3) in [0, 1] as an 8- or 16-bit image (rounded, clipped); uint8 RGB
    is written as it is at 8 bits.

    The format follows the file extension; 16 bits need PNG or TIFF. The file
    appears whole or not at all: it is written under a temporary name in the same
    folder and renamed (an interrupted run never leaves half an image). `replace` False keeps a
    file that appeared at `path` meanwhile and raises ``OutputAppearedError`` instead.
    """
    if isinstance(img, np.ndarray) and img.dtype == np.uint8 and bit_depth == 8:
        out = img  # already 8 bits (a comparison picture): no float copy of a large picture
    elif bit_depth == 16:
        img = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
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
    write_atomically(path, lambda f: f.write(buf.tobytes()), replace=replace)


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
    # Deliberately lazy: only the SIDD/DND .mat files need h5py and scipy.io, and loading both
    # would slow the start of every script that reads images.
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
