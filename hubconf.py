"""torch.hub entries for MPRNet (deblurring, deraining, denoising).

    import torch
    model = torch.hub.load('path/to/MPRNet', 'mprnet', task='Deblurring', source='local')
    restored = model(image)[0]    # image: (N, 3, H, W) in [0, 1], H and W multiples of 8

Entries:

- ``mprnet(task='Deblurring', weights='auto', root=None)``: any task;
- ``deblurring(weights='auto')``, ``deraining(weights='auto')``,
  ``denoising(weights='auto')``: the same for one task.

``weights`` is looked up as by ``demo.py`` and ``app.py`` (``utils/files/weights.py``):
'auto' (the official checkpoint when it is in ``pretrained_models/``, else the
bundled compact weights in ``pretrained_models/synthetic/``), 'official',
'bundled', the path of a checkpoint, or None for the task's architecture with
random weights. The model comes back on the CPU in eval mode, built with the
configuration its checkpoint records (the compact bundled models are narrower
than the published presets). Nothing is downloaded: the official checkpoints
are a manual download (see pretrained_models/README.md).
"""
from typing import Optional

dependencies = ['torch']


def mprnet(task: str = 'Deblurring', weights: Optional[str] = 'auto', root: Optional[str] = None):
    """MPRNet for `task` ('Deblurring', 'Deraining' or 'Denoising', any capitalisation), in eval mode.

    Args:
        task: which restoration.
        weights: 'auto' (official if present, else bundled), 'official', 'bundled', a checkpoint
            path, or None (the task's published architecture, randomly initialised).
        root: the folder that holds ``pretrained_models/`` for 'auto', 'official' and 'bundled'
            (default: this repository, wherever it is loaded from).

    Returns the model; ``model.weights_path`` and ``model.weights_kind`` ('official', 'bundled',
    'file' or None) say what was loaded. Raises ``utils.files.weights.WeightsNotFoundError`` with
    where to get the weights when they are missing.
    """
    # Deliberately lazy: torch.hub imports this file and then checks `dependencies`; imports at
    # module level would fail with an ImportError before torch.hub could name what is missing.
    from MPRNet import PRESETS, MPRNet
    from utils.tasks import canonical_task
    from utils.files.checkpoint import build_model
    from utils.files.weights import resolve_weights

    if not isinstance(task, str):  # canonical_task would fail on None with an AttributeError
        raise ValueError(f"task must be one of {', '.join(PRESETS)} (any capitalisation), got {task!r}")
    task = canonical_task(task)
    if weights is None:
        model, path, kind = MPRNet.for_task(task), None, None
    else:
        path, kind = resolve_weights(task, str(weights), **({'root': root} if root else {}))
        model = build_model(task, path)
    model.weights_path, model.weights_kind = path, kind
    return model.eval()


def deblurring(weights: Optional[str] = 'auto'):
    """MPRNet for deblurring (GoPro preset, or the bundled compact model); see ``mprnet``."""
    return mprnet('Deblurring', weights)


def deraining(weights: Optional[str] = 'auto'):
    """MPRNet for deraining (Rain13K preset, or the bundled compact model); see ``mprnet``."""
    return mprnet('Deraining', weights)


def denoising(weights: Optional[str] = 'auto'):
    """MPRNet for denoising (SIDD preset, or the bundled compact model); see ``mprnet``."""
    return mprnet('Denoising', weights)
