"""Clean photos for synthetic training pairs: which split a picture goes to, tiling, the filters
for pictures that are not photographs, and writing them (scripts/prepare_photos.py gathers the
pictures from their sources and calls ``prepare``).

Splits: ``train``, ``val`` and ``test`` are fixed by a hash of the picture's name
(``split_of``; every tile of a picture shares it), ``test_source`` holds every
picture of a held-out source (``Source.held_out``): a whole source no model
trains or validates on. Pictures are downscaled, cut into non-overlapping
tiles (``tiles_of``), and left out when flat, drawn (``looks_drawn``), too
small for their source, or a duplicate of one already kept.
"""
import hashlib
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from utils.files.image_io import read_image, shrink_to_fit, write_image

__all__ = ['SPLITS', 'HELD_OUT_SPLIT', 'HELD_OUT_SPLITS', 'HELD_OUT', 'DEFAULT_TILE', 'Source', 'Summary', 'split_of',
           'tile_grid', 'tiles_of', 'looks_drawn', 'read_photo', 'picture_split', 'prepare']

SPLITS = ('train', 'val', 'test', 'test_source')
HELD_OUT_SPLIT = 'test_source'
HELD_OUT_SPLITS = ('val', 'test', HELD_OUT_SPLIT)  # never trained on (training refuses a folder holding them)
# Two pictures whose 32x32 thumbnails differ by less than this (mean absolute, [0, 1]) are one picture.
DUPLICATE_THRESHOLD = 0.01
THUMBNAIL = 32
# A picture whose pixels vary less than this (standard deviation, [0, 1]) has nothing to restore.
FLAT_THRESHOLD = 0.02
# Drawing test: colours quantised to 4 bits per channel; if the 16 commonest of them cover more
# than this share of the visible pixels, the picture is flat-shaded art, not a photograph (a photo's
# gradients and grain spread it over hundreds of colours: under 0.35 on every scikit-image photo).
DRAWN_COLOUR_SHARE = 0.6
DEFAULT_TILE = 384
# The sources of the bundled demo samples (samples/make_samples.py): held out of training.
HELD_OUT = ('skimage__astronaut', 'skimage__chelsea', 'skimage__coffee', 'skimage__motorcycle_left',
            'skimage__rocket')


# ----------------------------------------------------------------------------- split and resize

def split_of(name: str, val_fraction: float, test_fraction: float = 0.0) -> str:
    """'val', 'test' or 'train' for an output file name, fixed by its SHA-256.

    The first 8 bytes as a number u in [0, 1): u < val_fraction is validation,
    then the next `test_fraction` is test, the rest training; names in HELD_OUT
    are always test. Growing a fraction only moves photos out of training.
    """
    for label, fraction in (('val_fraction', val_fraction), ('test_fraction', test_fraction)):
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f'{label} must be in [0, 1], got {fraction}')
    if val_fraction + test_fraction > 1.0:
        raise ValueError(f'val_fraction + test_fraction must be at most 1, got {val_fraction + test_fraction}')
    if name in HELD_OUT:
        return 'test'
    position = int.from_bytes(hashlib.sha256(name.encode('utf-8')).digest()[:8], 'big') / 2.0 ** 64
    if position < val_fraction:
        return 'val'
    return 'test' if position < val_fraction + test_fraction else 'train'


def thumbnail(img: np.ndarray) -> np.ndarray:
    return cv2.resize(img, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA)


