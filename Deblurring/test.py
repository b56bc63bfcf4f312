"""Restore a deblurring benchmark with MPRNet: GoPro, HIDE, RealBlur-J, RealBlur-R, or any dataset in their layout.

Reads <input_dir>/<dataset>/test/input, writes <result_dir>/<dataset>/<name>.png.
Every image is reflect-padded to a multiple of 8 and cropped back (the
published script did this for RealBlur only; GoPro and HIDE are already
multiples of 8, so their results are unchanged). Score the results with
evaluate_GOPRO_HIDE.py or evaluate_RealBlur.py.

    python test.py --dataset GoPro
"""
import argparse
import os
import sys
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.inference.cli import (add_test_script_arguments, check_inference_arguments, load_restorer,  # noqa: E402
                                 plan_outputs, run_main)
from utils.inference.folder_restore import collect_inputs, restore_folder  # noqa: E402

TASK = 'Deblurring'
DATASETS = ('GoPro', 'HIDE', 'RealBlur_J', 'RealBlur_R')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Image deblurring with MPRNet: restore a test set')
    parser.add_argument('--dataset', default='GoPro',
                        help=f"test set: {', '.join(DATASETS)} or any folder <input_dir>/<dataset>/test/input "
                             '(default: %(default)s)')
    add_test_script_arguments(parser, TASK, ('./Datasets/', 'datasets root holding <dataset>/test/input'),
                              ('./results/', 'results go to <result_dir>/<dataset>/'))
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> list:
    """Run the test set; returns the paths of the written results."""
    args = parse_args(argv)
    input_dir = os.path.join(args.input_dir, args.dataset, 'test', 'input')
    if not os.path.isdir(input_dir):
        raise FileNotFoundError(f'{args.dataset} inputs not found: {input_dir} (see Datasets/README.md)')
    plan, _ = plan_outputs(collect_inputs(input_dir)[0], os.path.join(args.result_dir, args.dataset), args.overwrite,
                           args.skip_existing)
    restorer, info = load_restorer(TASK, check_inference_arguments(args))
    print(f'===> Testing {info}', flush=True)
    restore_folder(restorer, plan, batch_size=args.batch_size, desc=args.dataset, replace=args.overwrite)
    return [out for _, out in plan]


if __name__ == '__main__':
    sys.exit(run_main(main))
