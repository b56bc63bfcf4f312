"""Loading and saving checkpoints: the released files, bare state dicts and our own.

Every script loads weights through ``load_weights`` / ``build_model``, so the
same rules hold everywhere: ``torch.load(weights_only=True)`` (a checkpoint
cannot run code), any device's file loads on any device, DataParallel
(``module.``) and torch.compile (``_orig_mod.``) prefixes are removed, a
file that does not fit the model says why, and which preset it does fit, a
recorded ``model_config`` is checked before anything is built from it, and
weights holding NaN or infinity are refused (they restore every image black).
A ``.safetensors`` file (chaiNNer's and traiNNer-redux's format, which cannot run code
either) is read as the same dict: its tensors as ``state_dict``, its metadata's ``task``
and ``model_config`` as ours, so every check above applies to it unchanged.
"""
import json
import os
import zipfile
from collections import OrderedDict
from typing import Any, BinaryIO, Dict, Mapping, Optional, Tuple

import torch
import yaml

from MPRNet import MPRNet, PRESETS
from utils.tasks import canonical_task
from utils.files.atomic import write_atomically

__all__ = ['OFFICIAL_WEIGHTS_URL', 'CheckpointMismatchError', 'CheckpointReadError', 'load_checkpoint_file', 'extract_state_dict',
           'load_weights', 'build_model', 'save_atomic', 'preset_shapes', 'guess_preset', 'recorded_task',
           'check_task', 'check_model_config', 'check_fits', 'check_finite', 'MODEL_CONFIG_LIMITS',
           'is_safetensors', 'safetensors_bytes']

OFFICIAL_WEIGHTS_URL = 'https://github.com/swz30/MPRNet#pretrained-models (Google Drive links per task)'
_PREFIXES = ('module.', '_orig_mod.')

# What a recorded model_config may hold: MPRNet's constructor arguments, each an int within
# (low, high), and bias a bool. The bounds are far beyond the released widths (n_feat 40-96) yet
# small enough that a damaged or hand-edited value cannot allocate gigabytes before it is refused.
MODEL_CONFIG_LIMITS: Dict[str, Tuple[int, int]] = {
    'in_c': (3, 3), 'out_c': (3, 3),  # the network hard-wires 3 image channels
    'n_feat': (1, 512), 'scale_unetfeats': (0, 512), 'scale_orsnetfeats': (0, 512), 'num_cab': (1, 64),
    'kernel_size': (1, 15), 'reduction': (1, 512),
}


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's tensors do not fit the model it is loaded into."""


class CheckpointReadError(RuntimeError):
    """The file cannot be read as a checkpoint (damaged, truncated, or a pickle that needs code)."""


# torch.save stores its zip entries uncompressed; a file whose entries unpack to much more than
# its own size holds compressed tensors (a few MB of zeros unpacking to gigabytes), refused unread.
_UNPACK_SLACK = 64 * 2 ** 20


def _check_unpacked_size(path: str) -> None:
    """CheckpointReadError when the zip entries of `path` unpack to more than twice its size plus
    _UNPACK_SLACK; files that are no zip (the legacy format) are left to torch.load."""
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (OSError, zipfile.BadZipFile):
        return  # torch.load names what is wrong with it
    size = os.path.getsize(path)
    if unpacked > 2 * size + _UNPACK_SLACK:
        raise CheckpointReadError(f'cannot read checkpoint {path}: its {size / 2 ** 20:.1f} MiB unpack to '
                                  f'{unpacked / 2 ** 30:.1f} GiB of compressed tensors, which torch.save never '
                                  'writes; refused unread (it is damaged or made to exhaust memory)')