def tile_grid(length: int, tile: int) -> List[Tuple[int, int]]:
    """[(start, stop)] cutting `length` pixels into floor(length / tile) (at least 1) equal-as-can-be
    runs: every pixel in exactly one, each run between `tile` and 2 * tile - 1 long (or all of a
    shorter length)."""
    count = max(1, length // tile)
    edges = [round(i * length / count) for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


def tiles_of(img: np.ndarray, tile: int) -> List[np.ndarray]:
    """Non-overlapping tiles (row by row) that together are exactly `img` (H, W, C)."""
    return [img[top:bottom, left:right] for top, bottom in tile_grid(img.shape[0], tile)
            for left, right in tile_grid(img.shape[1], tile)]


def looks_drawn(img: np.ndarray, alpha: Optional[np.ndarray] = None) -> bool:
    """Whether (H, W, 3) in [0, 1] looks like flat-shaded art: see DRAWN_COLOUR_SHARE. Only pixels
    more than half opaque count when `alpha` (H, W) is given."""
    codes = np.minimum((img * 16).astype(np.int32), 15)
    codes = (codes[..., 0] << 8) | (codes[..., 1] << 4) | codes[..., 2]
    if alpha is not None:
        codes = codes[alpha > 0.5]
    if codes.size == 0:
        return True
    counts = np.sort(np.bincount(codes.ravel(), minlength=4096))[::-1]
    return counts[:16].sum() / codes.size > DRAWN_COLOUR_SHARE


def read_alpha(path: str) -> Optional[np.ndarray]:
    """The file's alpha channel (H, W) in [0, 1] if it has see-through pixels, else None."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 3 or img.shape[2] != 4:
        return None
    alpha = img[:, :, 3].astype(np.float32) / np.iinfo(img.dtype).max
    return alpha if alpha.min() < 1.0 else None


def read_photo(path: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(H, W, 3) float32 in [0, 1] and its alpha (H, W) if it was transparent, else None.
    Transparent wallpapers are overlays for the desktop colour (read_image drops alpha, leaving
    e.g. a blank white picture), and cut-out stamps have no background: both are composited over
    black, as on a dark desktop."""
    img = read_image(path)[0]
    alpha = read_alpha(path)
    if alpha is None:
        return img, None
    return img * alpha[:, :, None], alpha


@dataclass
class Source:
    """Pictures of one origin: [(output name, file path)], and the files that license them.

    A `held_out` source goes to test_source/ whole; `min_side` and `drop_drawings` say which
    of its pictures are photographs (PackageSpec)."""
    origin: str
    pictures: List[Tuple[str, str]] = field(default_factory=list)
    licenses: List[Tuple[str, str]] = field(default_factory=list)  # (name in LICENSES/, path)
    held_out: bool = False
    min_side: int = 0
    drop_drawings: bool = False


# ----------------------------------------------------------------------------- writing

@dataclass
class Summary:
    written: Dict[str, List[str]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    kept: List[str] = field(default_factory=list)
    moved: List[str] = field(default_factory=list)
    removed: List[str] = field(default_factory=list)  # earlier outputs of a picture this run does not make
    duplicates: List[str] = field(default_factory=list)
    no_photo: List[str] = field(default_factory=list)
    composited: List[str] = field(default_factory=list)
    failed: List[str] = field(default_factory=list)
    failed_sources: List[str] = field(default_factory=list)  # sources that gave nothing (named by the caller)


def picture_split(name: str, source: Source, val_fraction: float, test_fraction: float) -> str:
    """The split of every tile of picture `name`: test_source for a held-out source, else split_of."""
    return HELD_OUT_SPLIT if source.held_out else split_of(name, val_fraction, test_fraction)


def _not_a_photo(name: str, img: np.ndarray, alpha: Optional[np.ndarray], source: Source) -> Optional[str]:
    """Why picture `name` is left out as not a photograph, or None to keep it."""
    if min(img.shape[:2]) < source.min_side:
        return f'{name} (small: {img.shape[1]}x{img.shape[0]}, under {source.min_side} px)'
    if img.std() < FLAT_THRESHOLD:
        return f'{name} (flat: standard deviation {img.std():.3f})'
    if source.drop_drawings and looks_drawn(img, alpha):
        return f'{name} (looks drawn: few flat colours)'
    return None


# What this module writes for picture <name>: <name>.png, or <name>__t<N>.png for its tiles.
_OUTPUT = re.compile(r'^(?P<picture>.+?)(?:__t\d+)?\.png$')


def _earlier_outputs(out: str) -> Dict[str, List[str]]:
    """{picture name: its files} already in the split folders of `out` (an earlier run's)."""
    found: Dict[str, List[str]] = {}
    for split in SPLITS:
        folder = os.path.join(out, split)
        for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            match = _OUTPUT.match(entry)
            if match and os.path.isfile(os.path.join(folder, entry)):
                found.setdefault(match['picture'], []).append(os.path.join(folder, entry))
    return found


def _remove_stale(earlier: List[str], made: List[str], summary: Summary) -> None:
    """Delete a picture's earlier outputs that this run did not make or keep (another --tile or
    --max_side cut it otherwise, or it is now left out), so no picture has files in two splits."""
    for path in earlier:
        if path not in made:
            os.remove(path)
            summary.removed.append(path)


def _write(out: str, split: str, name: str, img: np.ndarray, overwrite: bool, summary: Summary) -> None:
    """Write one tile as <out>/<split>/<name>.png, removing the same name from the other splits
    (a moved photo)."""
    target = os.path.join(out, split, f'{name}.png')
    for other in SPLITS:
        stale = os.path.join(out, other, f'{name}.png')
        if other != split and os.path.exists(stale):
            os.remove(stale)
            summary.moved.append(f'{name}: {other} -> {split}')
    if os.path.exists(target) and not overwrite:
        summary.kept.append(target)
        return
    write_image(target, img)
    summary.written[split].append(target)


def prepare(sources: List[Source], out: str, max_side: int, val_fraction: float,
            overwrite: bool = False, test_fraction: float = 0.0, tile: int = DEFAULT_TILE) -> Summary:
    """Write every picture of `sources`, downscaled and tiled, as <out>/<split>/<name>[__tN].png;
    see the module doc.

    An existing output is kept unless `overwrite`; one found in another split (an
    earlier run with other fractions) is removed there, and so is every earlier file of
    a picture that this run cuts otherwise (another tile or size) or leaves out, so the
    splits stay disjoint. Pictures not among `sources` are left as they are.
    """
    summary, thumbs = Summary(), []
    for split in SPLITS:
        os.makedirs(os.path.join(out, split), exist_ok=True)
    earlier = _earlier_outputs(out)
    pictures = [(source, name, path) for source in sources for name, path in sorted(source.pictures)]
    for source, name, path in tqdm(pictures, desc='photos', unit='photo'):
        try:
            img, alpha = read_photo(path)
        except (ValueError, FileNotFoundError, cv2.error) as err:
            summary.failed.append(f'{path}: {err}')
            continue
        reason = _not_a_photo(name, img, alpha, source)
        if reason is not None:
            summary.no_photo.append(reason)
            _remove_stale(earlier.get(name, []), [], summary)
            continue
        img = shrink_to_fit(img, max_side)
        if alpha is not None:
            summary.composited.append(name)
        thumb = thumbnail(img)
        twin = next((other for other, t in thumbs if np.abs(t - thumb).mean() < DUPLICATE_THRESHOLD), None)
        if twin is not None:
            summary.duplicates.append(f'{name} (same picture as {twin})')
            _remove_stale(earlier.get(name, []), [], summary)
            continue
        thumbs.append((name, thumb))
        split = picture_split(name, source, val_fraction, test_fraction)
        pieces, made = tiles_of(img, tile), []
        for index, piece in enumerate(pieces):
            tile_name = name if len(pieces) == 1 else f'{name}__t{index}'
            if piece.std() < FLAT_THRESHOLD:  # a black sky or a blank margin
                summary.no_photo.append(f'{tile_name} (flat tile: standard deviation {piece.std():.3f})')
                continue
            made.append(os.path.join(out, split, f'{tile_name}.png'))
            _write(out, split, tile_name, piece, overwrite, summary)
        _remove_stale([p for p in earlier.get(name, []) if os.path.exists(p)], made, summary)
    licenses = os.path.join(out, 'LICENSES')
    for source in sources:
        for license_name, path in source.licenses:
            os.makedirs(licenses, exist_ok=True)
            shutil.copyfile(path, os.path.join(licenses, license_name))
    return summary
