"""The model a run restores with: the weights lookup, the precision choice, the model built from
its checkpoint and the Restorer with its memory budget, in one function for every entry point
(``build_restorer``: the inference command line of utils/inference/cli.py and the web page of
app.py), so that the demo and the page cannot drift apart.
"""
import os
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch

from utils.tasks import require_canonical
from utils.device import resolve_device
from utils.files.checkpoint import build_model
from utils.files.weights import resolve_weights
from utils.inference.options import DEFAULT_OVERLAP, InferenceOptions
from utils.inference.restorer import Restorer, Tiling, choose_precision

__all__ = ['DEFAULT_OVERLAP', 'DEFAULT_CPU_MEMORY_GB', 'RunInfo', 'memory_budget', 'build_restorer']

DEFAULT_CPU_MEMORY_GB = 3.0


@dataclass(frozen=True)
class RunInfo:
    """What build_restorer loaded: printed as the one-line description of a run."""
    task: str
    model: str      # preset name, or 'compact (n_feat=24)'
    weights: str    # the file
    kind: str       # official | bundled | file
    device: str
    mode: str       # e.g. 'bf16 autocast + fast path (auto)'

    @property
    def weights_label(self) -> str:
        label = {'official': 'official weights', 'bundled': 'bundled synthetic-data weights'}.get(self.kind, 'weights')
        return f'{label} {os.path.basename(self.weights)}'

    def __str__(self) -> str:
        return f'{self.task} model [{self.model}], {self.weights_label} ({self.weights}), on {self.device}, {self.mode}'


def memory_budget(max_memory_gb: Optional[float], device: torch.device) -> Optional[int]:
    """Bytes of activations one image may use before it goes in tiles: --max_memory if given, else
    DEFAULT_CPU_MEMORY_GB on a CPU and None (the Restorer asks the GPU) elsewhere."""
    if max_memory_gb is None and device.type != 'cpu':
        return None
    return int((max_memory_gb or DEFAULT_CPU_MEMORY_GB) * 2 ** 30)


def build_restorer(task: str, options: InferenceOptions = InferenceOptions(),
                   progress: Optional[Callable[[int, int, Tiling], None]] = None) -> Tuple[Restorer, RunInfo]:
    """The Restorer for `task` (a canonical name, as the entry point made it) as `options` say
    (weights looked up under options.root, device, precision, tiles), and what was loaded.

    With options.auto_tile (the demo and the page) images above options.max_memory_gb of
    activations go in tiles (``memory_budget``); the NaN/infinity check of the output is always
    on, so a broken model fails its image instead of writing black or white pixels. Raises
    WeightsNotFoundError, ValueError (fp16 on a CPU), RuntimeError (no GPU) or the checkpoint
    errors, each naming what to change.
    """
    require_canonical(task)
    path, kind = resolve_weights(task, options.weights, options.root)
    device = resolve_device(options.device)
    precision, fast, mode = choose_precision(options.precision, options.fast, device)
    budget = memory_budget(options.max_memory_gb, device) if options.auto_tile else None
    model = build_model(task, path)
    restorer = Restorer(model, device, precision=precision, fast=fast, tiles=options.tile_plan(budget),
                        progress=progress, refuse_non_finite=True)
    preset = model.preset_name() or f"compact (n_feat={model.config['n_feat']})"
    return restorer, RunInfo(task, preset, path, kind, str(device), mode)
