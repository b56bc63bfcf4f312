"""The command line of the three train.py scripts: --config, --device, --resume, KEY VALUE overrides.

``script_main`` makes the whole of a task's train.py: ``train_main`` loads the config
(utils/training/config.py) and runs ``utils.training.loop.fit``. Errors a user can fix (a bad
key, a missing folder, a session that exists or is in use by another run, a
NaN loss, a checkpoint of another model or task, a disk that fills up) end the
program with one line and an exit code (docs/TRAINING.md), not a traceback.
"""
import argparse
import contextlib
import functools
import os
import signal
import sys
import threading
from typing import Any, Callable, Dict, Iterator, Optional, Sequence

from utils.allocator import keep_freed_memory
from utils.files.checkpoint import CheckpointMismatchError, CheckpointReadError
from utils.training.config import ConfigError, add_config_arguments, config_from_args
from utils.training.loop import fit
from utils.training.trainer import CheckpointWriteError, NonFiniteLossError

__all__ = ['USAGE', 'EXIT_TRAINED', 'EXIT_NON_FINITE_LOSS', 'EXIT_NOT_STARTED', 'EXIT_CHECKPOINT_WRITE',
           'EXIT_INTERRUPTED', 'EXIT_TERMINATED', 'add_run_arguments', 'script_main', 'train_main', 'train_from_args']

# Exit codes of train.py (listed in docs/TRAINING.md).
EXIT_TRAINED, EXIT_NON_FINITE_LOSS, EXIT_NOT_STARTED, EXIT_CHECKPOINT_WRITE = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM, as a shell reports them

USAGE = """\
Paths in the config are relative to the current directory; a task's training.yml
expects to be run from its folder, as published (cd Deblurring, Deraining or Denoising):

    python train.py                                   # one GPU, or the CPU
    torchrun --nproc_per_node 4 train.py              # 4 GPUs; OPTIM.BATCH_SIZE stays the global batch
    python train.py --device cpu OPTIM.NUM_EPOCHS 10  # KEY VALUE overrides come last
    python train.py TRAINING.RESUME True              # continue the session's model_latest.pth
"""


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """--device and --resume, shared by the three train.py scripts."""
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'],
                        help="where to train: 'auto' = CUDA if available (default), 'cpu' or 'cuda'; under "
                             'torchrun each process takes the GPU of its LOCAL_RANK')
    parser.add_argument('--resume', default=None, metavar='PATH',
                        help='continue from this checkpoint (default: TRAINING.RESUME True resumes the '
                             "session's model_latest.pth)")


def script_main(script: str, description: str) -> Callable[..., Dict[str, Any]]:
    """The ``main(argv=None)`` of a task's train.py at `script`: ``train_main`` with the
    training.yml beside the script as the default config and `description` as the help."""
    config_path = os.path.join(os.path.dirname(os.path.abspath(script)), 'training.yml')
    return functools.partial(train_main, config_path, description)


def train_main(config_path: str, description: str, argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The whole command line of a task's train.py: --config (default `config_path`),
    --device, --resume and KEY VALUE overrides, then ``fit``."""
    parser = argparse.ArgumentParser(description=description, epilog=USAGE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, default_config=config_path)
    add_run_arguments(parser)
    return train_from_args(parser.parse_args(argv))


class Terminated(BaseException):
    """SIGTERM arrived (kill, a job scheduler, torchrun stopping its workers). A BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` swallows it while ``finally`` blocks run:
    the session's lock is released and no checkpoint is left half-written."""


_RETRY_SECONDS = 0.05  # how soon a SIGTERM that arrived inside an import is delivered again


def _inside_an_import(frame) -> bool:
    """Whether `frame` or a caller is running Python's import machinery (a module's top level)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith('<frozen importlib'):
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises Terminated instead of ending the process on the spot
    (which would leave the session locked until the next run finds the lock stale).

    Not inside an import: PyTorch imports parts of itself (torch._dynamo, sympy) lazily during
    the first steps, and an exception raised half-way through a module's top level leaves a
    broken module behind that fails the next import with an unrelated error (and exit 1).
    There the signal is sent again a moment later, until it lands outside any import.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum, frame):
        if _inside_an_import(frame):
            retry = threading.Timer(_RETRY_SECONDS, os.kill, (os.getpid(), signal.SIGTERM))
            retry.daemon = True
            retry.start()
            return
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _without_worker_traceback(err: BaseException) -> str:
    """The error's text; for one re-raised from a DataLoader worker, whose text is the worker's
    whole traceback, only the original message (its last line) and where it was caught."""
    text = str(err)
    if 'in DataLoader worker process' not in text or 'Original Traceback' not in text:
        return text
    where = text.splitlines()[0].rstrip('.').replace('Caught ', '').split(' in ', 1)[-1]
    last = text.strip().splitlines()[-1]
    return f'{last.split(": ", 1)[-1]} (in {where}; the start-up scan reads only headers)'


def train_from_args(args: argparse.Namespace) -> Dict[str, Any]:
    """Load the config named by parsed train.py arguments and run ``fit``.

    Errors end the program with one line on stderr: exit 2 for what stops a run
    before it trains (options, YAML, data, checkpoints, a session in use by
    another run), 1 for a NaN or infinite loss during training, 3 for a
    checkpoint that cannot be written (the disk is full), 130 for Ctrl-C and
    143 for SIGTERM.
    """
    try:
        keep_freed_memory()
    except ValueError as err:  # a bad MPRNET_ALLOCATOR: one line, as for the inference scripts
        print(f'error: {err}', file=sys.stderr)
        raise SystemExit(EXIT_NOT_STARTED) from None
    stray = [a for a in args.opts or [] if a.startswith('--')]
    if stray:
        print(f'error: option {stray[0]} after KEY VALUE overrides: put --config, --device and --resume before '
              'the overrides', file=sys.stderr)
        raise SystemExit(EXIT_NOT_STARTED)
    stopped = 'model_latest.pth holds the last completed epoch; continue with TRAINING.RESUME True'
    try:
        with _sigterm_raises():
            cfg = config_from_args(args)
            return fit(cfg, device=args.device, resume=args.resume)
    except NonFiniteLossError as err:  # training had started: exit 1
        print(f'error: {err}', file=sys.stderr)
        raise SystemExit(EXIT_NON_FINITE_LOSS) from err
    except CheckpointWriteError as err:  # the message names the file, the reason and the last good checkpoint
        print(f'error: {err}', file=sys.stderr)
        raise SystemExit(EXIT_CHECKPOINT_WRITE) from err
    except (ConfigError, OSError, ValueError, CheckpointMismatchError, CheckpointReadError) as err:
        # Options, data or checkpoints that cannot serve: one line, exit 2, before training starts
        # (the data scan and the option checks run before the first step), or a file whose header
        # passed the scan but whose pixels do not decode, found by a loader worker.
        print(f'error: {_without_worker_traceback(err)}', file=sys.stderr)
        raise SystemExit(EXIT_NOT_STARTED) from err
    except KeyboardInterrupt:
        print(f'\ninterrupted: {stopped}', file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED)
    except Terminated:
        print(f'terminated (SIGTERM): {stopped}', file=sys.stderr)
        raise SystemExit(EXIT_TERMINATED)
