"""Prepare clean photos for synthetic training pairs, from sources that need no image host.

Sources (DEBIAN_SOURCES; every one freely licensed):
- scikit-image's bundled photographs (installed with the package; no download);
- Debian packages with photographs, fetched with ``apt-get download`` and
  unpacked with ``dpkg -x`` into a temporary folder (nothing is installed):
  four wallpaper packages, Extreme Tux Racer's photographic terrain textures
  and sky boxes, Tux Paint's photographed stamps (animals, food, buildings,
  vehicles, ...), and Stellarium's landscape panoramas. Only the folders a
  package keeps its photographs in are read, and from some packages only
  pictures of a minimum size (icons are not photos) that do not look drawn.
  On a fresh machine the package lists are empty: run ``apt-get update`` first
  (as root), or pass --apt_update to let this script do it.
- Two packages are reserved for an independent evaluation and are refused
  wherever they are named (RESERVED_PACKAGES).

Every picture is read, downscaled so its longest side is at most --max_side
(area interpolation; smaller ones are kept as they are), cut into
non-overlapping tiles of about --tile pixels (each tile counts as one photo;
a picture smaller than two tiles stays whole), and written as PNG to
``<out>/train``, ``<out>/val``, ``<out>/test`` or ``<out>/test_source``:
- ``test_source`` holds every picture of the held-out sources
  (HELD_OUT_SOURCES, Stellarium's panoramas): a whole source the models never
  see, to judge how they do on photos unlike the training ones;
- the others are split by a hash of the picture's name (all tiles of one
  picture share it), so the split never changes between runs or machines and
  adding photos moves none. The photos that samples/make_samples.py degrades
  for the demo are always in ``test``: the bundled weights never train on what
  the demo shows. ``test`` is for judging trained models on photos they have
  never seen (scripts/evaluate_synthetic.py); validation picks the best epoch,
  so it is not.
The same picture shipped at several resolutions is kept once; transparent
overlays are composited over black; flat pictures (and flat tiles) are left
out and listed. The packages' copyright files go to ``<out>/LICENSES``.

    python scripts/prepare_photos.py --out Datasets/photos
    python Deblurring/train.py TRAINING.SYNTHETIC deblur TRAINING.TRAIN_DIR Datasets/photos/train \\
        TRAINING.VAL_DIR Datasets/photos/val
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils.files.image_io import is_image_file, read_image, shrink_to_fit, write_image  # noqa: E402

SPLITS = ('train', 'val', 'test', 'test_source')
HELD_OUT_SPLIT = 'test_source'


@dataclass(frozen=True)
class PackageSpec:
    """Where a Debian package keeps its photographs and which of its pictures are photos."""
    package: str
    folders: Tuple[str, ...] = ('',)  # path prefixes inside the package; '' is all of it
    min_side: int = 0                 # shorter side below this: an icon or a sprite, not a photo
    drop_drawings: bool = False       # leave out pictures that look drawn (looks_drawn)


DEBIAN_SOURCES = (
    PackageSpec('lomiri-wallpapers-16.04'),
    PackageSpec('lomiri-wallpapers-20.04'),
    PackageSpec('mate-backgrounds'),
    PackageSpec('ukui-wallpapers'),
    # Photographic ground textures (grass, rock, pebbles, bricks, snow) and mountain sky boxes.
    PackageSpec('extremetuxracer-data', ('usr/share/games/etr/terrains', 'usr/share/games/etr/env'), min_side=128),
    # Photographed animals, food, buildings and objects, cut out over transparency; many stamps
    # are cartoons, left out by the drawing test.
    PackageSpec('tuxpaint-stamps-default', ('usr/share/tuxpaint/stamps',), min_side=128, drop_drawings=True),
    # Landscape panoramas (fields, flowers, trees, snow, sea): the held-out source.
    PackageSpec('stellarium-data', ('usr/share/stellarium/landscapes',), min_side=256),
)
DEBIAN_PACKAGES = tuple(spec.package for spec in DEBIAN_SOURCES)
# Whole sources judged on but never trained or validated on (written to test_source/).
HELD_OUT_SOURCES = ('stellarium-data',)
# Reserved for an independent evaluation of this project: never read for training, validation or testing.
RESERVED_PACKAGES = ('opencv-doc', 'plasma-workspace-wallpapers')
# scikit-image's bundled natural photographs. Left out: drawings, text, microscopy and medical
# images, an already motion-blurred photo (clock_motion) and the right view of the stereo pair
# (nearly the left one, which could otherwise land in both splits).
SKIMAGE_PHOTOS = ('astronaut.png', 'brick.png', 'camera.png', 'chelsea.png', 'coffee.png', 'coins.png',
                  'grass.png', 'gravel.png', 'hubble_deep_field.jpg', 'moon.png', 'motorcycle_left.png',
                  'rocket.jpg')
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


# ----------------------------------------------------------------------------- sources

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


class ReservedPackageError(ValueError):
    """A package kept for the independent evaluation was asked for."""


def check_not_reserved(package: str) -> None:
    """Raise ReservedPackageError for a package in RESERVED_PACKAGES."""
    if package in RESERVED_PACKAGES:
        raise ReservedPackageError(f'package {package} is reserved for an independent evaluation of this project '
                                   f'and is never used for training, validation or testing; leave it out')


def package_spec(package: str) -> PackageSpec:
    """The PackageSpec of a known package; a package not in DEBIAN_SOURCES is read whole."""
    check_not_reserved(package)
    return next((spec for spec in DEBIAN_SOURCES if spec.package == package), PackageSpec(package))


def _clean(text: str) -> str:
    return ''.join(c if c.isalnum() or c in '-_.' else '_' for c in text)


def skimage_source() -> Source:
    """scikit-image's bundled photographs, read from the installed package (no network)."""
    # Deliberately lazy: scikit-image's import is slow and only this source of photos needs it.
    import skimage
    from skimage import data
    source = Source('scikit-image')
    for filename in SKIMAGE_PHOTOS:
        path = os.path.join(data.data_dir, filename)
        if os.path.isfile(path):
            source.pictures.append((f'skimage__{os.path.splitext(filename)[0]}', path))
        else:
            print(f'scikit-image {skimage.__version__} has no bundled {filename}: skipped', file=sys.stderr)
    readme = os.path.join(data.data_dir, 'README.txt')
    if os.path.isfile(readme):
        source.licenses.append(('scikit-image-data.txt', readme))
    return source


