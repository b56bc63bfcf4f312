"""Restore your own images with MPRNet: deblurring, deraining or denoising.

    python demo.py --task Deblurring --input_dir ./samples/input/ --result_dir ./samples/output/

`--input_dir` is a folder (every png, jpg, jpeg, bmp, tif, tiff and webp in
it) or one image file. Results are PNGs named after their inputs (16-bit in,
16-bit out). Runs on CPU or GPU; images too large for the device's free
memory are restored in overlapping tiles. Exit code 0: all restored;
1: some files failed (named); 2: nothing was run (bad options, no images,
no weights).
"""
import argparse
import os
import sys
import time
from typing import List, Optional, Tuple

from tqdm import tqdm

from MPRNet import PRESETS, canonical_task
from utils.checkpoint import OFFICIAL_WEIGHTS_URL, build_model
from utils.image_io import (IMAGE_EXTENSIONS, image_to_tensor, is_image_file, list_images, read_image,
                            tensor_to_image, write_image)
from utils.inference import PRECISIONS, Restorer, resolve_device
from utils.tiling import check_tile_options

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OVERLAP = 32


class DemoError(Exception):
    """Something that stops the demo before any image is restored; the message says what to do."""


def task_name(name: str) -> str:
    """argparse type: any capitalisation of a task -> its canonical name."""
    try:
        return canonical_task(name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Restore images with MPRNet (deblurring, deraining, denoising).',
        epilog='Exit code 0: every image restored; 1: some images failed (listed); 2: nothing run.')
    parser.add_argument('--task', required=True, type=task_name, metavar='|'.join(PRESETS),
                        help='which restoration to run (any capitalisation)')
    parser.add_argument('--input_dir', default='./samples/input/',
                        help='folder of images, or a single image file (default ./samples/input/)')
    parser.add_argument('--result_dir', default='./samples/output/',
                        help='folder for the restored PNGs; must differ from the input folder '
                             '(default ./samples/output/)')
    parser.add_argument('--weights', default=None,
                        help='checkpoint to load (default: the official pretrained_models/model_<task>.pth '
                             'or <Task>/pretrained_models/model_<task>.pth, else the synthetic-data weights '
                             'in pretrained_models/synthetic/)')
    parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'),
                        help='where to run; auto picks CUDA when available (default auto)')
    parser.add_argument('--precision', default='fp32', choices=tuple(PRECISIONS),
                        help='fp32 (exact, default) or fp16/bf16 autocast (faster on GPUs)')
    parser.add_argument('--fast', action='store_true',
                        help='channels-last layout, batched patches and cuDNN autotuning (same results '
                             'up to float rounding)')
    parser.add_argument('--tile', type=int, default=None,
                        help='restore in overlapping tiles of this many pixels (a multiple of 8, e.g. 512) '
                             'to bound memory; default: whole images, tiles only when one would not fit')
    parser.add_argument('--tile_overlap', type=int, default=DEFAULT_OVERLAP,
                        help=f'minimum overlap of neighbouring tiles in pixels (default {DEFAULT_OVERLAP})')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace result files that already exist (otherwise they are an error)')
    return parser.parse_args(argv)


def find_weights(task: str, root: str = REPO_ROOT) -> Tuple[str, Optional[str]]:
    """The checkpoint for `task` under the repository `root`, and a notice when it is a fallback.

    Looks for the official file in pretrained_models/ (then in the task folder's
    pretrained_models/, where the published layout and the test scripts keep
    it), else the bundled synthetic-data weights. Raises DemoError naming the
    expected file and where to get it.
    """
    name = task.lower()
    official = [os.path.join(root, 'pretrained_models', f'model_{name}.pth'),
                os.path.join(root, task, 'pretrained_models', f'model_{name}.pth')]
    synthetic = os.path.join(root, 'pretrained_models', 'synthetic', f'model_{name}_synthetic.pth')
    for path in official:
        if os.path.isfile(path):
            return path, None
    if os.path.isfile(synthetic):
        return synthetic, (f'notice: {official[0]} not found; using the synthetic-data weights {synthetic} '
                           '(lower quality than the official ones)')
    raise DemoError(f'no weights for {task}: expected {official[0]}. Download the official '
                    f'model_{name}.pth from {OFFICIAL_WEIGHTS_URL} into {os.path.dirname(official[0])}/ '
                    '(see pretrained_models/README.md), or pass --weights PATH.')


