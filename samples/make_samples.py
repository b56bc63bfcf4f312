"""Make the bundled sample inputs: scikit-image's photographs, resized and degraded (seeded).

    python samples/make_samples.py                              # writes samples/input/*.png
    python samples/make_samples.py --clean_dir samples/clean    # also the clean references

Each sample is one photograph from ``skimage.data`` (shipped with
scikit-image, no download), resized to a long side of 320 px and degraded
with ``utils.data.degradations``: camera-shake blur, rain streaks or noise, into
the folder of the task that restores it (<output_dir>/Deblurring/ etc.). These
photographs are held out of the bundled weights' training
(utils/data/photos.py HELD_OUT), so the demo shows what a user gets on
photos the model has never seen. The random generator of each sample is
seeded from --seed and the sample's name, so the files are the same on every
run and adding a sample changes no other.
"""
import argparse
import os
import sys
import zlib

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root

from utils.data.degradations import degrade  # noqa: E402
from utils.files.image_io import write_image  # noqa: E402

# (task folder, file name, skimage.data photograph, degradation, fixed parameters; the rest are
# drawn from the seed)
SAMPLES = (
    ('Deblurring', 'blur_coffee', 'coffee', 'deblur', dict(max_size=25, family='classic')),
    ('Deblurring', 'blur_motorcycle', 'motorcycle', 'deblur', dict(max_size=25, family='classic')),
    ('Deraining', 'rain_astronaut', 'astronaut', 'derain', dict(blend='screen', classic=True)),
    ('Deraining', 'rain_rocket', 'rocket', 'derain', dict(blend='screen', classic=True)),
    ('Denoising', 'noise_chelsea', 'chelsea', 'denoise', dict(sigma=15, signal_dependent=True, peak=100,
                                                             jpeg_quality=0)),
    ('Denoising', 'noise_coffee', 'coffee', 'denoise', dict(sigma=25, signal_dependent=False, jpeg_quality=0)),
)
LONG_SIDE = 320
HERE = os.path.dirname(os.path.abspath(__file__))


def load_photo(name: str) -> np.ndarray:
    """An skimage.data photograph as float32 RGB (H, W, 3) in [0, 1]."""
    # Deliberately lazy: scikit-image's import is slow and only this source of photos needs it.
    import skimage.data
    img = skimage.data.stereo_motorcycle()[0] if name == 'motorcycle' else getattr(skimage.data, name)()
    return img.astype(np.float32) / 255.0


def resize_long_side(img: np.ndarray, long_side: int) -> np.ndarray:
    """Shrink (H, W, 3) so its longer side is `long_side`, keeping the aspect ratio (area filter)."""
    h, w = img.shape[:2]
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def sample_rng(seed: int, name: str) -> np.random.Generator:
    """A generator that depends only on the seed and the sample's name."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Write the degraded sample images used by demo.py.')
    parser.add_argument('--output_dir', default=os.path.join(HERE, 'input'),
                        help='folder for the degraded samples (default: samples/input next to this script)')
    parser.add_argument('--clean_dir', default=None,
                        help='also write the clean resized photographs here, with the same names, to compare with')
    parser.add_argument('--seed', type=int, default=0, help='base random seed (default 0, the bundled files)')
    parser.add_argument('--long_side', type=int, default=LONG_SIDE,
                        help=f'longer side of the samples in pixels (default {LONG_SIDE})')
    parser.add_argument('--overwrite', action='store_true', help='replace sample files that already exist')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    targets = [(os.path.join(args.output_dir, task, f'{name}.png'), name) for task, name, *_ in SAMPLES]
    if args.clean_dir:
        targets += [(os.path.join(args.clean_dir, task, f'{name}.png'), name) for task, name, *_ in SAMPLES]
    existing = [path for path, _ in targets if os.path.exists(path)]
    if existing and not args.overwrite:
        print(f'error: {len(existing)} sample files already exist (e.g. {existing[0]}); '
              'pass --overwrite to replace them', file=sys.stderr)
        return 2
    total = 0
    for task, name, photo, kind, params in SAMPLES:
        clean = resize_long_side(load_photo(photo), args.long_side)
        degraded = degrade(clean, kind, sample_rng(args.seed, name), **params)
        path = os.path.join(args.output_dir, task, f'{name}.png')
        write_image(path, degraded)
        total += os.path.getsize(path)
        print(f'{path}: {degraded.shape[1]}x{degraded.shape[0]} {kind} of skimage.data.{photo}')
        if args.clean_dir:
            write_image(os.path.join(args.clean_dir, task, f'{name}.png'), clean)
    print(f'{len(SAMPLES)} samples, {total / 1e6:.2f} MB in {args.output_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
