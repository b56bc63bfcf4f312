"""Training configuration: yacs defaults in one place, a task's training.yml, command-line overrides.

The published keys keep their meaning; the keys added by this project are
marked below. Unknown keys (in a file or on the command line) fail with a
message naming the key; the published VERBOSE, which nothing read, is accepted
and ignored so that the published YAML files still load.
"""
import argparse
import math
from typing import Callable, List, Optional, Sequence, Tuple

import yaml
from yacs.config import CfgNode as CN

from utils.data.rain import DENSITY_RANGE, INTENSITY_RANGE
from utils.errors import ConfigError  # defined without yacs/yaml so that losses.py can raise it
from utils.padding import MULTIPLE

__all__ = ['get_default_config', 'load_config', 'add_config_arguments', 'config_from_args', 'train_dirs', 'ConfigError',
           'OPTION_RANGES', 'check_option_ranges']


def get_default_config() -> CN:
    c = CN()
    c.GPU = [0]                 # published; with --device auto, the GPU ids to use (CUDA_VISIBLE_DEVICES)
    # Published, but nothing read it: a YAML that still sets it loads, and yacs logs that it is ignored.
    c.register_deprecated_key('VERBOSE')

    c.MODEL = CN()
    c.MODEL.MODE = 'Deblurring'  # task: Deblurring | Deraining | Denoising
    c.MODEL.SESSION = 'MPRNet'   # run name: checkpoints and logs go to SAVE_DIR/MODE/{models,logs}/SESSION
    c.MODEL.PRESET = ''          # ours: architecture preset; '' = the preset of MODE
    c.MODEL.N_FEAT = 0           # ours: >0 overrides the preset's n_feat
    c.MODEL.SCALE_UNETFEATS = 0  # ours: >0 overrides the preset's scale_unetfeats
    c.MODEL.SCALE_ORSNETFEATS = 0  # ours: >0 overrides the preset's scale_orsnetfeats
    c.MODEL.NUM_CAB = 8          # ours: CABs per ORB

    c.OPTIM = CN()
    c.OPTIM.BATCH_SIZE = 16      # global batch (split across processes under torchrun)
    c.OPTIM.NUM_EPOCHS = 3000
    c.OPTIM.LR_INITIAL = 2e-4
    c.OPTIM.LR_MIN = 1e-6
    c.OPTIM.BETA1 = 0.9          # ours (published value hard-coded)
    c.OPTIM.BETA2 = 0.999        # ours
    c.OPTIM.EPS = 1e-8           # ours
    c.OPTIM.WEIGHT_DECAY = 0.0   # ours; Denoising publishes 1e-8
    c.OPTIM.WARMUP_EPOCHS = 3    # ours: linear warm-up epochs
    c.OPTIM.COSINE_EXTRA_EPOCHS = 0  # ours: cosine period = NUM_EPOCHS - WARMUP_EPOCHS + this (Denoising: 40)
    c.OPTIM.LOSS = 'charbonnier_edge'  # ours: charbonnier_edge | charbonnier_clamped
    c.OPTIM.EDGE_WEIGHT = 0.05   # ours: weight of the edge loss in charbonnier_edge
    # How training runs rather than how it optimises, yet kept in OPTIM (a RUNTIME section was
    # weighed): they are read in one place (trainer.Trainer), while the name is in every documented
    # command line (`OPTIM.AMP bf16`, docs/TRAINING.md, docs/PERFORMANCE.md, benchmarks/train_speed.py) and in
    # the config every checkpoint records. Moving them would need load_config to translate the old
    # keys in files and overrides, which yacs cannot (register_renamed_key only refuses the old
    # name), for a section name alone.
    c.OPTIM.AMP = 'off'          # ours: off (= fp32) | bf16 | fp16 (with a gradient scaler) | auto (bf16 where native)
    c.OPTIM.FUSED_ADAM = False   # ours: fused Adam kernel on CUDA
    c.OPTIM.CHANNELS_LAST = False  # ours
    c.OPTIM.COMPILE = False      # ours: torch.compile the model
    c.OPTIM.BATCH_PATCHES = False  # ours: run stage-1 quadrants / stage-2 halves as one batched call
    c.OPTIM.GRAD_CHECKPOINT = False  # ours: recompute CAB activations in backward (less memory)
    c.OPTIM.CLIP_GRAD = 0.0      # ours: clip the gradients' total norm to this before each step; 0 = off
    c.OPTIM.ACCUM_STEPS = 1      # ours: split each batch into this many micro-batches (one step, less memory)
    c.OPTIM.EMA = 0.0            # ours: decay of an average of the weights that validates and is saved; 0 = off

    c.TRAINING = CN()
    c.TRAINING.VAL_AFTER_EVERY = 20
    c.TRAINING.VAL_PER_EPOCH = 1   # ours: validations within a validating epoch (Denoising: 3)
    c.TRAINING.VAL_EPOCHS = []     # ours: extra epochs that validate whatever VAL_AFTER_EVERY says
    c.TRAINING.RESUME = False
    c.TRAINING.INIT_WEIGHTS = ''   # ours: a new run starts from these weights (fine-tuning); a resume ignores it
    c.TRAINING.INIT_WIDEN = False  # ours: INIT_WEIGHTS may be a narrower MPRNet; it becomes the leading channels
    c.TRAINING.TRAIN_PS = 256
    c.TRAINING.VAL_PS = 256        # None (null) validates whole images
    c.TRAINING.TRAIN_DIR = './Datasets/GoPro/train'  # published as one folder; ours: a list pools their pairs
    c.TRAINING.VAL_DIR = './Datasets/GoPro/test'
    c.TRAINING.SAVE_DIR = './checkpoints'
    c.TRAINING.SATURATION_JITTER = False  # ours: the Deblurring-only colour augmentation
    c.TRAINING.MIXUP_FROM_EPOCH = 0       # ours: MixUp from this epoch on (Denoising: 6); 0 = never
    c.TRAINING.SYNTHETIC = ''      # ours: '' = paired folders; deblur | derain | denoise = pairs made on the fly
    c.TRAINING.CROPS_PER_PHOTO = 1  # ours, SYNTHETIC only: patches drawn from each photo per epoch
    c.TRAINING.RAIN_DENSITY = list(DENSITY_RANGE)      # ours, SYNTHETIC derain only: streaks per pixel, [low, high]
    c.TRAINING.RAIN_INTENSITY = list(INTENSITY_RANGE)  # ours, SYNTHETIC derain only: streak opacity, [low, high]
    c.TRAINING.SCAN_DATA = True    # ours: read every image header at start (pairs agree in size); False skips
    c.TRAINING.NUM_WORKERS = 8     # ours: DataLoader workers per process
    c.TRAINING.VAL_BATCH_SIZE = 16  # ours
    c.TRAINING.SEED = 1234         # ours (published value hard-coded)
    c.TRAINING.DETERMINISTIC = False  # ours: deterministic algorithms (slower)
    c.TRAINING.VAL_IMAGES = 4      # ours: validation images written to TensorBoard
    return c


