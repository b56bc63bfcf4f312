"""The command-line layer every inference script shares: demo.py and the <Task>/test*.py scripts.

One set of option names, one way to find weights and load the model, one
output planner and one exit-code convention:

    0    everything asked for was done
    1    some images failed (each one named); the others were written
    2    nothing was run: a bad option, a missing input, weights that do not
         fit, results that would be overwritten
    130  interrupted (Ctrl-C): the files finished before are complete; the one
         being written is not left half-written (writes are atomic)

``run_main`` applies it: scripts raise ``UsageError`` (or OSError /
ValueError / RuntimeError) for what stops them before any work, and return
the number of failed items otherwise.
"""
import argparse
import os
import sys
from typing import Callable, List, Optional, Sequence, Tuple

from MPRNet import PRESETS
from utils.tasks import canonical_task
from utils.allocator import keep_freed_memory
from utils.files.image_io import IMAGE_EXTENSIONS
from utils.inference.loading import DEFAULT_CPU_MEMORY_GB, RunInfo, build_restorer
from utils.inference.options import DEFAULT_OVERLAP, PRECISION_CHOICES, InferenceOptions, UsageError
from utils.inference.restorer import Restorer, Tiling
from utils.padding import MULTIPLE

__all__ = ['UsageError', 'EXIT_OK', 'EXIT_SOME_FAILED', 'EXIT_NOTHING_RUN', 'EXIT_INTERRUPTED', 'TASK_METAVAR',
           'task_type', 'size_type',
           'add_model_arguments', 'add_tiling_arguments', 'add_inference_arguments', 'add_test_script_arguments',
           'check_inference_arguments', 'load_restorer', 'refuse_existing', 'plan_outputs',
           'check_writable', 'check_compare', 'same_file', 'add_pixel_limit_argument', 'run_main']

EXIT_OK, EXIT_SOME_FAILED, EXIT_NOTHING_RUN, EXIT_INTERRUPTED = 0, 1, 2, 130
Pair = Tuple[str, str]


TASK_METAVAR = '|'.join(PRESETS)


def task_type(name: str) -> str:
    """argparse type of every script's --task: any capitalisation of a task name -> its canonical name."""
    try:
        return canonical_task(name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def size_type(text: str) -> Tuple[int, int]:
    """argparse type of every image-size option: '256x192' -> (256, 192), in the order written (each
    option's help says whether that is height x width or width x height); both sides at least MULTIPLE."""
    try:
        first, second = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'a size must look like 256x192, got {text!r}') from None
    if min(first, second) < MULTIPLE:
        raise argparse.ArgumentTypeError(f'sizes need sides of at least {MULTIPLE} px, got {text}')
    return first, second


def add_model_arguments(parser: argparse.ArgumentParser, weights_default: str, weights_help: str,
                        precision_default: str = 'fp32', weights_choices: Optional[Sequence[str]] = None) -> None:
    """Which weights and how to run them: --weights, --device, --precision, --fast (every
    inference entry point: demo, test scripts, web page), and --exact, the old name of
    --precision exact."""
    parser.add_argument('--weights', default=weights_default, choices=weights_choices, help=weights_help)
    parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'),
                        help='where to run: auto = CUDA when available, else CPU (default: %(default)s)')
    parser.add_argument('--precision', default=precision_default, choices=PRECISION_CHOICES,
                        help='exact = fp32 in the published order (the published numbers; fp32 without '
                             '--fast is the same); bf16/fp16 autocast are faster where the '
                             'hardware has them; auto = bf16 with --fast on GPUs and on CPUs with native bf16 '
                             'for the tasks where it was measured to stay above 45 dB of fp32, else fp32 '
                             'with --fast (default: %(default)s)')
    parser.add_argument('--fast', action='store_true',
                        help='channels-last, batched stage-1/2 patches, cuDNN autotuning: the same function in '
                             'another order (differences at float rounding)')
    parser.add_argument('--exact', action='store_true',
                        help='old name of --precision exact, still accepted')


def add_tiling_arguments(parser: argparse.ArgumentParser) -> None:
    """--tile, --tile_overlap and --max_memory: how images too big for memory are split."""
    parser.add_argument('--tile', type=int, default=None,
                        help='restore in overlapping tiles of this many pixels (a multiple of 8, e.g. 512); '
                             'default: whole images, tiles only when one would not fit in --max_memory')
    parser.add_argument('--tile_overlap', type=int, default=DEFAULT_OVERLAP,
                        help='minimum overlap of neighbouring tiles in pixels (default: %(default)s)')
    parser.add_argument('--max_memory', type=float, default=None, metavar='GB',
                        help='memory one image may use before it is restored in tiles (default: '
                             f'{DEFAULT_CPU_MEMORY_GB:g} GB on the CPU; on a GPU 80%% of its free memory)')


