"""Restore your own images with MPRNet: deblurring, deraining or denoising.

    python demo.py --task Deraining --input_dir samples/input/Deraining --result_dir samples/output/Deraining

`--input_dir` is a folder (every png, jpg, jpeg, bmp, tif, tiff and webp in
it) or one image file. Results are PNGs named after their inputs (16-bit in,
16-bit out). Weights: the official file when it is in pretrained_models/,
else the compact models bundled in pretrained_models/synthetic/. Runs on CPU
or GPU; large images are restored in overlapping tiles so memory stays within
--max_memory; images above --max_megapixels (from their headers, before
decoding) are refused. --compare writes one picture of every input beside its
result (never over an input or a result). Several tasks, comma-separated
(`--task Denoising,Deblurring`), run one after the other on each image in memory:
one read, one write.

Exit code 0: all restored; 1: some files failed (named); 2: nothing was run
(bad options, no images, no weights, results that exist); 130: interrupted.
"""
import argparse
import dataclasses
import os
import sys
import time
from typing import List, Optional, Tuple

# Before PyTorch loads its OpenMP runtime: idle threads sleep instead of spinning. On a machine
# that is busy with other work, spinning threads made a run several times slower (measured in
# docs/PERFORMANCE.md); alone on a machine the time is the same. OMP_WAIT_POLICY set by the user wins.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

from tqdm import tqdm

from utils.files.weights import WEIGHT_CHOICES
from utils.inference.chain import ChainRestorer, chain_label, parse_task_chain
from utils.inference.cli import (TASK_METAVAR, UsageError, add_inference_arguments, add_pixel_limit_argument,
                       check_compare, check_inference_arguments, check_writable, load_restorer, plan_outputs,
                       run_main)
from utils.inference.folder_restore import collect_inputs, restore_folder
from utils.inference.restorer import Tiling
from utils.files.image_io import DEFAULT_MAX_MEGAPIXELS
from utils.evaluation.visualize import write_comparison
from utils.files.weights import official_paths


def task_chain_type(text: str) -> Tuple[str, ...]:
    """argparse type: one task or a comma-separated chain, any capitalisation -> canonical names."""
    try:
        return parse_task_chain(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def chain_weights(weights: str, tasks: Tuple[str, ...]) -> List[str]:
    """--weights for each task of the chain: auto / official / bundled for all of them, or one file per
    task, comma-separated in the chain's order (one task: the option as it is)."""
    if len(tasks) == 1 or weights in WEIGHT_CHOICES:
        return [weights] * len(tasks)
    files = [w.strip() for w in weights.split(',')]
    if len(files) != len(tasks):
        raise UsageError(f'--weights {weights}: the chain {chain_label(tasks)} needs {len(tasks)} files, one per '
                         f"task in its order and separated by commas, or one of {', '.join(WEIGHT_CHOICES)}")
    return files


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Restore images with MPRNet (deblurring, deraining, denoising).',
        epilog='Exit code 0: every image restored; 1: some images failed (listed); 2: nothing run; '
               '130: interrupted (finished results are complete; --skip_existing resumes).')
    parser.add_argument('--task', required=True, type=task_chain_type, metavar=TASK_METAVAR,
                        help='which restoration to run (any capitalisation); several, comma-separated, run in '
                             'that order on each image, e.g. Denoising,Deblurring for a blurry, noisy photo')
    parser.add_argument('--input_dir', default='./samples/input/',
                        help='folder of images, or a single image file (default: %(default)s)')
    parser.add_argument('--result_dir', default='./samples/output/',
                        help='folder for the restored PNGs; must differ from the input folder (default: %(default)s)')
    add_inference_arguments(
        parser, 'auto', "checkpoint to load, or auto (default: the official pretrained_models/model_<task>.pth "
        "when present, else the bundled compact weights in pretrained_models/synthetic/), official or bundled; "
        "for several tasks one file per task, comma-separated in their order",
        precision_default='auto', tiling=True)
    add_pixel_limit_argument(parser, DEFAULT_MAX_MEGAPIXELS)
    parser.add_argument('--compare', default=None, metavar='PNG',
                        help='also write one picture with every input beside its result, labelled, to this file '
                             '(never one of the inputs or results)')
    return parser.parse_args(argv)