# The channel attention divides a width by MPRNet's reduction (4): narrower widths have no channels.
_REDUCTION = 4
_WIDTH_LIMIT = 512  # what a checkpoint's model_config may record (utils/files/checkpoint.py)

# Every numeric option: (key, test of a value (each item of a list) given the whole config, the
# range in words). Checked together before a run builds anything (``check_option_ranges``);
# TRAINING.VAL_PS, which may be null, is checked beside it (utils/training/datasets.py).
OPTION_RANGES: Tuple[Tuple[str, Callable[[float, CN], bool], str], ...] = (
    ('GPU', lambda v, c: v >= 0, 'GPU ids of at least 0'),
    ('MODEL.N_FEAT', lambda v, c: v == 0 or _REDUCTION <= v <= _WIDTH_LIMIT,
     f"0 (the preset's) or from {_REDUCTION} (the channel attention divides it by {_REDUCTION}) to {_WIDTH_LIMIT}"),
    ('MODEL.SCALE_UNETFEATS', lambda v, c: 0 <= v <= _WIDTH_LIMIT, f"0 (the preset's) or up to {_WIDTH_LIMIT}"),
    ('MODEL.SCALE_ORSNETFEATS', lambda v, c: 0 <= v <= _WIDTH_LIMIT, f"0 (the preset's) or up to {_WIDTH_LIMIT}"),
    ('MODEL.NUM_CAB', lambda v, c: 1 <= v <= 64, 'from 1 to 64'),
    ('TRAINING.RAIN_DENSITY', lambda v, c: 0 < v <= 1, 'streaks per pixel, each in (0, 1]'),
    ('TRAINING.RAIN_INTENSITY', lambda v, c: 0 < v <= 1, 'opacities, each in (0, 1]'),
    ('OPTIM.BATCH_SIZE', lambda v, c: v >= 1, 'at least 1'),
    ('OPTIM.NUM_EPOCHS', lambda v, c: v >= 1, 'at least 1'),
    ('OPTIM.LR_INITIAL', lambda v, c: v > 0, 'positive'),
    ('OPTIM.LR_MIN', lambda v, c: v >= 0, 'at least 0 (the cosine ends there: below 0 the steps climb the loss)'),
    ('OPTIM.BETA1', lambda v, c: 0 <= v < 1, 'in [0, 1)'),
    ('OPTIM.BETA2', lambda v, c: 0 <= v < 1, 'in [0, 1)'),
    ('OPTIM.EPS', lambda v, c: v > 0, 'positive (Adam divides by it)'),
    ('OPTIM.WEIGHT_DECAY', lambda v, c: v >= 0, 'at least 0'),
    ('OPTIM.WARMUP_EPOCHS', lambda v, c: v >= 0, 'at least 0'),
    ('OPTIM.COSINE_EXTRA_EPOCHS', lambda v, c: v >= 0, 'at least 0'),
    ('OPTIM.EDGE_WEIGHT', lambda v, c: v >= 0, 'at least 0 (a negative weight rewards edge errors)'),
    ('OPTIM.CLIP_GRAD', lambda v, c: v >= 0, 'a positive maximum gradient norm, or 0 for no clipping'),
    ('OPTIM.ACCUM_STEPS', lambda v, c: v >= 1, 'at least 1 (1 = no accumulation)'),
    ('OPTIM.EMA', lambda v, c: 0 <= v < 1, 'a decay from 0 (off) to below 1, e.g. 0.999'),
    ('TRAINING.VAL_AFTER_EVERY', lambda v, c: v >= 0, 'at least 0 (0: only VAL_EPOCHS validate)'),
    ('TRAINING.VAL_PER_EPOCH', lambda v, c: v >= 1, 'at least 1'),
    ('TRAINING.VAL_EPOCHS', lambda v, c: v >= 1, 'epochs of at least 1'),
    ('TRAINING.TRAIN_PS', lambda v, c: v >= MULTIPLE and v % MULTIPLE == 0,
     f'a multiple of {MULTIPLE} of at least {MULTIPLE} (the network halves patches three times)'),
    ('TRAINING.MIXUP_FROM_EPOCH', lambda v, c: v >= 0, 'at least 0 (0: never)'),
    ('TRAINING.CROPS_PER_PHOTO', lambda v, c: v >= 1, 'at least 1'),
    ('TRAINING.NUM_WORKERS', lambda v, c: v >= 0, 'at least 0'),
    ('TRAINING.VAL_BATCH_SIZE', lambda v, c: v >= 1, 'at least 1'),
    ('TRAINING.SEED', lambda v, c: 0 <= v < 2 ** 32, 'from 0 to 2**32 - 1'),
    ('TRAINING.VAL_IMAGES', lambda v, c: v >= 0, 'at least 0'),
)