def add_pixel_limit_argument(parser: argparse.ArgumentParser, default: float) -> None:
    """--max_megapixels: the reader's pixel limit (utils.files.image_io.read_image), checked from each
    file's header before it is decoded."""
    parser.add_argument('--max_megapixels', type=float, default=default, metavar='MP',
                        help='largest image read, in megapixels, checked from the file header before decoding '
                             '(default: %(default)g)')


def add_inference_arguments(parser: argparse.ArgumentParser, weights_default: str, weights_help: str,
                            precision_default: str = 'fp32', tiling: bool = False,
                            batching: bool = False, skippable: bool = True) -> None:
    """The options of the scripts that write result files: the model options, `tiling` adds the
    tiling options (the demo), `batching` adds --batch_size (the benchmark test scripts), and
    --overwrite / --skip_existing say what happens to results that exist (--skip_existing only
    where results are `skippable` one by one, not one file made from every input)."""
    add_model_arguments(parser, weights_default, weights_help, precision_default)
    if batching:
        parser.add_argument('--batch_size', type=int, default=1,
                            help='images per forward pass; only images of the same size share a batch '
                                 '(default: %(default)s)')
    if tiling:
        add_tiling_arguments(parser)
    parser.add_argument('--overwrite', action='store_true',
                        help='replace result files that already exist (otherwise the script stops before any work)')
    if skippable:
        parser.add_argument('--skip_existing', action='store_true',
                            help='leave results that already exist as they are and restore only the others '
                                 '(to finish an interrupted run)')


def add_test_script_arguments(parser: argparse.ArgumentParser, task: str, input_dir: Tuple[str, str],
                              result_dir: Tuple[str, str], skippable: bool = True) -> None:
    """The options of a benchmark test script: --input_dir and --result_dir as (default, what it
    holds), the published default weights path (relative to the task folder the script runs
    from), exact fp32 by default, --batch_size."""
    parser.add_argument('--input_dir', default=input_dir[0], help=f'{input_dir[1]} (default: %(default)s)')
    parser.add_argument('--result_dir', default=result_dir[0], help=f'{result_dir[1]} (default: %(default)s)')
    default = os.path.join('.', 'pretrained_models', f'model_{task.lower()}.pth')
    add_inference_arguments(parser, default, f'checkpoint to test: the released model_{task.lower()}.pth or one '
                            'of ours; auto, official or bundled look under the repository (default: %(default)s)',
                            precision_default='fp32', batching=True, skippable=skippable)


def check_inference_arguments(args: argparse.Namespace, auto_tile: bool = False) -> InferenceOptions:
    """Option combinations, checked once before anything is loaded; UsageError names the option.
    Returns the model options (``InferenceOptions.from_args``: building them is their check)."""
    if getattr(args, 'overwrite', False) and getattr(args, 'skip_existing', False):
        raise UsageError('--overwrite and --skip_existing contradict each other: choose one')
    if getattr(args, 'batch_size', 1) < 1:
        raise UsageError(f'--batch_size must be at least 1, got {args.batch_size}')
    return InferenceOptions.from_args(args, auto_tile=auto_tile)


def load_restorer(task: str, options: InferenceOptions,
                  progress: Optional[Callable[[int, int, Tiling], None]] = None) -> Tuple[Restorer, RunInfo]:
    """The model for `task` (canonical: argparse's task_type made it so) with the weights
    options.weights names, wrapped in a Restorer as the options say (``build_restorer``); returns
    it and what was loaded (str() of it is the one-line description scripts print)."""
    return build_restorer(task, options, progress)


def refuse_existing(paths: Sequence[str], overwrite: bool, skip_existing: bool = False,
                    skippable: bool = True) -> List[str]:
    """The one check for results that exist, before any work: FileExistsError naming them unless
    `overwrite` (replace them) or `skip_existing` (keep them); returns the ones to keep and skip.
    The advice names --skip_existing only where the script has it (`skippable`).

    A 0-byte file is no result (our writes are atomic, so something else left it):
    `skip_existing` redoes it instead of keeping it as done.
    """
    existing = [p for p in paths if os.path.exists(p)]
    if existing and not (overwrite or skip_existing):
        more = f' (+{len(existing) - 5} more)' if len(existing) > 5 else ''
        skip = ', --skip_existing to keep them and restore the rest,' if skippable else ''
        raise FileExistsError(f'{len(existing)} result file(s) already exist: ' + ', '.join(existing[:5]) + more +
                              f'; pass --overwrite to replace them{skip} or choose another --result_dir')
    if not skip_existing:
        return []
    return [p for p in existing if not (os.path.isfile(p) and os.path.getsize(p) == 0)]