def _run(command: List[str], cwd: Optional[str] = None) -> Tuple[bool, str]:
    """Run a command; (succeeded, its last output lines)."""
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        return False, f'{command[0]} not found: this needs a Debian or Ubuntu system (or use --skip_debian)'
    tail = '\n'.join((done.stdout + done.stderr).strip().splitlines()[-3:])
    return done.returncode == 0, tail


def apt_update() -> None:
    ok, output = _run(['apt-get', 'update'])
    if not ok:
        print(f'apt-get update failed (it needs root):\n{output}', file=sys.stderr)


def _cached_deb(package: str, deb_dir: Optional[str]) -> Optional[str]:
    """A .deb of `package` already in `deb_dir` (apt-get download names it <package>_<version>_<arch>.deb)."""
    if not deb_dir or not os.path.isdir(deb_dir):
        return None
    found = sorted(f for f in os.listdir(deb_dir) if f.startswith(f'{package}_') and f.endswith('.deb'))
    return os.path.join(deb_dir, found[-1]) if found else None


def debian_source(package: str, workdir: str, deb_dir: Optional[str] = None) -> Optional[Source]:
    """Download (into `deb_dir` if given, once) and unpack one package into `workdir`; None
    (reported) if that fails. Only the folders of its PackageSpec are read; a reserved package is
    refused before anything is fetched."""
    spec = package_spec(package)
    folder = os.path.join(workdir, package)
    os.makedirs(folder, exist_ok=True)
    ok, output = True, ''
    deb = _cached_deb(package, deb_dir)
    if deb is None:
        download_to = deb_dir or folder
        os.makedirs(download_to, exist_ok=True)
        ok, output = _run(['apt-get', 'download', package], cwd=download_to)
        deb = _cached_deb(package, download_to)
    debs = [deb] if deb else []
    if not ok or not debs:
        hint = (' Check the name; on a fresh machine the package lists are empty: run apt-get update '
                'first (as root) or pass --apt_update.'
                if 'Unable to locate' in output or "Can't select" in output else '')
        tqdm.write(f'package {package} not available, skipped: {output}.{hint}', file=sys.stderr)
        return None
    tree = os.path.join(folder, 'tree')
    ok, output = _run(['dpkg', '-x', debs[0], tree])
    if not ok:
        tqdm.write(f'cannot unpack {os.path.basename(debs[0])}, skipped: {output}', file=sys.stderr)
        return None
    source = Source(package, held_out=package in HELD_OUT_SOURCES, min_side=spec.min_side,
                    drop_drawings=spec.drop_drawings)
    used = set()
    for root, dirs, files in os.walk(tree):
        dirs.sort()
        inside = os.path.relpath(root, tree).replace(os.sep, '/')
        for filename in sorted(files):
            if not is_image_file(filename) or not any(
                    (inside + '/').startswith(prefix.rstrip('/') + '/') or not prefix for prefix in spec.folders):
                continue
            stem = _clean(os.path.splitext(filename)[0])
            name = f'{package}__{stem}'
            if name in used:  # the same file name in two folders of one package
                name = f'{package}__{_clean(os.path.basename(root))}_{stem}'
            used.add(name)
            source.pictures.append((name, os.path.join(root, filename)))
    copyright_file = os.path.join(tree, 'usr', 'share', 'doc', package, 'copyright')
    if os.path.isfile(copyright_file):
        source.licenses.append((f'{package}.copyright', copyright_file))
    if not source.pictures:
        tqdm.write(f'package {package} holds no pictures', file=sys.stderr)
    return source


