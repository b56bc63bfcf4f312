"""Restoring lists of images and folders of image files: what the demo and the test scripts run.

Inputs are read lazily and in order; consecutive images of the same size
share a batch of up to `batch_size`; results are encoded and written in
background threads while the model runs, each written atomically (a crash
never leaves half a PNG). Planning the outputs (names, overwrite checks) is
``utils.inference.cli.plan_outputs``.
"""
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from utils.files.image_io import (DEFAULT_MAX_MEGAPIXELS, IMAGE_EXTENSIONS, is_image_file, list_images, read_image,
                            write_image)
from utils.files.image_header import require_regular_file
from utils.inference.restorer import Restorer

__all__ = ['collect_inputs', 'same_size_batches', 'restore_batch', 'restore_images', 'restore_folder']

Pair = Tuple[str, str]
T = TypeVar('T')
MAX_PENDING_WRITES = 8  # bounds the memory held by results waiting to be written


def collect_inputs(input_path: str) -> Tuple[List[str], str, int]:
    """(image files, the folder they are in, number of other files ignored) for a folder or one file.

    Image names that are not regular files (dangling links, pipes) are among the inputs, so the
    run names them as failed (``list_images``); folders are not counted."""
    if os.path.isfile(input_path):
        if not is_image_file(input_path):
            raise ValueError(f'{input_path} is not a supported image; use one of: {", ".join(IMAGE_EXTENSIONS)}')
        return [input_path], os.path.dirname(os.path.abspath(input_path)), 0
    if not os.path.isdir(input_path):
        if os.path.lexists(input_path):
            require_regular_file(input_path)  # a pipe or a dangling link, named for what it is
        raise FileNotFoundError(f'input {input_path} does not exist')
    files = list_images(input_path)
    if not files:
        raise FileNotFoundError(f'no images found in {input_path} (looked for {", ".join(IMAGE_EXTENSIONS)})')
    others = sum(not is_image_file(f) and not os.path.isdir(os.path.join(input_path, f))
                 for f in os.listdir(input_path))
    return files, input_path, others


def same_size_batches(items: Iterable[T], batch_size: int, size_of: Callable[[T], tuple]) -> Iterator[List[T]]:
    """Lazily group consecutive items of equal size_of(item) into lists of at most batch_size."""
    batch: List[T] = []
    for item in items:
        if batch and (len(batch) == batch_size or size_of(batch[0]) != size_of(item)):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def restore_batch(restorer: Restorer, images: Sequence[np.ndarray]) -> np.ndarray:
    """Same-size float (H, W, 3) images in [0, 1] -> restored float32 (N, H, W, 3) in [0, 1]."""
    batch = torch.from_numpy(np.stack([np.asarray(img, dtype=np.float32) for img in images]))
    out = restorer(batch.permute(0, 3, 1, 2))
    return out.permute(0, 2, 3, 1).cpu().numpy()


def restore_images(restorer: Restorer, images: Sequence[np.ndarray], batch_size: int = 1) -> List[np.ndarray]:
    """Restore a list of (H, W, 3) images of any sizes, batching consecutive images of equal size."""
    restored: List[np.ndarray] = []
    for batch in same_size_batches(images, batch_size, lambda img: img.shape):
        restored.extend(restore_batch(restorer, batch))
    return restored


class _Failures:
    """Per-file failures: re-raised (keep_going False) or named on stderr and counted."""

    def __init__(self, keep_going: bool):
        self.keep_going, self.inputs = keep_going, []

    def __call__(self, sources: Sequence[str], error: Exception, what: str = '') -> None:
        if not self.keep_going:
            raise error
        self.inputs.extend(sources)
        tqdm.write(f'failed: {", ".join(sources)}: {what}{error}', file=sys.stderr)


def _read_all(plan: Sequence[Pair], fail: _Failures,
              max_megapixels: Optional[float]) -> Iterator[Tuple[str, str, np.ndarray, int]]:
    for src, dst in plan:
        try:
            img, bit_depth = read_image(src, max_megapixels)
        except (OSError, ValueError) as err:
            fail([src], err)
            continue
        except MemoryError as err:  # numpy's _ArrayMemoryError too: this file fails, the others go on
            fail([src], MemoryError(f'not enough memory to read it ({err})'))
            continue
        yield src, dst, img, bit_depth


def restore_folder(restorer: Restorer, plan: Sequence[Pair], batch_size: int = 1, desc: Optional[str] = None,
                   bit_depth: Optional[int] = 8, keep_going: bool = False,
                   on_done: Optional[Callable[[str, str], None]] = None,
                   max_megapixels: Optional[float] = DEFAULT_MAX_MEGAPIXELS, replace: bool = False) -> List[str]:
    """Restore each (input, output PNG) of `plan`; returns the inputs that failed.

    Args:
        batch_size: consecutive images of the same size restored together.
        bit_depth: 8 or 16 for every result, or None to follow each input (16-bit in,
            16-bit out; the demo).
        keep_going: a file that cannot be read, restored or written is named on
            stderr and the others go on (the demo); otherwise the first error stops
            the run (the benchmark scripts, whose results must be complete).
        on_done: called as on_done(input, output) once a result is written.
        max_megapixels: the reader's pixel limit (``read_image``).
        replace: replace a file found at a result's name (--overwrite); otherwise one that
            appeared after planning (another run into the same folder) is kept and the
            result is a failure.
    """
    fail = _Failures(keep_going)
    pending: List[tuple] = []

    def settle(entry) -> None:
        future, src, dst = entry
        try:
            future.result()
        except (OSError, ValueError) as err:
            fail([src], err, f'cannot write {dst}: ')
            return
        if on_done is not None:
            on_done(src, dst)

    items = _read_all(plan, fail, max_megapixels)
    with ThreadPoolExecutor(max_workers=2) as writer, tqdm(total=len(plan), desc=desc, unit='img') as bar:
        for batch in same_size_batches(items, batch_size, lambda item: item[2].shape):
            try:
                restored = restore_batch(restorer, [img for _, _, img, _ in batch])
            except (RuntimeError, ValueError) as err:
                fail([src for src, *_ in batch], err)
                bar.update(len(batch))
                continue
            for (src, dst, _, depth), img in zip(batch, restored):
                out_depth = bit_depth or (16 if depth >= 16 else 8)
                pending.append((writer.submit(write_image, dst, img, out_depth, replace), src, dst))
            bar.update(len(batch))
            while len(pending) > MAX_PENDING_WRITES:
                settle(pending.pop(0))
        for entry in pending:
            settle(entry)
    return fail.inputs