def check_option_ranges(cfg: CN) -> None:
    """ConfigError naming the first numeric option outside its range (OPTION_RANGES), or not a
    finite number (1e999 reads as infinity)."""
    for key, test, words in OPTION_RANGES:
        value = cfg
        for part in key.split('.'):
            value = value[part]
        for item in value if isinstance(value, (list, tuple)) else [value]:
            number = isinstance(item, (int, float)) and not isinstance(item, bool)
            if not number or not math.isfinite(item) or not test(item, cfg):
                raise ConfigError(f'{key} must be {words}, got {item!r}')


def load_config(path: Optional[str] = None, overrides: Sequence[str] = ()) -> CN:
    """Defaults, then the YAML file, then KEY VALUE overrides; frozen."""
    cfg = get_default_config()
    where = f'in {path}'  # names the source of a bad key in the error below
    try:
        if path:
            with open(path, encoding='utf-8') as f:
                _accept_any_type(cfg, _sets_train_dir(yaml.safe_load(f)))
            cfg.merge_from_file(path)
        where = 'on the command line'
        if overrides:
            if len(overrides) % 2:
                raise ConfigError(f'overrides come in KEY VALUE pairs, got {list(overrides)}')
            pairs = list(overrides)
            for key, value in zip(pairs[::2], pairs[1::2]):  # one by one: a key may come twice
                _accept_any_type(cfg, key == 'TRAINING.TRAIN_DIR')
                cfg.merge_from_list([key, value])
    except yaml.YAMLError as err:
        raise ConfigError(f'{path} is not valid YAML: {" ".join(str(err).split())}') from err
    except (KeyError, ValueError, AssertionError) as err:
        if isinstance(err, ConfigError):
            raise
        text = str(err.args[0]) if err.args else str(err)
        if 'Non-existent' in text:  # yacs's words for an unknown key
            key = text.split(':')[-1].strip()
            raise ConfigError(f'unknown configuration key {key} {where}; the valid keys and their '
                              'meaning are listed in utils/training/config.py') from err
        raise ConfigError(f'bad configuration value {where}: {text}') from err
    cfg.freeze()
    return cfg


