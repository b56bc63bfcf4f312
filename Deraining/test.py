"""Restore the deraining benchmarks with MPRNet: Rain100L, Rain100H, Test100, Test1200, Test2800.

Reads <input_dir>/<name>/input for each name in --datasets and writes
<result_dir>/<name>/<image>.png. A dataset whose folder is missing is reported
and skipped. Images are reflect-padded to a multiple of 8 and cropped back.
Score the results with evaluate_PSNR_SSIM.py.

    python test.py
"""
import argparse
import os
import sys
from typing import Dict, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.inference.cli import (add_test_script_arguments, check_inference_arguments, load_restorer,  # noqa: E402
                                 plan_outputs, run_main)
from utils.inference.folder_restore import collect_inputs, restore_folder  # noqa: E402

TASK = 'Deraining'
DATASETS = ('Rain100L', 'Rain100H', 'Test100', 'Test1200', 'Test2800')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Image deraining with MPRNet: restore the test sets')
    parser.add_argument('--datasets', nargs='+', default=list(DATASETS),
                        help='test sets to restore (default: %(default)s)')
    add_test_script_arguments(parser, TASK, ('./Datasets/test/', 'root holding <name>/input for each test set'),
                              ('./results/', 'results go to <result_dir>/<name>/'))
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, list]:
    """Run every available test set; returns {name: written paths}."""
    args = parse_args(argv)
    plans = {}  # every test set is checked (names, existing results) before the model runs
    for name in args.datasets:
        folder = os.path.join(args.input_dir, name, 'input')
        if os.path.isdir(folder):
            plans[name] = plan_outputs(collect_inputs(folder)[0], os.path.join(args.result_dir, name), args.overwrite,
                                       args.skip_existing)[0]
        else:
            print(f'skipping {name}: {folder} not found', file=sys.stderr, flush=True)
    if not plans:
        raise FileNotFoundError(f'none of the test sets {", ".join(args.datasets)} is under {args.input_dir} '
                                '(expected <name>/input; see Datasets/README.md)')
    restorer, info = load_restorer(TASK, check_inference_arguments(args))
    print(f'===> Testing {info}', flush=True)
    for name, plan in plans.items():
        restore_folder(restorer, plan, batch_size=args.batch_size, desc=name, replace=args.overwrite)
    return {name: [out for _, out in plan] for name, plan in plans.items()}


if __name__ == '__main__':
    sys.exit(run_main(main))