def plan_outputs(inputs: Sequence[str], result_dir: str, overwrite: bool = False, skip_existing: bool = False,
                 input_folder: Optional[str] = None) -> Tuple[List[Pair], List[Pair]]:
    """(to do, skipped): (input, result_dir/<input name>.png) pairs, checked before any work.

    Refused with UsageError: the input folder as the result folder, a result that is
    one of the inputs through any link (even with `overwrite`: a folder of links into
    `result_dir`), and two inputs with one result name; results that exist, by ``refuse_existing``.
    """
    if input_folder is not None and os.path.realpath(result_dir) == os.path.realpath(input_folder):
        raise UsageError(f'--result_dir {result_dir} is the input folder; choose another folder so the inputs '
                         'are not overwritten')
    if os.path.exists(result_dir) and not os.path.isdir(result_dir):
        raise UsageError(f'--result_dir {result_dir} is a file, not a folder; choose a folder')
    outputs = [os.path.join(result_dir, os.path.splitext(os.path.basename(f))[0] + '.png') for f in inputs]
    _refuse_results_that_are_inputs(inputs, outputs)
    seen = {}
    for src, dst in zip(inputs, outputs):
        if dst in seen:
            raise UsageError(f'{seen[dst]} and {src} would both be saved as {dst}; rename one of them')
        seen[dst] = src
    kept = set(refuse_existing(outputs, overwrite, skip_existing))
    pairs = list(zip(inputs, outputs))
    return [pair for pair in pairs if pair[1] not in kept], [pair for pair in pairs if pair[1] in kept]


def _file_identity(path: str) -> Optional[Tuple[int, int]]:
    """(device, inode) of the file `path` leads to through any links, or None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _refuse_results_that_are_inputs(inputs: Sequence[str], outputs: Sequence[str]) -> None:
    """UsageError when writing a result would change an input: the result's name leads (through
    links, or as a hard link) to an input's file, or an input's link points at the result's name."""
    by_identity = {_file_identity(src): src for src in inputs}
    by_identity.pop(None, None)
    by_real = {os.path.normcase(os.path.realpath(src)): src for src in inputs}
    for dst in outputs:
        src = by_identity.get(_file_identity(dst)) or by_real.get(os.path.normcase(os.path.realpath(dst)))
        if src is not None:
            raise UsageError(f'the result {dst} is the input {src} (through a link); writing it would replace that '
                             'input, even with --overwrite: choose another --result_dir')


def check_writable(folder: str, option: str = '--result_dir', what: str = 'results') -> None:
    """Create `folder` if needed and prove a file can be written there, before the model runs;
    UsageError names `what` goes there and `option`, the one that chose the folder."""
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f'.write_test_{os.getpid()}')
        with open(probe, 'wb'):
            pass
        os.remove(probe)
    except OSError as err:
        raise UsageError(f'cannot write {what} into {folder}: {err.strerror or err}; choose another {option}') from err


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file: os.path.samefile when both exist (hard links, symbolic
    links, case-insensitive file systems), else their resolved real paths."""
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def check_compare(path: str, inputs: Sequence[str], pairs: Sequence[Pair], overwrite: bool = False,
                  skip_existing: bool = False) -> None:
    """UsageError before any work when --compare PATH cannot be the comparison picture: not an
    image name, a folder, one of the run's inputs or results (even with --overwrite: those are
    the user's photos and this run's output), or a file that exists without --overwrite /
    --skip_existing. Whether its folder is writable is ``check_writable``'s part."""
    if not path.lower().endswith(IMAGE_EXTENSIONS):
        raise UsageError(f'--compare {path}: the picture needs an image name ending in one of '
                         f'{", ".join(IMAGE_EXTENSIONS)}, e.g. compare.png')
    if os.path.isdir(path):
        raise UsageError(f'--compare {path} is a folder; name a file, e.g. {os.path.join(path, "compare.png")}')
    for src in inputs:
        if same_file(path, src):
            raise UsageError(f'--compare {path} is the input {src}; name another file so it is not replaced')
    for _, dst in pairs:
        if same_file(path, dst):
            raise UsageError(f'--compare {path} is the result {dst} of this run; name another file')
    if os.path.exists(path) and not (overwrite or skip_existing):
        raise UsageError(f'--compare {path} already exists; pass --overwrite to replace it')


def run_main(main: Callable[[Optional[Sequence[str]]], object], argv: Optional[Sequence[str]] = None) -> int:
    """Run a script's main(argv) under the exit-code convention of this module and return the code.

    main returns None or 0 (all done), or the number of failed items (exit 1).
    What stops it before any work (UsageError, missing files, unreadable or
    mismatched weights, no GPU) is printed as one line, exit 2; Ctrl-C is
    one line, exit 130.
    """
    try:
        keep_freed_memory()  # inside: a bad MPRNET_ALLOCATOR is a one-line error, exit 2
        failed = main(argv)
    except KeyboardInterrupt:
        print('\ninterrupted: the results written so far are complete; rerun with --skip_existing to '
              'finish the rest', file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UsageError, OSError, ValueError, RuntimeError) as err:
        print(f'error: {err}', file=sys.stderr)
        return EXIT_NOTHING_RUN
    return EXIT_SOME_FAILED if isinstance(failed, int) and not isinstance(failed, bool) and failed > 0 else EXIT_OK

