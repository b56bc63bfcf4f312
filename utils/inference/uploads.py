"""Restoring one uploaded photo for the web page (app.py), without the page itself: the model of
each task loaded once (``Models``), an upload read with its checks (``load_upload``: size from the
header, the pixel limit, the file's own notes), the restored PNG and the line that describes it
(``restore``), and the bundled samples offered as examples. Everything the page shows as an error
is an ``AppError`` with a message for the user.
"""
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from MPRNet import PRESETS
from utils.tasks import require_canonical
from utils.device import resolve_device
from utils.files.image_header import open_header
from utils.files.image_io import (IMAGE_EXTENSIONS, ImageTooLargeError, image_to_tensor, read_image, tensor_to_image,
                                  to_uint8, write_image)
from utils.files.weights import REPO_ROOT, WEIGHT_CHOICES, WeightsNotFoundError, resolve_weights
from utils.inference.chain import ChainRestorer, chain_label, parse_task_chain
from utils.inference.loading import build_restorer
from utils.inference.options import InferenceOptions, UsageError
from utils.inference.restorer import NonFiniteOutputError, Restorer, Tiling


# The web page's default pixel limit (app.py --max_megapixels); larger images go to demo.py --tile,
# whose default limit is image_io.DEFAULT_MAX_MEGAPIXELS.
PAGE_MAX_MEGAPIXELS = 16.0
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

    def __call__(self, done: int, total: int, tiling: Optional[Tiling] = None) -> None:
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
    """One Restorer per task, built on first use with the demo's weights lookup and `options`
    (the page's: auto, official or bundled weights, images that do not fit go in tiles)."""

    def __init__(self, options: InferenceOptions):
        if options.weights not in WEIGHT_CHOICES:
            raise AppError(f"weights must be one of {', '.join(WEIGHT_CHOICES)}, got {options.weights!r}")
        try:
            self.device = resolve_device(options.device)
        except RuntimeError as err:
            raise AppError(str(err)) from err
        self.options = options
        self._loaded: Dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, **settings) -> 'Models':
        """The page's models for settings named as InferenceOptions' fields (by default precision
        auto, and tiles for images that do not fit); AppError for a setting the options refuse."""
        try:
            options = InferenceOptions(**{'precision': 'auto', 'auto_tile': True, **settings})
        except UsageError as err:
            raise AppError(str(err)) from err
        return cls(options)

    @property
    def root(self) -> str:
        return self.options.root

    def lookup(self, task: str) -> Tuple[str, str]:
        """(path, kind) of the task's weights; AppError with where to get them when missing."""
        try:
            return resolve_weights(task, self.options.weights, self.root)
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
                    restorer, info = build_restorer(task, self.options, progress=relay)
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
                max_megapixels: float = PAGE_MAX_MEGAPIXELS) -> Tuple[np.ndarray, int, List[str]]:
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
    except MemoryError as err:  # numpy's _ArrayMemoryError too: a message on the page, the server goes on
        raise AppError(f'not enough memory to read {name}; try a smaller image') from err
    return img, bit_depth, image_notes(path, name)


def describe(stages: Sequence[LoadedModel], restorer: Union[Restorer, ChainRestorer], models: Models,
             img: np.ndarray, bit_depth: int, seconds: float, notes: List[str], tiling: Tiling = Tiling()) -> str:
    """Markdown: the chain (several tasks), the weights of each task, the size, the time, tiling
    and conversion notes."""
    lines = [f'**{chain_label([s.task for s in stages])}**, one model after the other.'] if len(stages) > 1 else []
    for loaded in stages:
        weights = os.path.relpath(loaded.weights, models.root) if loaded.kind != 'file' else loaded.weights
        lines.append(f'**{loaded.task}** with {KIND_WORDS[loaded.kind]} `{weights}`'
                     + (f' ({BUNDLED_NOTE})' if loaded.kind == 'bundled' else '') + '.')
    lines += [f'{img.shape[1]}x{img.shape[0]} px, {bit_depth}-bit in, {16 if bit_depth >= 16 else 8}-bit PNG out; '
              f"restored in **{seconds:.2f} s** on {restorer.device} ({', '.join(s.mode for s in stages)})."]
    if tiling.tile:
        why = f': {tiling.reason}' if tiling.reason else ''
        lines.append(f'Restored in overlapping {tiling.tile}-px tiles{why}.')
    lines += [f'Note: {note}.' for note in notes]
    return '\n\n'.join(lines)


def output_name(path: str, task: str) -> str:
    """File name of the result: <input name>_<task>.png (a chain: its tasks joined by '_')."""
    return f'{os.path.splitext(os.path.basename(path))[0]}_{task.lower()}.png'


def restore(path: Optional[str], task: str, models: Models, out_dir: str,
            max_megapixels: float = PAGE_MAX_MEGAPIXELS, progress: Optional[Progress] = None) -> Restoration:
    """Restore one uploaded image file for `task` (or a comma-separated chain of tasks, run one
    after the other in memory); the result is written as a PNG under `out_dir`.

    Raises AppError with a one-line message for anything the user can fix
    (no file, not an image, too large, no weights for the task).
    """
    try:
        tasks = parse_task_chain(task or '')
    except ValueError as err:
        raise AppError(str(err)) from err
    img, bit_depth, notes = load_upload(path, max_megapixels)
    stages = [models.get(t) for t in tasks]
    restorer = stages[0].restorer if len(stages) == 1 else ChainRestorer([s.restorer for s in stages])
    for stage in stages:
        stage.progress.target = progress
    start = time.perf_counter()
    try:
        restored, tiling = restorer.restore(image_to_tensor(img)[None])
        restored = tensor_to_image(restored[0])
    except NonFiniteOutputError as err:
        raise AppError(str(err)) from err
    finally:
        for stage in stages:
            stage.progress.target = None
    seconds = time.perf_counter() - start
    folder = os.path.join(out_dir, uuid.uuid4().hex)
    png = os.path.join(folder, output_name(path, '_'.join(tasks)))
    write_image(png, restored, bit_depth=16 if bit_depth >= 16 else 8)
    info = describe(stages, restorer, models, img, bit_depth, seconds, notes, tiling)
    kinds = sorted({s.kind for s in stages})
    return Restoration(to_uint8(img), to_uint8(restored), png, info, bit_depth, seconds, ','.join(kinds))


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