# ----------------------------------------------------------------------------- writing

@dataclass
class Summary:
    written: Dict[str, List[str]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    kept: List[str] = field(default_factory=list)
    moved: List[str] = field(default_factory=list)
    duplicates: List[str] = field(default_factory=list)
    no_photo: List[str] = field(default_factory=list)
    composited: List[str] = field(default_factory=list)
    failed: List[str] = field(default_factory=list)


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


def _write(target: str, img: np.ndarray, out: str, overwrite: bool, summary: Summary) -> None:
    """Write one tile to `target`, removing the same name from the other splits (a moved photo)."""
    name, split = os.path.splitext(os.path.basename(target))[0], os.path.basename(os.path.dirname(target))
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
    earlier run with other fractions) is removed there, so the splits stay disjoint.
    """
    summary, thumbs = Summary(), []
    for split in SPLITS:
        os.makedirs(os.path.join(out, split), exist_ok=True)
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
            continue
        img = shrink_to_fit(img, max_side)
        if alpha is not None:
            summary.composited.append(name)
        thumb = thumbnail(img)
        twin = next((other for other, t in thumbs if np.abs(t - thumb).mean() < DUPLICATE_THRESHOLD), None)
        if twin is not None:
            summary.duplicates.append(f'{name} (same picture as {twin})')
            continue
        thumbs.append((name, thumb))
        split = picture_split(name, source, val_fraction, test_fraction)
        pieces = tiles_of(img, tile)
        for index, piece in enumerate(pieces):
            tile_name = name if len(pieces) == 1 else f'{name}__t{index}'
            if piece.std() < FLAT_THRESHOLD:  # a black sky or a blank margin
                summary.no_photo.append(f'{tile_name} (flat tile: standard deviation {piece.std():.3f})')
                continue
            _write(os.path.join(out, split, f'{tile_name}.png'), piece, out, overwrite, summary)
    licenses = os.path.join(out, 'LICENSES')
    for source in sources:
        for license_name, path in source.licenses:
            os.makedirs(licenses, exist_ok=True)
            shutil.copyfile(path, os.path.join(licenses, license_name))
    return summary


def folder_stats(folder: str) -> Tuple[int, int]:
    """(number of PNG files, their total bytes) in `folder`."""
    files = [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith('.png')]
    return len(files), sum(os.path.getsize(f) for f in files)


def print_summary(summary: Summary, out: str, failed_packages: List[str]) -> None:
    if summary.kept:
        print(f'{len(summary.kept)} photos already in {out} kept (use --overwrite to redo them)')
    for label, items in (('moved to another split', summary.moved),
                         ('transparent, composited over black', summary.composited),
                         ('duplicates left out', summary.duplicates), ('not photos, left out', summary.no_photo),
                         ('unreadable, left out', summary.failed)):
        if items:
            print(f'{len(items)} {label}:\n  ' + '\n  '.join(items))
    if failed_packages:
        print(f'packages skipped: {", ".join(failed_packages)}')
    for split in SPLITS:
        count, size = folder_stats(os.path.join(out, split))
        print(f'{os.path.join(out, split)}: {count} photos, {size / 2 ** 20:.1f} MiB '
              f'({len(summary.written[split])} written now)')
        if count == 0:
            print(f'warning: {os.path.join(out, split)} is empty; training needs photos in both folders: '
                  'add sources or change --val_fraction', file=sys.stderr)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--out', default='Datasets/photos', help='output folder; gets train/, val/, test/ and LICENSES/')
    p.add_argument('--max_side', type=int, default=1024, help='longest side of the written photos, in pixels')
    p.add_argument('--val_fraction', type=float, default=0.1,
                   help='share of photos set aside for validation (by a hash of the name, so fixed)')
    p.add_argument('--test_fraction', type=float, default=0.1,
                   help='share of photos held out for judging trained models (by the same hash; the '
                        'sources of the demo samples are always held out)')
    p.add_argument('--tile', type=int, default=DEFAULT_TILE,
                   help='cut pictures into non-overlapping tiles of about this many pixels (each counts as a photo)')
    p.add_argument('--packages', nargs='+', default=list(DEBIAN_PACKAGES),
                   help='Debian packages to take photos from (known ones read only their photo folders; '
                        f'{" and ".join(RESERVED_PACKAGES)} are reserved and refused)')
    p.add_argument('--skip_debian', action='store_true', help="only scikit-image's photos; no apt-get")
    p.add_argument('--deb_dir', default=None,
                   help='keep the downloaded .deb files here and reuse them on the next run (default: download '
                        'into a temporary folder every time)')
    p.add_argument('--apt_update', action='store_true', help='run apt-get update (needs root) before downloading')
    p.add_argument('--overwrite', action='store_true', help='rewrite photos already in --out')
    args = p.parse_args(argv)
    if args.max_side < 64:
        p.error(f'--max_side {args.max_side} is too small for training patches; use at least 64')
    if args.tile < 64:
        p.error(f'--tile {args.tile} is too small for training patches; use at least 64')
    reserved = [package for package in args.packages if package in RESERVED_PACKAGES]
    if reserved:
        p.error(f'--packages: {", ".join(reserved)} reserved for an independent evaluation of this project; '
                'they are never used for training, validation or testing')
    if not (0.0 <= args.val_fraction <= 1.0 and 0.0 <= args.test_fraction <= 1.0
            and args.val_fraction + args.test_fraction <= 1.0):
        p.error(f'--val_fraction and --test_fraction must be in [0, 1] with a sum of at most 1, got '
                f'{args.val_fraction} and {args.test_fraction}')
    return args


def main(argv=None) -> Summary:
    args = parse_args(argv)
    sources, failed_packages = [skimage_source()], []
    with tempfile.TemporaryDirectory(prefix='prepare_photos_') as workdir:
        if not args.skip_debian:
            if args.apt_update:
                apt_update()
            for package in tqdm(args.packages, desc='packages', unit='package'):
                source = debian_source(package, workdir, args.deb_dir)
                if source is None:
                    failed_packages.append(package)
                else:
                    sources.append(source)
        summary = prepare(sources, args.out, args.max_side, args.val_fraction, args.overwrite, args.test_fraction,
                          args.tile)
    print_summary(summary, args.out, failed_packages)
    return summary


if __name__ == '__main__':
    main()
