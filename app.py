"""A local web page for restoring photos with MPRNet: deblurring, deraining, denoising.

    pip install -e '.[app]'
    python app.py                 # then open http://127.0.0.1:7860

Drop or pick an image, choose the task, compare input and result with a
slider and download the result as a PNG (16-bit in, 16-bit out). The page
uses the demo's machinery: the same weights lookup (official, else bundled;
``utils/files/weights.py``), one ``Restorer`` per task with the chosen device,
precision and tiling, and ``utils/files/image_io`` for reading and writing, so
grayscale, palette, RGBA and 16-bit files are handled as by ``demo.py``.
Requests wait in Gradio's queue and run one at a time; the page stays
responsive meanwhile. The server listens on 127.0.0.1 only, unless ``--host``
says otherwise; ``--share`` (off) would publish it through a Gradio link.
"""
import argparse
import contextlib
import errno
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from MPRNet import PRESETS, canonical_task, require_canonical
from utils.allocator import keep_freed_memory
from utils.device import resolve_device
from utils.files.image_header import open_header
from utils.files.image_io import (IMAGE_EXTENSIONS, ImageTooLargeError, image_to_tensor, read_image, tensor_to_image,
                                  to_uint8, write_image)
from utils.files.weights import REPO_ROOT, WEIGHT_CHOICES, WeightsNotFoundError, resolve_weights
from utils.inference.cli import (UsageError, add_model_arguments, add_pixel_limit_argument, add_tiling_arguments,
                                 check_inference_arguments)
from utils.inference.loading import DEFAULT_OVERLAP, build_restorer
from utils.inference.restorer import PRECISION_CHOICES, NonFiniteOutputError, Restorer
from utils.inference.tiling import check_tile_options

DEFAULT_PORT = 7860
DEFAULT_MAX_MEGAPIXELS = 16.0
DEFAULT_MAX_UPLOAD_MB = 200
DEFAULT_MAX_QUEUE = 16
SAMPLES_DIR = os.path.join(REPO_ROOT, 'samples', 'input')
# Sample file name prefix -> the task that fits it (samples/README.md).
SAMPLE_TASKS = {'blur_': 'Deblurring', 'rain_': 'Deraining', 'noise_': 'Denoising'}
KIND_WORDS = {'official': 'the official weights', 'bundled': 'the bundled weights', 'file': 'the weights'}
BUNDLED_NOTE = ('a compact model trained by this project on synthetic degradations; the official weights '
                'restore better, see pretrained_models/README.md')
Progress = Callable[[int, int], None]


class AppError(Exception):
    """A request the page cannot serve; the message is shown on the page as it is."""


# ---------------------------------------------------------------------------- models


class ProgressRelay:
    """A Restorer's per-tile progress callback that forwards to whichever request is running."""

    def __init__(self):
        self.target: Optional[Progress] = None

    def __call__(self, done: int, total: int) -> None:
        if self.target is not None:
            self.target(done, total)


@dataclass
class LoadedModel:
    """A task's Restorer and where its weights came from."""
    task: str
    restorer: Restorer
    weights: str
    kind: str
    mode: str                # precision and path, e.g. 'bf16 autocast + fast path (auto)'
    progress: ProgressRelay


