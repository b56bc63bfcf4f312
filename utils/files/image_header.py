"""What an image file says about itself before any pixel is decoded: its size, channels, bit
depth and EXIF orientation, from the header alone (``read_header``; TIFFs by our own parser,
everything else by Pillow). The reader (utils/files/image_io.py) refuses files by it before
decoding, the training-set check (utils/data/data_check.py) scans folders with it, and the web
page reads uploads with it.
"""
import contextlib
import io
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Optional, Tuple, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ['ImageHeader', 'read_header', 'image_size', 'require_regular_file', 'open_header', 'orientation_of',
           'exif_orientation']

_ORIENTATION_TAG = 0x0112


def require_regular_file(path: str) -> None:
    """FileNotFoundError naming `path` unless it is a regular file (or a link to one): a pipe
    would block the reader forever, and a dangling link deserves to be called one."""
    if os.path.isfile(path):
        return
    if os.path.islink(path):
        raise FileNotFoundError(f'{path} is a symbolic link to nothing (dangling or looping); fix or remove it')
    if os.path.exists(path):
        raise FileNotFoundError(f'{path} is not a regular file (a pipe, socket, device or folder); '
                                'images must be files')
    raise FileNotFoundError(f'image not found: {path}')


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says, read without decoding its pixels. width and height are as
    stored (before the EXIF orientation); bits, samples and sample_format come from TIFF headers
    (0 where the format's header was read by Pillow)."""
    width: int
    height: int
    orientation: int = 1
    bits: int = 0
    samples: int = 0
    sample_format: int = 1  # TIFF SampleFormat: 1 unsigned, 2 signed, 3 float
    format: str = ''        # 'TIFF' (our parser) or Pillow's name of the format

    @property
    def upright_size(self) -> Tuple[int, int]:
        """(width, height) as read_image returns the image, the EXIF orientation applied."""
        return (self.height, self.width) if self.orientation in (5, 6, 7, 8) else (self.width, self.height)


# Classic TIFF and BigTIFF: byte order, whether big, then the IFD layout.
_TIFF_SIGNATURES = {b'II*\0': ('<', False), b'MM\0*': ('>', False), b'II+\0': ('<', True), b'MM\0+': ('>', True)}
_TIFF_FIELD_TYPES = {1: 'B', 3: 'H', 4: 'I', 16: 'Q'}  # BYTE, SHORT, LONG, LONG8
_TIFF_TAGS = {256: 'width', 257: 'height', 258: 'bits', 274: 'orientation', 277: 'samples', 339: 'sample_format'}
_TIFF_MAX_ENTRIES = 4096


def _tiff_header(stream: BinaryIO) -> ImageHeader:
    """The first IFD of a TIFF, read by hand: Pillow refuses the headers of float and signed RGB
    TIFFs, which OpenCV decodes, and the pixel limit must see every file before it is decoded."""
    stream.seek(0)
    head = stream.read(16)
    order, big = _TIFF_SIGNATURES[head[:4]]
    count_format, entry_size, field_size = ('Q', 20, 8) if big else ('H', 12, 4)
    offset = struct.unpack_from(order + ('Q' if big else 'I'), head, 8 if big else 4)[0]
    stream.seek(offset)
    raw_count = stream.read(struct.calcsize(count_format))
    if len(raw_count) < struct.calcsize(count_format):
        raise ValueError('the TIFF directory is cut off')
    count = struct.unpack(order + count_format, raw_count)[0]
    if count > _TIFF_MAX_ENTRIES:
        raise ValueError(f'the TIFF directory claims {count} entries')
    entries = stream.read(count * entry_size)
    if len(entries) < count * entry_size:
        raise ValueError('the TIFF directory is cut off')
    values = {'orientation': 1, 'bits': 1, 'samples': 1, 'sample_format': 1, 'format': 'TIFF'}
    seen = set()
    for start in range(0, len(entries), entry_size):
        tag, kind = struct.unpack_from(order + 'HH', entries, start)
        if tag not in _TIFF_TAGS or kind not in _TIFF_FIELD_TYPES:
            continue
        if tag in seen:  # decoders disagree on which copy counts (libtiff: the first): no size to trust
            raise ValueError(f'the TIFF directory gives tag {tag} ({_TIFF_TAGS[tag]}) twice')
        seen.add(tag)
        n = struct.unpack_from(order + count_format, entries, start + 4)[0]
        field = entries[start + entry_size - field_size:start + entry_size]
        item = struct.calcsize(_TIFF_FIELD_TYPES[kind])
        if n * item > field_size:  # the values live elsewhere; the first one is enough (all samples alike)
            stream.seek(struct.unpack(order + ('Q' if big else 'I'), field)[0])
            field = stream.read(item)
            if len(field) < item:
                raise ValueError('a TIFF tag points past the end of the file')
        values[_TIFF_TAGS[tag]] = struct.unpack_from(order + _TIFF_FIELD_TYPES[kind], field)[0]
    if 'width' not in values or 'height' not in values:
        raise ValueError('the TIFF has no image width or height')
    if not 1 <= values['orientation'] <= 8:
        values['orientation'] = 1
    return ImageHeader(**values)


# No format stores a side of 2**31 pixels or more: such a size is a negative number read as unsigned
# (a BMP of width -8 reads as 4294967288) or damage, not an image to weigh against the pixel limit.
_MAX_SIDE = 2 ** 31 - 1


def read_header(source: Union[str, BinaryIO], name: Optional[str] = None) -> ImageHeader:
    """The header of an image file (a path or a binary stream), without decoding its pixels; a
    size of 0 or beyond any format's range is refused as damage (ValueError naming the file)."""
    header = _read_header(source, name)
    if not (0 < header.width <= _MAX_SIDE and 0 < header.height <= _MAX_SIDE):
        width, height = (w - 2 ** 32 if _MAX_SIDE < w < 2 ** 32 else w for w in (header.width, header.height))
        shown = name or (source if isinstance(source, str) else 'the image')
        raise ValueError(f'cannot decode image {shown}: the file is damaged or not an image (its header '
                         f'gives an impossible size, {width}x{height})')
    return header


def _read_header(source: Union[str, BinaryIO], name: Optional[str] = None) -> ImageHeader:
    """The header of an image file (a path or a binary stream), without decoding its pixels.

    TIFFs are read by ``_tiff_header``, everything else by Pillow. A header
    neither can read raises ValueError naming the file: such a file is refused,
    never handed to a decoder that would allocate whatever it claims.
    """
    if isinstance(source, str):
        require_regular_file(source)
        with open(source, 'rb') as stream:
            return _read_header(stream, name or source)
    try:
        source.seek(0)
        if source.read(4) in _TIFF_SIGNATURES:
            return _tiff_header(source)
        source.seek(0)
        with open_header(source) as pil:
            width, height = pil.size
            return ImageHeader(width, height, orientation_of(pil), format=pil.format or '')
    except UnidentifiedImageError as err:  # its text names the stream object, not the file
        raise ValueError(f'cannot decode image {name or "the image"}: the file is damaged or not an image '
                         '(its header cannot be read)') from err
    except (OSError, SyntaxError, ValueError, struct.error) as err:
        raise ValueError(f'cannot decode image {name or "the image"}: the file is damaged or not an image '
                         f'(its header cannot be read: {err or type(err).__name__})') from err


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
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(source) as pil:
            yield pil
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def exif_orientation(data: np.ndarray) -> int:
    """The EXIF orientation tag (1-8) of an encoded image's bytes; 1 (upright) when absent or unreadable."""
    try:
        return read_header(io.BytesIO(data.tobytes()), 'the image').orientation
    except ValueError:
        return 1


def image_size(path: str) -> Tuple[int, int]:
    """(width, height) of an image as utils.files.image_io.read_image will return it (EXIF orientation
    applied), from the header alone (``read_header``, the reader's own); ValueError naming the
    file when the header cannot be read."""
    return read_header(path).upright_size