def _sets_train_dir(loaded: object) -> bool:
    return isinstance(loaded, dict) and isinstance(loaded.get('TRAINING'), dict) and 'TRAIN_DIR' in loaded['TRAINING']


def _accept_any_type(cfg: CN, sets_train_dir: bool) -> None:
    """TRAINING.TRAIN_DIR is one folder or a list of folders. yacs refuses a value whose type differs
    from the current one unless the current one is None, so it is cleared before a source that sets it."""
    if sets_train_dir:
        cfg.TRAINING.TRAIN_DIR = None


def train_dirs(cfg: CN) -> List[str]:
    """TRAINING.TRAIN_DIR as a list of folders (one string is one folder)."""
    value = cfg.TRAINING.TRAIN_DIR
    folders = [value] if isinstance(value, str) else list(value or [])
    if not folders or not all(isinstance(f, str) and f for f in folders):
        raise ConfigError(f'TRAINING.TRAIN_DIR must be a folder or a list of folders, got {value!r}')
    return folders


def add_config_arguments(parser: argparse.ArgumentParser, default_config: Optional[str] = None) -> None:
    parser.add_argument('--config', default=default_config,
                        help='YAML file with the training settings (default: %(default)s)')
    parser.add_argument('opts', nargs=argparse.REMAINDER, default=[],
                        help='overrides as KEY VALUE pairs, e.g. OPTIM.BATCH_SIZE 8 TRAINING.RESUME True')


def config_from_args(args: argparse.Namespace) -> CN:
    return load_config(args.config, args.opts or [])
