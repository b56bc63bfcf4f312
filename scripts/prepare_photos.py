"""Prepare clean photos for synthetic training pairs, from sources that need no image host.

Sources:
- scikit-image's bundled photographs (installed with the package; no download);
- Debian's freely licensed wallpaper packages, fetched with ``apt-get download``
  and unpacked with ``dpkg -x`` into a temporary folder (nothing is installed).
  On a fresh machine the package lists are empty: run ``apt-get update`` first
  (as root), or pass --apt_update to let this script do it.

Every picture is read, downscaled so its longest side is at most --max_side
(area interpolation; smaller ones are kept as they are), and written as PNG to
``<out>/train``, ``<out>/val`` or ``<out>/test``. The split is fixed by a hash of
the output name, so it never changes between runs or machines and adding photos
moves none. The photos that samples/make_samples.py degrades for the demo are
always in ``test``: the bundled weights never train on what the demo shows.
``test`` is for judging trained models on photos they have never seen
(scripts/evaluate_synthetic.py); validation picks the best epoch, so it is not.
The same picture shipped at several resolutions is kept once; transparent
overlays are composited over black; flat pictures are left out (and listed). The packages'
copyright files go to ``<out>/LICENSES``.

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
from utils.image_io import is_image_file, read_image, shrink_to_fit, write_image  # noqa: E402

SPLITS = ('train', 'val', 'test')
DEBIAN_PACKAGES = ('lomiri-wallpapers-16.04', 'lomiri-wallpapers-20.04', 'mate-backgrounds', 'ukui-wallpapers')
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


def read_alpha(path: str) -> Optional[np.ndarray]:
    """The file's alpha channel (H, W) in [0, 1] if it has see-through pixels, else None."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 3 or img.shape[2] != 4:
        return None
    alpha = img[:, :, 3].astype(np.float32) / np.iinfo(img.dtype).max
    return alpha if alpha.min() < 1.0 else None


def read_photo(path: str) -> Tuple[np.ndarray, bool]:
    """(H, W, 3) float32 in [0, 1] and whether it was transparent. Transparent wallpapers are
    overlays for the desktop colour (read_image drops alpha, leaving e.g. a blank white
    picture), so they are composited over black, as on a dark desktop."""
    img = read_image(path)[0]
    alpha = read_alpha(path)
    if alpha is None:
        return img, False
    return img * alpha[:, :, None], True


# ----------------------------------------------------------------------------- sources

@dataclass
class Source:
    """Pictures of one origin: [(output name, file path)], and the files that license them."""
    origin: str
    pictures: List[Tuple[str, str]] = field(default_factory=list)
    licenses: List[Tuple[str, str]] = field(default_factory=list)  # (name in LICENSES/, path)


def _clean(text: str) -> str:
    return ''.join(c if c.isalnum() or c in '-_.' else '_' for c in text)


def skimage_source() -> Source:
    """scikit-image's bundled photographs, read from the installed package (no network)."""
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


def debian_source(package: str, workdir: str) -> Optional[Source]:
    """Download and unpack one package into `workdir`; None (reported) if that fails."""
    folder = os.path.join(workdir, package)
    os.makedirs(folder, exist_ok=True)
    ok, output = _run(['apt-get', 'download', package], cwd=folder)
    debs = [f for f in os.listdir(folder) if f.endswith('.deb')]
    if not ok or not debs:
        hint = (' Check the name; on a fresh machine the package lists are empty: run apt-get update '
                'first (as root) or pass --apt_update.'
                if 'Unable to locate' in output or "Can't select" in output else '')
        tqdm.write(f'package {package} not available, skipped: {output}.{hint}', file=sys.stderr)
        return None
    tree = os.path.join(folder, 'tree')
    ok, output = _run(['dpkg', '-x', os.path.join(folder, debs[0]), tree])
    if not ok:
        tqdm.write(f'cannot unpack {debs[0]}, skipped: {output}', file=sys.stderr)
        return None
    source = Source(package)
    used = set()
    for root, dirs, files in os.walk(tree):
        dirs.sort()
        for filename in sorted(files):
            if not is_image_file(filename):
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


def prepare(sources: List[Source], out: str, max_side: int, val_fraction: float,
            overwrite: bool = False, test_fraction: float = 0.0) -> Summary:
    """Write every picture of `sources`, downscaled, as <out>/<split>/<name>.png; see the module doc.

    An existing output is kept unless `overwrite`; one found in another split (an
    earlier run with other fractions) is removed there, so the splits stay disjoint.
    """
    summary, thumbs = Summary(), []
    for split in SPLITS:
        os.makedirs(os.path.join(out, split), exist_ok=True)
    pictures = [(name, path) for source in sources for name, path in sorted(source.pictures)]
    for name, path in tqdm(pictures, desc='photos', unit='photo'):
        try:
            img, transparent = read_photo(path)
        except (ValueError, FileNotFoundError, cv2.error) as err:
            summary.failed.append(f'{path}: {err}')
            continue
        img = shrink_to_fit(img, max_side)
        if img.std() < FLAT_THRESHOLD:
            summary.no_photo.append(f'{name} (flat: standard deviation {img.std():.3f})')
            continue
        if transparent:
            summary.composited.append(name)
        thumb = thumbnail(img)
        twin = next((other for other, t in thumbs if np.abs(t - thumb).mean() < DUPLICATE_THRESHOLD), None)
        if twin is not None:
            summary.duplicates.append(f'{name} (same picture as {twin})')
            continue
        thumbs.append((name, thumb))
        split = split_of(name, val_fraction, test_fraction)
        target = os.path.join(out, split, f'{name}.png')
        for other in SPLITS:
            stale = os.path.join(out, other, f'{name}.png')
            if other != split and os.path.exists(stale):
                os.remove(stale)
                summary.moved.append(f'{name}: {other} -> {split}')
        if os.path.exists(target) and not overwrite:
            summary.kept.append(target)
            continue
        write_image(target, img)
        summary.written[split].append(target)
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
    p.add_argument('--packages', nargs='+', default=list(DEBIAN_PACKAGES), help='Debian wallpaper packages to use')
    p.add_argument('--skip_debian', action='store_true', help="only scikit-image's photos; no apt-get")
    p.add_argument('--apt_update', action='store_true', help='run apt-get update (needs root) before downloading')
    p.add_argument('--overwrite', action='store_true', help='rewrite photos already in --out')
    args = p.parse_args(argv)
    if args.max_side < 64:
        p.error(f'--max_side {args.max_side} is too small for training patches; use at least 64')
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
                source = debian_source(package, workdir)
                if source is None:
                    failed_packages.append(package)
                else:
                    sources.append(source)
        summary = prepare(sources, args.out, args.max_side, args.val_fraction, args.overwrite, args.test_fraction)
    print_summary(summary, args.out, failed_packages)
    return summary


if __name__ == '__main__':
    main()