class Models:
    """One Restorer per task, built on first use with the demo's weights lookup and options."""

    def __init__(self, device: str = 'auto', precision: str = 'auto', fast: bool = False,
                 tile: Optional[int] = None, tile_overlap: int = DEFAULT_OVERLAP, weights: str = 'auto',
                 root: str = REPO_ROOT, exact: bool = False, max_memory: Optional[float] = None):
        if weights not in WEIGHT_CHOICES:
            raise AppError(f"weights must be one of {', '.join(WEIGHT_CHOICES)}, got {weights!r}")
        if precision not in PRECISION_CHOICES:
            raise AppError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}")
        if tile is not None:
            try:
                check_tile_options(tile, tile_overlap)
            except ValueError as err:
                raise AppError(f'--tile {tile} --tile_overlap {tile_overlap}: {err}') from err
        try:
            self.device = resolve_device(device)
        except RuntimeError as err:
            raise AppError(str(err)) from err
        self.precision, self.fast, self.tile, self.tile_overlap = precision, fast, tile, tile_overlap
        self.exact, self.max_memory = exact, max_memory
        self.weights, self.root = weights, root
        self._loaded: Dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def lookup(self, task: str) -> Tuple[str, str]:
        """(path, kind) of the task's weights; AppError with where to get them when missing."""
        try:
            return resolve_weights(task, self.weights, self.root)
        except WeightsNotFoundError as err:
            raise AppError(str(err)) from err

    def status(self) -> List[str]:
        """One line per task: which weights the page would use, or why it cannot."""
        lines = []
        for task in PRESETS:
            try:
                path, kind = self.lookup(task)
                lines.append(f'{task}: {kind} weights {os.path.relpath(path, self.root)}')
            except AppError as err:
                lines.append(f'{task}: unavailable ({err})')
        return lines

    def get(self, task: str) -> LoadedModel:
        """The model of `task` (a canonical name), loading it the first time (as the demo does: ``build_restorer``,
        images above --max_memory of activations in tiles)."""
        require_canonical(task)  # restore(), the page's entry point, canonicalised it
        with self._lock:
            if task not in self._loaded:
                relay = ProgressRelay()
                try:
                    restorer, info = build_restorer(task, self.weights, self.device, self.precision, self.fast,
                                                    exact=self.exact, tile=self.tile, tile_overlap=self.tile_overlap,
                                                    auto_tile=True, max_memory_gb=self.max_memory, progress=relay,
                                                    root=self.root)
                except WeightsNotFoundError as err:  # the whole message: it says where to get them
                    raise AppError(str(err)) from err
                except (RuntimeError, ValueError) as err:  # damaged or mismatched weights, fp16 on a CPU
                    raise AppError(str(err).splitlines()[0]) from err
                self._loaded[task] = LoadedModel(task, restorer, info.weights, info.kind, info.mode, relay)
            return self._loaded[task]


# ---------------------------------------------------------------------------- one request


@dataclass
class Restoration:
    """What one request gives the page: 8-bit views, the PNG to download and a description."""
    before: np.ndarray
    after: np.ndarray
    png: str
    info: str
    bit_depth: int
    seconds: float
    kind: str


def image_notes(path: str, name: str) -> List[str]:
    """What the demo's reading does to this file that the user should know (gray, palette, alpha),
    read from the header alone; empty when the header cannot be read here."""
    try:
        # The header reader's view (no pixels decoded, no decompression-bomb error for a large photo).
        with open_header(path) as img:
            mode, transparent = img.mode, 'transparency' in img.info
    except Exception:  # a format only OpenCV reads: the decoder will tell
        return []
    notes = []
    if mode in ('1', 'L', 'LA', 'La', 'I', 'I;16', 'I;16B', 'I;16L', 'F'):
        notes.append(f'{name} is grayscale: it was restored as RGB (three equal channels)')
    elif mode in ('P', 'PA'):
        notes.append(f'{name} is a palette image: it was expanded to RGB')
    if mode in ('LA', 'La', 'PA', 'RGBA', 'RGBa') or transparent:
        notes.append(f'{name} has transparency: the alpha channel was dropped, the result is opaque RGB')
    return notes


def too_large(name: str, err: ImageTooLargeError) -> AppError:
    """The page's message for an image above its pixel limit: what the page allows and where to go."""
    return AppError(f'{name} is {err.width}x{err.height} ({err.megapixels:.1f} megapixels); this page restores up '
                    f'to {err.max_megapixels:g} (app.py --max_megapixels). For larger images use demo.py --tile 512')