def collect_inputs(input_path: str) -> Tuple[List[str], str, int]:
    """(image files, the folder they are in, number of other files ignored) for a folder or one file."""
    if os.path.isfile(input_path):
        if not is_image_file(input_path):
            raise DemoError(f'{input_path} is not a supported image; use one of: {", ".join(IMAGE_EXTENSIONS)}')
        return [input_path], os.path.dirname(os.path.abspath(input_path)), 0
    if not os.path.isdir(input_path):
        raise DemoError(f'--input_dir {input_path} does not exist')
    files = list_images(input_path)
    if not files:
        raise DemoError(f'no images found in {input_path} (looked for {", ".join(IMAGE_EXTENSIONS)})')
    others = sum(os.path.isfile(os.path.join(input_path, f)) for f in os.listdir(input_path)) - len(files)
    return files, input_path, others


def plan_outputs(files: List[str], input_folder: str, result_dir: str, overwrite: bool) -> List[str]:
    """Result path (result_dir/<input name>.png) for every input, refusing anything that would
    silently overwrite: the input folder itself, two inputs with one name, existing results."""
    if os.path.realpath(result_dir) == os.path.realpath(input_folder):
        raise DemoError(f'--result_dir {result_dir} is the input folder; choose another folder so the '
                        'inputs are not overwritten')
    outputs = [os.path.join(result_dir, os.path.splitext(os.path.basename(f))[0] + '.png') for f in files]
    seen = {}
    for src, dst in zip(files, outputs):
        if dst in seen:
            raise DemoError(f'{seen[dst]} and {src} would both be saved as {dst}; rename one of them')
        seen[dst] = src
    existing = [dst for dst in outputs if os.path.exists(dst)]
    if existing and not overwrite:
        more = f' and {len(existing) - 1} more' if len(existing) > 1 else ''
        raise DemoError(f'result file {existing[0]}{more} already exists; pass --overwrite to replace, '
                        'or choose another --result_dir')
    return outputs


def load_restorer(args: argparse.Namespace) -> Tuple[Restorer, str]:
    """Build the model with its weights and wrap it in a Restorer; returns it and a one-line description."""
    if args.weights:
        if not os.path.isfile(args.weights):
            raise DemoError(f'--weights {args.weights} not found (the official files come from '
                            f'{OFFICIAL_WEIGHTS_URL}; see pretrained_models/README.md)')
        weights = args.weights
    else:
        weights, notice = find_weights(args.task)
        if notice:
            print(notice, file=sys.stderr)
    try:
        device = resolve_device(args.device)
        model = build_model(args.task, weights)
        restorer = Restorer(model, device, precision=args.precision, fast=args.fast, tile=args.tile,
                            tile_overlap=args.tile_overlap, auto_tile=True)
    except (RuntimeError, ValueError) as err:  # mismatched or unreadable weights, no GPU, bad tile options
        raise DemoError(str(err)) from err
    kind = model.preset_name() or f"custom (n_feat={model.config['n_feat']})"
    return restorer, f'{args.task} model [{kind}] from {weights} on {device}, {args.precision}'


def restore_file(restorer: Restorer, src: str, dst: str) -> str:
    """Restore one image file into `dst` (PNG, 16-bit when the input has 16 bits or more).
    Returns a note when the image was tiled automatically, else ''."""
    img, bit_depth = read_image(src)
    restored = restorer(image_to_tensor(img)[None])[0]
    write_image(dst, tensor_to_image(restored), bit_depth=16 if bit_depth >= 16 else 8)
    if restorer.last_tiling_reason:
        return f'{os.path.basename(src)}: restored in {restorer.last_tile}-px tiles ({restorer.last_tiling_reason})'
    return ''


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if args.tile is not None:
            try:
                check_tile_options(args.tile, args.tile_overlap)
            except ValueError as err:
                raise DemoError(f'--tile {args.tile} --tile_overlap {args.tile_overlap}: {err}') from err
        files, input_folder, ignored = collect_inputs(args.input_dir)
        outputs = plan_outputs(files, input_folder, args.result_dir, args.overwrite)
        restorer, description = load_restorer(args)
    except DemoError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(description)
    if ignored:
        print(f'({ignored} non-image files in {args.input_dir} ignored)')
    os.makedirs(args.result_dir, exist_ok=True)
    failed, start = [], time.time()
    for src, dst in zip(tqdm(files, desc=args.task, unit='img'), outputs):
        try:
            note = restore_file(restorer, src, dst)
        except Exception as err:  # one bad file must not stop the others; each is named at the end
            failed.append(src)
            tqdm.write(f'failed: {src}: {err}', file=sys.stderr)
            continue
        if note:
            tqdm.write(note)
    done = len(files) - len(failed)
    print(f'{done} of {len(files)} images restored in {time.time() - start:.1f} s; results in {args.result_dir}')
    if failed:
        print(f'{len(failed)} failed: ' + ', '.join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