class TileProgress:
    """A progress bar over the tiles of the image being restored, shown only when it is tiled."""

    def __init__(self):
        self.bar: Optional[tqdm] = None

    def __call__(self, done: int, total: int, tiling: Tiling) -> None:
        if self.bar is None:
            tqdm.write(f'restoring in {tiling.tile}-px tiles' + (f' ({tiling.reason})' if tiling.reason else ''))
            self.bar = tqdm(total=total, desc='tiles', unit='tile', leave=False)
        self.bar.update(done - self.bar.n)
        if done == total:
            self.bar.close()
            self.bar = None


def restore(argv: Optional[List[str]] = None) -> int:
    """Restore as the options say; returns the number of images that failed (errors raise)."""
    args = parse_args(argv)
    options = check_inference_arguments(args, auto_tile=True)
    files, input_folder, ignored = collect_inputs(args.input_dir)
    plan, skipped = plan_outputs(files, args.result_dir, args.overwrite, args.skip_existing, input_folder)
    if args.compare:
        check_compare(args.compare, files, plan + skipped, args.overwrite, args.skip_existing)
    tasks, label = args.task, chain_label(args.task)
    progress = TileProgress()
    loaded = [load_restorer(task, dataclasses.replace(options, weights=weights), progress=progress)
              for task, weights in zip(tasks, chain_weights(args.weights, tasks))]
    restorer = loaded[0][0] if len(tasks) == 1 else ChainRestorer([r for r, _ in loaded])
    check_writable(args.result_dir)  # after the weights: a run refused for them leaves no empty folder
    if args.compare:
        check_writable(os.path.dirname(os.path.abspath(args.compare)), '--compare', 'the comparison picture')
    if len(tasks) > 1:
        print(f'chain {label}: each image read once, restored by {len(tasks)} models in turn, written once')
    for task, (_, info) in zip(tasks, loaded):
        print(info)
        if args.weights == 'auto' and info.kind == 'bundled':
            print(f'(no official weights at {official_paths(task)[0]}: using the compact model trained on '
                  f'synthetic degradations; python scripts/fetch_weights.py --task {task} downloads the official one)')
    if ignored:
        print(f'({ignored} non-image files in {args.input_dir} ignored)')
    if skipped:
        print(f'{len(skipped)} results already in {args.result_dir} kept (--skip_existing)')
    start = time.time()
    failed = restore_folder(restorer, plan, batch_size=1, desc=label, bit_depth=None, keep_going=True,
                            max_megapixels=args.max_megapixels, replace=args.overwrite)
    done = len(plan) - len(failed)
    print(f'{done} of {len(plan)} images restored in {time.time() - start:.1f} s; results in {args.result_dir}')
    if plan and not done:
        raise UsageError(f'none of the {len(plan)} images could be restored (see the messages above)')
    if failed:
        print(f'{len(failed)} failed: ' + ', '.join(failed), file=sys.stderr)
    if args.compare:
        pairs = [(src, dst) for src, dst in plan + skipped if src not in failed]
        kinds = ', '.join(dict.fromkeys(info.kind for _, info in loaded))  # a chain: short enough to fit
        weights = loaded[0][1].weights_label if len(loaded) == 1 else f'{kinds} weights'
        write_comparison(pairs, args.compare, title=f'{label}: {weights}',
                         max_megapixels=args.max_megapixels)
        print(f'comparison picture: {args.compare}')
    return len(failed)


def main(argv: Optional[List[str]] = None) -> int:
    """The command line: restore, then the exit code of utils.inference.cli's convention (0, 1, 2 or 130)."""
    return run_main(restore, argv)


if __name__ == '__main__':
    sys.exit(main())