def load_upload(path: Optional[str],
                max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> Tuple[np.ndarray, int, List[str]]:
    """Read an uploaded file like the demo does: (float32 RGB HxWx3 in [0, 1], bit depth, notes).

    Raises AppError with the demo's wording for a missing file, a file that is
    not a supported image, one that cannot be decoded, and one that is too large
    (the reader checks the size from the header before decoding, whatever the
    format; a header it cannot read is refused).
    """
    if not path:
        raise AppError('no image yet: drop an image on the page or click to pick one')
    name = os.path.basename(path)
    if not name.lower().endswith(IMAGE_EXTENSIONS):
        raise AppError(f'{name} is not a supported image; use one of: {", ".join(IMAGE_EXTENSIONS)}')
    try:
        img, bit_depth = read_image(path, max_megapixels)
    except ImageTooLargeError as err:
        raise too_large(name, err) from err
    except (ValueError, FileNotFoundError) as err:
        raise AppError(str(err).replace(path, name)) from err
    return img, bit_depth, image_notes(path, name)


def describe(loaded: LoadedModel, models: Models, img: np.ndarray, bit_depth: int, seconds: float,
             notes: List[str]) -> str:
    """Markdown: the weights used, the size, the time, tiling and conversion notes."""
    restorer = loaded.restorer
    weights = os.path.relpath(loaded.weights, models.root) if loaded.kind != 'file' else loaded.weights
    lines = [f'**{loaded.task}** with {KIND_WORDS[loaded.kind]} `{weights}`'
             + (f' ({BUNDLED_NOTE})' if loaded.kind == 'bundled' else '') + '.',
             f'{img.shape[1]}x{img.shape[0]} px, {bit_depth}-bit in, {16 if bit_depth >= 16 else 8}-bit PNG out; '
             f'restored in **{seconds:.2f} s** on {restorer.device} ({loaded.mode}).']
    if restorer.last_tile:
        why = f': {restorer.last_tiling_reason}' if restorer.last_tiling_reason else ''
        lines.append(f'Restored in overlapping {restorer.last_tile}-px tiles{why}.')
    lines += [f'Note: {note}.' for note in notes]
    return '\n\n'.join(lines)


def output_name(path: str, task: str) -> str:
    """File name of the result: <input name>_<task>.png."""
    return f'{os.path.splitext(os.path.basename(path))[0]}_{task.lower()}.png'


def restore(path: Optional[str], task: str, models: Models, out_dir: str,
            max_megapixels: float = DEFAULT_MAX_MEGAPIXELS, progress: Optional[Progress] = None) -> Restoration:
    """Restore one uploaded image file for `task`; the result is written as a PNG under `out_dir`.

    Raises AppError with a one-line message for anything the user can fix
    (no file, not an image, too large, no weights for the task).
    """
    try:
        task = canonical_task(task or '')
    except ValueError as err:
        raise AppError(str(err)) from err
    img, bit_depth, notes = load_upload(path, max_megapixels)
    loaded = models.get(task)
    loaded.progress.target = progress
    start = time.perf_counter()
    try:
        restored = tensor_to_image(loaded.restorer(image_to_tensor(img)[None])[0])
    except NonFiniteOutputError as err:
        raise AppError(str(err)) from err
    finally:
        loaded.progress.target = None
    seconds = time.perf_counter() - start
    folder = os.path.join(out_dir, uuid.uuid4().hex)
    png = os.path.join(folder, output_name(path, task))
    write_image(png, restored, bit_depth=16 if bit_depth >= 16 else 8)
    info = describe(loaded, models, img, bit_depth, seconds, notes)
    return Restoration(to_uint8(img), to_uint8(restored), png, info, bit_depth, seconds, loaded.kind)


def sample_task(path: str) -> Optional[str]:
    """The task a bundled sample is for: its folder's name (samples/input/<Task>/) or its name's prefix."""
    folder = os.path.basename(os.path.dirname(path))
    if folder in PRESETS:
        return folder
    name = os.path.basename(path)
    return next((task for prefix, task in SAMPLE_TASKS.items() if name.startswith(prefix)), None)


def sample_examples(folder: str = SAMPLES_DIR) -> List[List[str]]:
    """[[file, task], ...] for the bundled sample images whose folder or name says their task."""
    examples = []
    for parent, dirs, files in sorted(os.walk(folder)):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(parent, name)
            task = sample_task(path)
            if task and name.lower().endswith(IMAGE_EXTENSIONS):
                examples.append([path, task])
    return examples


# ---------------------------------------------------------------------------- the page


def import_gradio():
    """gradio, or AppError saying how to install it."""
    os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')  # nothing leaves the machine
    try:
        import gradio  # lazy: an optional extra (pip install -e '.[app]'), named if missing
    except ImportError as err:
        raise AppError('gradio is not installed; the web page is an optional extra: '
                       "pip install -e '.[app]' (in the repository)") from err
    return gradio


def one_line(err: BaseException) -> str:
    """The first line of an unexpected error, for the page (the traceback goes to the console)."""
    text = str(err).strip().splitlines()
    return f'{type(err).__name__}: {text[0]}' if text else type(err).__name__


def build_page(models: Models, out_dir: str, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS):
    """The Gradio Blocks page (not launched)."""
    gr = import_gradio()

    def on_restore(path, task, progress=gr.Progress()):
        def report(done, total):
            progress((done, total), desc=f'tile {done} of {total}' if total > 1 else 'restoring', unit='tiles')

        progress(0, desc='reading the image')
        try:
            result = restore(path, task, models, out_dir, max_megapixels, report)
        except AppError as err:
            gr.Warning(str(err), title='Could not restore')
            return None, None, f'**Could not restore:** {err}'
        except Exception as err:  # never a stack trace on the page; the console keeps it
            traceback.print_exc()
            gr.Warning(one_line(err), title='Could not restore')
            return None, None, f'**Could not restore:** {one_line(err)}'
        return (result.before, result.after), result.png, result.info

    def on_new_file(path):
        if not path:
            return None, None, 'Drop an image above, choose the task and press **Restore**.'
        return None, None, f'Ready: `{os.path.basename(path)}`. Choose the task and press **Restore**.'

    weights_lines = '\n'.join(f'- {line}' for line in models.status())
    with gr.Blocks(title='MPRNet: restore a photo', analytics_enabled=False) as page:
        gr.Markdown('## MPRNet: deblur, derain or denoise a photo\nEverything runs on this computer '
                    f'({models.device}, {"exact fp32" if models.exact else models.precision + " precision"}); '
                    'nothing is uploaded anywhere else.')
        with gr.Row():
            with gr.Column(scale=2):
                file_in = gr.File(label='Image', type='filepath', file_types=list(IMAGE_EXTENSIONS),
                                  elem_id='input-file', height=160)
                task = gr.Radio(list(PRESETS), value='Deblurring', label='Task', elem_id='task')
                button = gr.Button('Restore', variant='primary', elem_id='restore')
                examples = sample_examples()
                if examples:
                    gr.Examples(examples, inputs=[file_in, task], label='Samples (samples/input/)',
                                examples_per_page=6)
                gr.Markdown('png, jpg, bmp, tif or webp; grayscale, palette and RGBA become RGB; 16-bit images '
                            'give 16-bit PNGs.')
            with gr.Column(scale=3):
                slider = gr.ImageSlider(label='Input | restored (drag the handle)', type='numpy', format='png',
                                        interactive=False, buttons=['fullscreen'], elem_id='comparison')
                info = gr.Markdown('Drop an image on the left, choose the task and press **Restore**.',
                                   elem_id='info')
                result_file = gr.File(label='Download the result (PNG)', interactive=False, elem_id='result-file',
                                      height=80)
        gr.Markdown(f'Weights:\n{weights_lines}')
        file_in.change(on_new_file, inputs=file_in, outputs=[slider, result_file, info], queue=False)
        button.click(on_restore, inputs=[file_in, task], outputs=[slider, result_file, info],
                     concurrency_limit=1, concurrency_id='restore')
    return page


# ---------------------------------------------------------------------------- command line


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="A local web page for restoring photos with MPRNet (needs: pip install -e '.[app]').")
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to listen on (default 127.0.0.1: this computer only; 0.0.0.0 opens the '
                             'page to your network)')
    parser.add_argument('--port', type=int, default=DEFAULT_PORT,
                        help=f'port to listen on (default {DEFAULT_PORT})')
    parser.add_argument('--share', action='store_true',
                        help="also publish the page through a public Gradio link (off by default; sends your "
                             "images through Gradio's servers)")
    add_model_arguments(parser, 'auto', 'auto (official weights if present, else bundled; default), official or '
                        'bundled', precision_default='auto', weights_choices=WEIGHT_CHOICES)
    add_tiling_arguments(parser)
    parser.add_argument('--weights_root', default=REPO_ROOT,
                        help='folder that holds pretrained_models/ (default: this repository)')
    add_pixel_limit_argument(parser, DEFAULT_MAX_MEGAPIXELS)
    parser.add_argument('--max_upload_mb', type=int, default=DEFAULT_MAX_UPLOAD_MB,
                        help=f'largest upload in MB (default {DEFAULT_MAX_UPLOAD_MB})')
    parser.add_argument('--max_queue', type=int, default=DEFAULT_MAX_QUEUE,
                        help='requests that may wait in the queue; more are turned away '
                             f'(default {DEFAULT_MAX_QUEUE})')
    return parser.parse_args(argv)