def load_checkpoint_file(path: str, map_location: Any = 'cpu') -> Any:
    """torch.load with weights_only=True; a missing or unreadable file gets a clear message, and
    one whose contents unpack to far more than its size is refused before it is loaded."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    if is_safetensors(path):
        return _read_safetensors(path)
    _check_unpacked_size(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for damaged or unsafe files
        raise CheckpointReadError(f'cannot read checkpoint {path}: {err}. It may be damaged, partly '
                           'downloaded, or a pickle that needs code to load (refused for safety).') from err


def is_safetensors(path: str) -> bool:
    """Whether the file starts as safetensors does: an 8-byte header length, then the JSON header's
    '{' (a torch.save file starts with a zip's 'PK'), whatever its name."""
    with open(path, 'rb') as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b'{' and int.from_bytes(head[:8], 'little') < 100 * 2 ** 20


def _read_safetensors(path: str) -> Dict[str, Any]:
    """{'state_dict': tensors, 'task', 'model_config', 'epoch'} from a .safetensors file and its metadata."""
    from safetensors import SafetensorError, safe_open  # imported here: only these files need it
    try:
        with safe_open(path, framework='pt', device='cpu') as f:
            metadata = f.metadata() or {}
            state = OrderedDict((key, f.get_tensor(key)) for key in f.keys())
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointReadError(f'cannot read checkpoint {path}: {err}. It may be damaged or partly '
                                  'downloaded.') from err
    checkpoint: Dict[str, Any] = {'state_dict': state}
    for key, value in metadata.items():
        if key in ('model_config', 'epoch'):  # written as JSON by safetensors_bytes
            try:
                value = json.loads(value)
            except ValueError as err:
                raise CheckpointMismatchError(f'{path}: metadata {key} is not JSON ({value[:60]!r}); the '
                                              'file is damaged or not one of ours') from err
        checkpoint[key] = value
    return checkpoint


def safetensors_bytes(release: Mapping[str, Any]) -> bytes:
    """A release dict ({'state_dict', 'task', 'model_config', ...}) as a .safetensors file: the tensors,
    and every other entry as metadata (strings as they are, anything else as JSON)."""
    from safetensors.torch import save
    # safetensors refuses tensors that share memory; MPRNet's one PReLU sits under many keys.
    tensors = {k: v.detach().clone().contiguous() for k, v in release['state_dict'].items()}
    metadata = {k: v if isinstance(v, str) else json.dumps(v) for k, v in release.items() if k != 'state_dict'}
    return save(tensors, metadata)


def extract_state_dict(obj: Any) -> 'OrderedDict[str, torch.Tensor]':
    """The model's tensors from a released checkpoint, one of ours, or a bare state dict."""
    if isinstance(obj, Mapping) and 'state_dict' in obj and isinstance(obj['state_dict'], Mapping):
        obj = obj['state_dict']
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointMismatchError("not a model checkpoint: expected {'state_dict': {...}} or a "
                                      'dict of tensors')
    clean = OrderedDict()
    for key, value in obj.items():
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        clean[key] = value
    return clean


def preset_shapes(task: str, **overrides) -> Dict[str, torch.Size]:
    """Key -> shape of a preset's state dict, built without allocating weights."""
    with torch.device('meta'):
        model = MPRNet.for_task(task, **overrides)
    return {k: v.shape for k, v in model.state_dict().items()}


def guess_preset(state_dict: Mapping[str, torch.Tensor]) -> Optional[str]:
    """The preset whose keys and shapes match `state_dict` exactly, if any."""
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    for task in PRESETS:
        if shapes == {k: tuple(v) for k, v in preset_shapes(task).items()}:
            return task
    return None


def _describe(model: MPRNet) -> str:
    name = model.preset_name()
    widths = f"n_feat={model.config['n_feat']}"
    return f'the {name} model ({widths})' if name else f'a custom MPRNet ({widths})'


def check_fits(model: MPRNet, state: Mapping[str, torch.Tensor], source_name: str) -> None:
    """CheckpointMismatchError listing missing, unexpected and mis-shaped keys of `state` for `model`
    (which may live on the meta device), and naming the preset the file does match."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [f'{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                   for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong_shape:
        lines = [f'{source_name} does not fit {_describe(model)}:']
        for label, items in (('missing keys', missing), ('unexpected keys', unexpected),
                             ('shape mismatches', wrong_shape)):
            if items:
                more = f' ... (+{len(items) - 5} more)' if len(items) > 5 else ''
                lines.append(f'  {len(items)} {label}: ' + ', '.join(items[:5]) + more)
        found = guess_preset(state)
        if found:
            asked = model.preset_name() or 'a custom configuration'
            lines.append(f"  this looks like the {found} model (n_feat={PRESETS[found]['n_feat']}); "
                         f'you asked for {asked}')
        raise CheckpointMismatchError('\n'.join(lines))


def load_weights(model: MPRNet, source: Any, source_name: str = 'checkpoint') -> MPRNet:
    """Load `source` (a path, or an already loaded checkpoint object) strictly into `model`.

    Raises CheckpointMismatchError when the tensors do not fit (``check_fits``) and
    CheckpointReadError naming the first tensor holding NaN or infinity.
    """
    if isinstance(source, (str, os.PathLike)):
        source_name = str(source)
        source = load_checkpoint_file(source_name)
    state = extract_state_dict(source)
    check_fits(model, state, source_name)
    check_finite(state, source_name)
    # The one shared PReLU sits under every block's key; each copy lands in the same parameter.
    model.load_state_dict(state, strict=True)
    return model


def check_finite(state: Mapping[str, torch.Tensor], source_name: str) -> None:
    """CheckpointReadError naming the first tensor that holds NaN or infinity."""
    for key, value in state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointReadError(f'{source_name}: tensor {key} holds {bad} NaN or infinite value(s) of '
                                      f'{value.numel()}; these weights are damaged (a diverged run?) and would '
                                      'restore every image black; use an earlier checkpoint')


def check_model_config(config: Any, source_name: str) -> Dict[str, Any]:
    """A recorded model_config as MPRNet keyword arguments, or CheckpointMismatchError saying what is wrong
    (unknown key, wrong type, out of range), before any model is built from it."""
    if not isinstance(config, Mapping):
        raise CheckpointMismatchError(f'{source_name}: model_config is a {type(config).__name__}, expected a '
                                      'dict of MPRNet arguments; the file is damaged or not one of ours')
    known = (*MODEL_CONFIG_LIMITS, 'bias')
    for key, value in config.items():
        if key not in known:
            raise CheckpointMismatchError(f'{source_name}: model_config has an unknown key {key!r} (known: '
                                          f"{', '.join(known)}); the file is damaged or not one of ours")
        if key == 'bias':
            if not isinstance(value, bool):
                raise CheckpointMismatchError(f'{source_name}: model_config bias must be true or false, got '
                                              f'{value!r}')
            continue
        low, high = MODEL_CONFIG_LIMITS[key]
        # bool is an int to Python, but True is no width.
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise CheckpointMismatchError(f'{source_name}: model_config {key} must be an integer from {low} to '
                                          f'{high}, got {value!r}; the file is damaged or not one of ours')
    if 'reduction' in config and 'n_feat' in config and config['reduction'] > config['n_feat']:
        raise CheckpointMismatchError(f"{source_name}: model_config reduction {config['reduction']} is larger than "
                                      "n_feat; channel attention would have no channels")
    return dict(config)


def recorded_task(checkpoint: Any) -> Optional[str]:
    """The task a checkpoint of ours says it was trained for: its 'task' key (release files) or
    MODEL.MODE of its 'config' (training checkpoints); None for released and bare files."""
    if not isinstance(checkpoint, Mapping):
        return None
    if isinstance(checkpoint.get('task'), str):
        return canonical_task(checkpoint['task'])
    config = checkpoint.get('config')
    if isinstance(config, str):
        try:
            mode = (yaml.safe_load(config) or {}).get('MODEL', {}).get('MODE')
            return canonical_task(mode) if isinstance(mode, str) else None
        except (yaml.YAMLError, ValueError, AttributeError):
            return None
    return None


def check_task(checkpoint: Any, task: str, source_name: str,
               hint: str = 'Use the {task} weights, or run --task {trained_for}') -> None:
    """CheckpointMismatchError when `checkpoint` records a task other than `task` (recorded_task);
    `hint` says what to do instead, with {task} and {trained_for} filled in (default: the
    command-line advice of the inference scripts)."""
    trained_for = recorded_task(checkpoint)
    if trained_for is not None and trained_for != task:
        raise CheckpointMismatchError(f'{source_name} was trained for {trained_for} (recorded in the checkpoint); '
                                      f'you asked for {task}. ' + hint.format(task=task, trained_for=trained_for))


def build_model(task: str, weights: Optional[str] = None, **model_kwargs) -> MPRNet:
    """MPRNet for `task`, with weights loaded if given.

    A checkpoint of ours that records its model configuration (``model_config``)
    builds that configuration (e.g. a compact model for any task), once it is
    checked (``check_model_config``) and its shapes match the file's tensors;
    otherwise the task's preset is used. A checkpoint that records another task is
    refused (CheckpointMismatchError). A Python entry point: any
    capitalisation of the task is canonicalised here.
    """
    task = canonical_task(task)
    checkpoint = load_checkpoint_file(weights) if weights else None
    check_task(checkpoint, task, weights)
    config = dict(PRESETS[task])
    if isinstance(checkpoint, Mapping) and 'model_config' in checkpoint:
        config = check_model_config(checkpoint['model_config'], weights)
        # Shapes first, on the meta device (no memory): a config that does not fit the file's
        # tensors is refused before the real model is allocated.
        with torch.device('meta'):
            shapes_only = MPRNet(**config)
        check_fits(shapes_only, extract_state_dict(checkpoint), weights)
    model = MPRNet(**config, **model_kwargs)
    if checkpoint is not None:
        load_weights(model, checkpoint, source_name=weights)
    return model


def save_atomic(obj: Any, path: str) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`
    (utils.files.atomic): a crash, a kill or a failed write leaves the previous file intact. A failed
    write (a full disk, a file-size limit) raises OSError naming `path`."""
    write_atomically(path, lambda f: _torch_save(obj, f), durable=True)


def _torch_save(obj: Any, f: BinaryIO) -> None:
    """torch.save, re-raising the OSError of a failed write, which torch.save hides behind a
    RuntimeError ("unexpected pos ...") when it closes its zip writer."""
    try:
        torch.save(obj, f)
    except RuntimeError as err:
        if isinstance(err.__context__, OSError):
            raise err.__context__ from None
        raise
