"""A local web page for restoring photos with MPRNet: deblurring, deraining, denoising.

    pip install -e '.[app]'
    python app.py                 # then open http://127.0.0.1:7860

Drop or pick an image, choose the task (or type several in order, e.g.
Denoising,Deblurring, to run them one after the other), compare input and result with a
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
import traceback
from typing import List, Optional

# Before PyTorch loads its OpenMP runtime: idle threads sleep instead of spinning. On a machine
# that is busy with other work, spinning threads made a run several times slower (measured in
# docs/PERFORMANCE.md); alone on a machine the time is the same. OMP_WAIT_POLICY set by the user wins.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

from MPRNet import PRESETS
from utils.allocator import keep_freed_memory
from utils.files.image_io import IMAGE_EXTENSIONS
from utils.files.weights import REPO_ROOT, WEIGHT_CHOICES
from utils.inference.cli import (UsageError, add_model_arguments, add_pixel_limit_argument, add_tiling_arguments,
                                 check_inference_arguments)
from utils.inference.uploads import PAGE_MAX_MEGAPIXELS, SAMPLES_DIR, AppError, Models, restore, sample_examples

DEFAULT_PORT = 7860
DEFAULT_MAX_UPLOAD_MB = 200
DEFAULT_MAX_QUEUE = 16


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


def build_page(models: Models, out_dir: str, max_megapixels: float = PAGE_MAX_MEGAPIXELS):
    """The Gradio Blocks page (not launched)."""
    gr = import_gradio()

    def on_restore(path, task, chain, progress=gr.Progress()):
        def report(done, total):
            progress((done, total), desc=f'tile {done} of {total}' if total > 1 else 'restoring', unit='tiles')

        progress(0, desc='reading the image')
        try:  # a chain typed in replaces the one task chosen above it
            result = restore(path, (chain or '').strip() or task, models, out_dir, max_megapixels, report)
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
    precision = 'exact fp32' if models.options.precision == 'exact' else f'{models.options.precision} precision'
    with gr.Blocks(title='MPRNet: restore a photo', analytics_enabled=False) as page:
        gr.Markdown('## MPRNet: deblur, derain or denoise a photo\nEverything runs on this computer '
                    f'({models.device}, {precision}); '
                    'nothing is uploaded anywhere else.')
        with gr.Row():
            with gr.Column(scale=2):
                file_in = gr.File(label='Image', type='filepath', file_types=list(IMAGE_EXTENSIONS),
                                  elem_id='input-file', height=160)
                task = gr.Radio(list(PRESETS), value='Deblurring', label='Task', elem_id='task')
                chain = gr.Textbox(label='Or several tasks in order (blurry and noisy: Denoising,Deblurring)',
                                   placeholder='Denoising,Deblurring', elem_id='chain', max_lines=1)
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
        button.click(on_restore, inputs=[file_in, task, chain], outputs=[slider, result_file, info],
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
    add_pixel_limit_argument(parser, PAGE_MAX_MEGAPIXELS)
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
    """A temporary folder of this user's only (mode 0700) for the restored photos and, through
    GRADIO_TEMP_DIR, for Gradio's copies of every upload and result (otherwise /tmp/gradio,
    readable by every user and never emptied). Removed however the server stops: Ctrl-C, an
    error, or SIGTERM (``timeout``, ``kill``, a container stop), which by default would end the
    process without running any cleanup and leave every photo behind."""
    out_dir = tempfile.mkdtemp(prefix='mprnet-app-')
    cache = os.path.join(out_dir, 'gradio')
    os.mkdir(cache, 0o700)
    saved_cache = os.environ.get('GRADIO_TEMP_DIR')
    os.environ['GRADIO_TEMP_DIR'] = cache  # before Gradio is imported: it may read it then
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        yield out_dir
    finally:
        signal.signal(signal.SIGTERM, previous)
        if saved_cache is None:
            os.environ.pop('GRADIO_TEMP_DIR', None)
        else:
            os.environ['GRADIO_TEMP_DIR'] = saved_cache
        shutil.rmtree(out_dir, ignore_errors=True)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        options = check_inference_arguments(args, auto_tile=True)
        for option in ('max_upload_mb', 'max_queue'):  # sizes: below 1 no request could ever be taken
            if getattr(args, option) < 1:
                raise UsageError(f'--{option} must be at least 1, got {getattr(args, option)}')
        check_listen_address(args.host, args.port)
        keep_freed_memory()  # as every entry point: no page faults on every request (utils/allocator.py)
    except (UsageError, ValueError) as err:  # ValueError: a bad MPRNET_ALLOCATOR
        print(f'error: {err}', file=sys.stderr)
        return 2
    try:
        with results_folder() as out_dir:
            try:
                gr = import_gradio()
                models = Models(options)
            except AppError as err:
                print(f'error: {err}', file=sys.stderr)
                return 2
            for line in models.status():
                print(line)
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