def check_listen_address(host: str, port: int) -> None:
    """UsageError naming --host or --port when the page could not listen there: a port out of
    range, a host that is no address, an address not on this computer, a port in use. Checked
    by binding a socket once before the (slow) page is built, so each gets its own message."""
    if not 1 <= port <= 65535:
        raise UsageError(f'--port must be between 1 and 65535, got {port}')
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as err:
        raise UsageError(f'--host {host} is not an address or a name this computer can resolve; use e.g. '
                         '127.0.0.1 (this computer) or 0.0.0.0 (the network)') from err
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise UsageError(f'port {port} on {host} is taken; choose another --port') from err
            if err.errno == errno.EACCES:
                raise UsageError(f'port {port} needs administrator rights; choose a --port above 1023') from err
            raise UsageError(f'cannot listen on {host}:{port} ({err.strerror}); --host must be an address of '
                             'this computer, e.g. 127.0.0.1 or 0.0.0.0') from err


def _stop(signum: int, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the server as Ctrl-C does, through every finally


@contextlib.contextmanager
def results_folder():
    """A temporary folder for the restored photos, removed however the server stops: Ctrl-C,
    an error, or SIGTERM (``timeout``, ``kill``, a container stop), which by default would end
    the process without running any cleanup and leave every restored photo behind."""
    out_dir = tempfile.mkdtemp(prefix='mprnet-app-')
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        yield out_dir
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(out_dir, ignore_errors=True)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        check_inference_arguments(args)
        check_listen_address(args.host, args.port)
        keep_freed_memory()  # as every entry point: no page faults on every request (utils/allocator.py)
    except (UsageError, ValueError) as err:  # ValueError: a bad MPRNET_ALLOCATOR
        print(f'error: {err}', file=sys.stderr)
        return 2
    try:
        gr = import_gradio()
        models = Models(args.device, args.precision, args.fast, args.tile, args.tile_overlap, args.weights,
                        args.weights_root, exact=args.exact, max_memory=args.max_memory)
    except AppError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    for line in models.status():
        print(line)
    try:
        with results_folder() as out_dir:
            page = build_page(models, out_dir, args.max_megapixels)
            page.queue(default_concurrency_limit=1, max_size=args.max_queue)
            theme = gr.themes.Default(font=['ui-sans-serif', 'system-ui', 'sans-serif'],
                                      font_mono=['ui-monospace', 'monospace'])  # no web fonts to fetch
            page.launch(server_name=args.host, server_port=args.port, share=args.share, ssr_mode=False,
                        allowed_paths=[out_dir, SAMPLES_DIR], max_file_size=f'{args.max_upload_mb}mb', theme=theme,
                        show_error=False)
    except OSError as err:  # taken between the check and the launch
        print(f'error: cannot serve on {args.host}:{args.port} ({err.strerror or err}); try another --port',
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
