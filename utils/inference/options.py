"""How a run restores, as one frozen value: ``InferenceOptions`` (weights, device, precision,
tiles and their overlap, memory budget, pixel limit, auto-tiling). Building it is the one
check of these options, for the command line (``InferenceOptions.from_args``) and the web
page's settings alike; what loads the model (utils.inference.loading) takes it as it is.

Precision names, shared with training's OPTIM.AMP (utils.training.trainer): fp32, bf16, fp16
and auto; inference adds exact (fp32 in the published order: the published numbers) and
training takes off as fp32's other name.
"""
import argparse
import math
import sys
from dataclasses import dataclass, fields
from typing import Optional

import torch

from utils.files.weights import REPO_ROOT
from utils.inference.tiling import DEFAULT_OVERLAP, TilePlan

__all__ = ['UsageError', 'PRECISION_CHOICES', 'DEFAULT_OVERLAP', 'MIN_MEMORY_GB', 'InferenceOptions']

PRECISION_CHOICES = ('auto', 'fp32', 'fp16', 'bf16', 'exact')
DEVICE_CHOICES = ('auto', 'cpu', 'cuda')
MIN_MEMORY_GB = 2 ** -10  # 1 MiB: less rounds to a budget of a few bytes, which no tile fits
EXACT_NOTE = 'note: --exact is now --precision exact (the old flag still works)'


class UsageError(Exception):
    """Stops a script before any work; the message says what to do."""


def _positive_finite(value: float) -> bool:
    return math.isfinite(value) and value > 0


@dataclass(frozen=True)
class InferenceOptions:
    """Which weights and how to run them. Construction checks every field (UsageError naming the
    command-line option); an instance is always valid.

    weights: auto, official, bundled (looked up under `root`) or a checkpoint path.
    device: auto (CUDA when available), cpu or cuda.
    precision: one of PRECISION_CHOICES; exact is fp32 in the published order.
    fast: channels-last, batched stage-1/2 patches, cuDNN autotuning (not with exact).
    tile / tile_overlap: overlapping tiles of this many pixels (None: whole images).
    max_memory_gb: memory one image may use before auto_tile splits it (None: the default).
    max_megapixels: the reader's pixel limit (None: the caller's).
    auto_tile: tile images that would not fit (the demo and the page); off, images too big fail.
    """
    weights: str = 'auto'
    device: str = 'auto'
    precision: str = 'fp32'
    fast: bool = False
    tile: Optional[int] = None
    tile_overlap: int = DEFAULT_OVERLAP
    max_memory_gb: Optional[float] = None
    max_megapixels: Optional[float] = None
    auto_tile: bool = False
    root: str = REPO_ROOT

    def __post_init__(self):
        if self.device != 'auto':
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError):
                raise UsageError(f"--device must be {', '.join(DEVICE_CHOICES)} or a device name such as "
                                 f"cuda:1, got {self.device!r}") from None
        if self.precision not in PRECISION_CHOICES:
            raise UsageError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {self.precision!r}")
        if self.precision == 'exact' and self.fast:
            raise UsageError('--precision exact means fp32 without --fast; drop one of them')
        try:
            TilePlan(self.tile, self.tile_overlap)
        except ValueError as err:
            given = '' if self.tile is None else f'--tile {self.tile} '
            raise UsageError(f'{given}--tile_overlap {self.tile_overlap}: {err}') from err
        if self.max_memory_gb is not None and not (math.isfinite(self.max_memory_gb)
                                                   and self.max_memory_gb >= MIN_MEMORY_GB):
            raise UsageError(f'--max_memory must be a finite number of GB, at least {MIN_MEMORY_GB:.6g} (1 MiB), '
                             f'got {self.max_memory_gb:g}')
        if self.max_megapixels is not None and not _positive_finite(self.max_megapixels):
            raise UsageError('--max_megapixels must be a positive, finite number of megapixels, '
                             f'got {self.max_megapixels:g}')

    def tile_plan(self, memory_budget: Optional[int] = None) -> TilePlan:
        """The Restorer's tiling: these tiles, auto-tiling under `memory_budget` bytes (None: only
        the device's free memory counts)."""
        return TilePlan(self.tile, self.tile_overlap, self.auto_tile, memory_budget)

    @classmethod
    def from_args(cls, args: argparse.Namespace, auto_tile: bool = False, **changes) -> 'InferenceOptions':
        """The options an entry point's parsed command line holds (options its parser lacks keep
        their defaults); `changes` replace fields (e.g. weights=, root=). The deprecated --exact
        becomes --precision exact, with a one-line note."""
        given = vars(args)
        names = {'max_memory': 'max_memory_gb', 'weights_root': 'root'}
        values = {names.get(k, k): v for k, v in given.items()}
        values = {f.name: values[f.name] for f in fields(cls) if f.name in values}
        if given.get('exact'):
            precision, fast = values.get('precision', 'fp32'), values.get('fast', False)
            if fast or precision not in ('fp32', 'auto', 'exact'):
                raise UsageError(f'--exact means fp32 without --fast; it cannot be combined with --precision '
                                 f'{precision}{" --fast" if fast else ""}')
            print(EXACT_NOTE, file=sys.stderr)
            values['precision'] = 'exact'
        values.update(auto_tile=auto_tile, **changes)
        return cls(**values)
