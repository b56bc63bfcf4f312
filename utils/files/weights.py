"""Which weights to use for a task: the official release, the bundled compact models, or a file.

Where they live, under the repository root:

- official: ``pretrained_models/model_<task>.pth`` or, as published,
  ``<Task>/pretrained_models/model_<task>.pth`` (downloaded by the user; never committed);
- bundled: ``pretrained_models/synthetic/model_<task>_synthetic.pth``, compact
  models this project trained on a CPU from synthetic degradations (fp16
  tensors, a few MB; see pretrained_models/synthetic/MODEL_CARD.md).

``resolve_weights(task, 'auto')`` prefers the official file and falls back to
the bundled one; each may also be a ``.safetensors`` file of the same name (the
``.pth`` wins when both are there). The demo, the web page and ``hubconf.py`` all go through it.

An installed copy (``pip install .``, not ``-e``) has REPO_ROOT in site-packages,
where there is no ``pretrained_models/``: the wheel leaves the weights out (they
are data of a checkout, and the official ones are never ours to ship). There the
lookup fails with a message naming the missing folder; pass a checkpoint's path
instead (``resolve_weights(task, path)``, ``build_model(task, path)``) or use
``root=`` for a checkout.
"""
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from MPRNet import MPRNet
from utils.tasks import canonical_task, require_canonical
from utils.files.atomic import write_atomically
from utils.files.checkpoint import (OFFICIAL_WEIGHTS_URL, check_model_config, check_task, load_checkpoint_file,
                              load_weights, safetensors_bytes, save_atomic)

__all__ = ['REPO_ROOT', 'WEIGHT_CHOICES', 'WEIGHT_FORMATS', 'WeightsNotFoundError', 'official_paths', 'bundled_path',
           'resolve_weights', 'bundle_checkpoint']

# utils/files/weights.py: three levels below the repository root.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WEIGHT_CHOICES = ('auto', 'official', 'bundled')
WEIGHT_FORMATS = ('pth', 'safetensors')


class WeightsNotFoundError(FileNotFoundError):
    """No weights file for the task where they were looked for; the message says where to get them."""


def official_paths(task: str, root: str = REPO_ROOT) -> List[str]:
    """Where the official checkpoint of `task` (a canonical name) may be, in the order they are tried."""
    require_canonical(task)
    name = f'model_{task.lower()}.pth'
    return [os.path.join(root, 'pretrained_models', name), os.path.join(root, task, 'pretrained_models', name)]


def bundled_path(task: str, root: str = REPO_ROOT) -> str:
    """The bundled compact checkpoint of `task`, a canonical name (it may be absent in a partial checkout)."""
    require_canonical(task)
    return os.path.join(root, 'pretrained_models', 'synthetic', f'model_{task.lower()}_synthetic.pth')


def _present(path: str) -> Optional[str]:
    """`path` if it is a file, else its .safetensors twin if that is, else None."""
    for candidate in (path, os.path.splitext(path)[0] + '.safetensors'):
        if os.path.isfile(candidate):
            return candidate
    return None


def _missing_official(task: str, root: str) -> str:
    first = official_paths(task, root)[0]
    return (f'no official weights for {task}: expected {first}. python scripts/fetch_weights.py --task {task} '
            f'downloads it, or download model_{task.lower()}.pth from {OFFICIAL_WEIGHTS_URL} into '
            f'{os.path.dirname(first)}/ (see pretrained_models/README.md)')


def _no_weights_folder(root: str) -> str:
    """The hint for a `root` without pretrained_models/ (an installed copy), else ''."""
    folder = os.path.join(root, 'pretrained_models')
    if os.path.isdir(folder):
        return ''
    return (f'. There is no {folder}/ folder: this copy of the project was installed without its weights '
            '(pip install . leaves them out); pass a checkpoint path, or run from a checkout of the repository')


def resolve_weights(task: str, choice: str = 'auto', root: str = REPO_ROOT) -> Tuple[str, str]:
    """(path, kind) of the weights to load for `task`; kind is 'official', 'bundled' or 'file'.

    `choice`: 'auto' (the official file if present, else the bundled one),
    'official', 'bundled', or the path of a checkpoint. Raises
    WeightsNotFoundError naming what was looked for and where to get it. A Python entry point:
    any capitalisation of the task is canonicalised here, once, for the helpers it calls.
    """
    task = canonical_task(task)
    if choice not in WEIGHT_CHOICES:
        if not os.path.isfile(choice):
            raise WeightsNotFoundError(f'weights not found: {choice} (the official files come from '
                                       f'{OFFICIAL_WEIGHTS_URL}; see pretrained_models/README.md)')
        return choice, 'file'
    if choice in ('auto', 'official'):
        for path in official_paths(task, root):
            if _present(path):
                return _present(path), 'official'
        if choice == 'official':
            raise WeightsNotFoundError(_missing_official(task, root) + _no_weights_folder(root))
    bundled = bundled_path(task, root)
    if _present(bundled):
        return _present(bundled), 'bundled'
    if choice == 'bundled':
        raise WeightsNotFoundError(f'no bundled weights for {task}: {bundled} is missing from this checkout'
                                   + _no_weights_folder(root))
    raise WeightsNotFoundError(_missing_official(task, root) + f', or pass --weights PATH ({bundled}, the '
                               'bundled fallback, is missing too)' + _no_weights_folder(root))


def bundle_checkpoint(checkpoint: str, out: str, task: str, extra: Mapping[str, Any] = (),
                      fmt: str = 'pth') -> Dict[str, Any]:
    """Write the weights of a training checkpoint as a small release file: fp16 tensors plus
    ``task``, ``model_config`` and `extra` metadata; loadable with ``weights_only=True``, or with
    `fmt` 'safetensors' a .safetensors file holding the same entries (the metadata as text).

    fp16 halves the file; the loader casts the tensors back to float32 (the
    rounding changes restored images by far less than one 8-bit level).
    The release is loaded into its model before it is written, exactly as
    ``build_model`` will load it (configuration checked, shapes, finite
    values, including any that overflow fp16): a file that would not load is
    never written, and `out` is never the `checkpoint` itself.
    """
    task = canonical_task(task)
    if os.path.exists(out) and os.path.samefile(out, checkpoint):
        raise ValueError(f'{out} is the checkpoint being bundled; write the release file under another name')
    ckpt = load_checkpoint_file(checkpoint)
    if not isinstance(ckpt, Mapping) or 'state_dict' not in ckpt or 'model_config' not in ckpt:
        raise ValueError(f'{checkpoint} is not a training checkpoint of this project (needs state_dict and '
                         'model_config)')
    check_task(ckpt, task, checkpoint, hint='Bundle it with --task {trained_for}')
    config = check_model_config(ckpt['model_config'], checkpoint)
    state = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in ckpt['state_dict'].items()}
    release = {'state_dict': state, 'task': task, 'model_config': config,
               'epoch': int(ckpt.get('epoch', 0)), **dict(extra)}
    load_weights(MPRNet(**config), release, source_name=f'{checkpoint} (as fp16 for {out})')
    if fmt == 'safetensors':
        data = safetensors_bytes(release)
        write_atomically(out, lambda f: f.write(data), durable=True)
    elif fmt == 'pth':
        save_atomic(release, out)
    else:
        raise ValueError(f"unknown weights format {fmt!r}: choose one of {', '.join(WEIGHT_FORMATS)}")
    return release
