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
out and listed. The packages' copyright files go to ``<out>/LICENSES``. Exit code 0;
1 when a source could not be used (each named, the others written); 2 for bad options.

    python scripts/prepare_photos.py --out Datasets/photos
    python Deblurring/train.py TRAINING.SYNTHETIC deblur TRAINING.TRAIN_DIR Datasets/photos/train \\
        TRAINING.VAL_DIR Datasets/photos/val
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import List, Optional, Tuple
from urllib.parse import unquote

from natsort import natsorted
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils.data.photos import DEFAULT_TILE, HELD_OUT_SPLIT, SPLITS, Source, Summary, prepare  # noqa: E402
from utils.files.image_io import is_image_file  # noqa: E402


@dataclass(frozen=True)
class PackageSpec:
    """Where a Debian package keeps its photographs and which of its pictures are photos."""
    package: str
    folders: Tuple[str, ...] = ('',)  # path prefixes inside the package; '' is all of it
    min_side: int = 0                 # shorter side below this: an icon or a sprite, not a photo
    drop_drawings: bool = False       # leave out pictures that look drawn (looks_drawn)
    exclude: Tuple[str, ...] = ()     # left out: paths inside the package holding one of these


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
    # Landscape panoramas (fields, flowers, trees, snow, sea, Mars, the Moon): the held-out source.
    # Left out: the night-light and fog layers drawn over them, and the planets' sky gradients.
    PackageSpec('stellarium-data', ('usr/share/stellarium/landscapes',), min_side=256,
                exclude=('illum', 'fog', '-lgt', '/jupiter/', '/neptune/', '/saturn/', '/sun/', '/uranus/')),
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
# ----------------------------------------------------------------------------- sources

# Debian policy's package names: what apt-get and file names get, never a path ('../x').
DEBIAN_NAME = re.compile(r'^[a-z0-9][a-z0-9+.-]+$')


class ReservedPackageError(ValueError):
    """A package kept for the independent evaluation was asked for."""


def check_not_reserved(package: str) -> None:
    """Raise ReservedPackageError for a package in RESERVED_PACKAGES."""
    if package in RESERVED_PACKAGES:
        raise ReservedPackageError(f'package {package} is reserved for an independent evaluation of this project '
                                   f'and is never used for training, validation or testing; leave it out')


def in_photo_folders(path: str, spec: PackageSpec) -> bool:
    """Whether `path` ('/'-separated, inside the package) is in one of the spec's photo folders
    and holds none of its exclusions."""
    path = '/' + path.lstrip('./')
    inside = any(not prefix or path.startswith('/' + prefix.strip('/') + '/') for prefix in spec.folders)
    return inside and not any(part in path for part in spec.exclude)


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


def _version_newer(a: str, b: str) -> bool:
    """Whether Debian version `a` is newer than `b`, by dpkg's own rules (1.10 after 1.9, 1.0~rc1
    before 1.0); natural order where dpkg is missing."""
    try:
        return subprocess.run(['dpkg', '--compare-versions', a, 'gt', b]).returncode == 0
    except FileNotFoundError:
        return natsorted([a, b])[-1] == a and a != b


def _cached_deb(package: str, deb_dir: Optional[str]) -> Optional[str]:
    """The newest .deb of `package` already in `deb_dir` (apt-get download names it
    <package>_<version>_<arch>.deb, the version's ':' written %3a; package names hold no '_')."""
    if not deb_dir or not os.path.isdir(deb_dir):
        return None
    newest = None
    for name in sorted(os.listdir(deb_dir)):
        parts = name[:-len('.deb')].split('_') if name.endswith('.deb') else []
        if len(parts) == 3 and parts[0] == package:
            version = unquote(parts[1])
            if newest is None or _version_newer(version, newest[0]):
                newest = (version, name)
    return os.path.join(deb_dir, newest[1]) if newest else None


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
    if not ok or deb is None:
        hint = (' Check the name; on a fresh machine the package lists are empty: run apt-get update '
                'first (as root) or pass --apt_update.'
                if 'Unable to locate' in output or "Can't select" in output else '')
        tqdm.write(f'package {package} not available, skipped: {output}.{hint}', file=sys.stderr)
        return None
    tree = os.path.join(folder, 'tree')
    ok, output = _run(['dpkg', '-x', deb, tree])
    if not ok:
        tqdm.write(f'cannot unpack {os.path.basename(deb)}, skipped: {output}', file=sys.stderr)
        return None
    source = Source(package, held_out=package in HELD_OUT_SOURCES, min_side=spec.min_side,
                    drop_drawings=spec.drop_drawings)
    used = set()
    for root, dirs, files in os.walk(tree):
        dirs.sort()
        inside = os.path.relpath(root, tree).replace(os.sep, '/')
        for filename in sorted(files):
            if not is_image_file(filename) or not in_photo_folders(f'{inside}/{filename}', spec):
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


def folder_stats(folder: str) -> Tuple[int, int]:
    """(number of PNG files, their total bytes) in `folder`."""
    files = [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith('.png')]
    return len(files), sum(os.path.getsize(f) for f in files)


def print_summary(summary: Summary, out: str, failed_packages: List[str]) -> None:
    if summary.kept:
        print(f'{len(summary.kept)} photos already in {out} kept (use --overwrite to redo them)')
    for label, items in (('moved to another split', summary.moved),
                         ('earlier files of a picture cut otherwise or left out now, removed', summary.removed),
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
        if count == 0 and split in ('train', 'val'):
            print(f'warning: {os.path.join(out, split)} is empty; training needs photos in both folders: '
                  'add sources or change --val_fraction', file=sys.stderr)
        elif count == 0:
            what = (f'the held-out source ({", ".join(HELD_OUT_SOURCES)}) was not among --packages'
                    if split == HELD_OUT_SPLIT else 'add sources or raise --test_fraction')
            print(f'warning: {os.path.join(out, split)} is empty, so it judges nothing: {what}', file=sys.stderr)


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
    for option, folder in (('--out', args.out), ('--deb_dir', args.deb_dir)):
        if folder and os.path.exists(folder) and not os.path.isdir(folder):
            p.error(f'{option} {folder} is a file; name a folder')
    odd = [package for package in args.packages if not DEBIAN_NAME.match(package)]
    if odd:
        p.error(f'--packages: {", ".join(odd)} is not a Debian package name (lower-case letters, digits, '
                "'+', '-' and '.', starting with a letter or digit)")
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
    summary.failed_sources = failed_packages
    print_summary(summary, args.out, failed_packages)
    return summary


if __name__ == '__main__':
    sys.exit(1 if main().failed_sources else 0)  # 1: some sources failed (named above); the others written
