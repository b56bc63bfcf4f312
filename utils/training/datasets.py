"""The data of a training run: the (training, validation) datasets a config names, paired
folders (dataset_RGB) or clean photos degraded on the fly (utils/data/synthetic.py), optionally
scanned first (utils/data/data_check.py), and the loaders that shard and seed them per process.
Option values that would fail only mid-run are checked here before anything is built.
"""
import os
from typing import Dict, List, Optional, Tuple

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler

from dataset_RGB import get_training_data, get_validation_data
from utils.data.data_check import patch_note, scan_images, scan_pairs
from utils.data.photos import HELD_OUT_SPLITS
from utils.data.rain import DENSITY_RANGE, INTENSITY_RANGE
from utils.data.synthetic import get_synthetic_training_data, get_synthetic_validation_data
from utils.errors import ConfigError
from utils.training.config import check_option_ranges, train_dirs
from utils.training.distributed import DistInfo, ShardSampler
from utils.training.seeding import EpochIndexSampler, SeededSamples, seed_worker

__all__ = ['build_datasets', 'check_training_options', 'build_dataloaders']

def _check_folder(path: str, key: str) -> None:
    if not os.path.isdir(path):
        raise FileNotFoundError(f'{key} folder not found: {path} (relative paths are relative to the current '
                                f'directory {os.getcwd()}); set {key} in the config or on the command line')


def _check_no_held_out_inside(folder: str) -> None:
    """ConfigError when the photo folder `folder` of TRAINING.TRAIN_DIR (read with its subfolders)
    holds a split kept out of training by scripts/prepare_photos.py (val/, test/, test_source/):
    TRAIN_DIR set to the photo folder's root instead of its train/ would train on them."""
    root = os.path.realpath(folder)
    inside = []
    for parent, subfolders, _ in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith('.'))
        inside += [os.path.join(parent, d) for d in subfolders if d in HELD_OUT_SPLITS]
    if inside:
        shown = ', '.join(os.path.relpath(f, root) for f in inside)
        train = os.path.join(folder, 'train')
        raise ConfigError(f'TRAINING.TRAIN_DIR {folder} holds photos kept out of training ({shown}), and its '
                          f'subfolders are all read: point it at the training photos alone'
                          + (f' ({train})' if os.path.isdir(train) else ''))


def build_datasets(cfg, notes: Optional[List[str]] = None) -> Tuple[Dataset, Dataset]:
    """(training, validation) datasets of (target, input, filename) items for the config; what the
    data scan has to say (a patch larger than every image) is appended to `notes`.

    Several TRAINING.TRAIN_DIR folders pool their pairs (each folder checked and scanned by name);
    one folder gives the dataset of that folder itself, as published.
    """
    t = cfg.TRAINING
    folders = train_dirs(cfg)
    for folder in folders:
        _check_folder(folder, 'TRAINING.TRAIN_DIR')
    _check_folder(t.VAL_DIR, 'TRAINING.VAL_DIR')
    val_ps = t.VAL_PS or None
    if t.SYNTHETIC:
        if t.SYNTHETIC not in ('deblur', 'derain', 'denoise'):
            raise ConfigError(f"TRAINING.SYNTHETIC must be '', 'deblur', 'derain' or 'denoise', got {t.SYNTHETIC!r}")
        if t.CROPS_PER_PHOTO < 1:
            raise ConfigError(f'TRAINING.CROPS_PER_PHOTO must be at least 1, got {t.CROPS_PER_PHOTO}')
        if len(folders) > 1:
            raise ConfigError('TRAINING.TRAIN_DIR lists several folders, which pools paired data; with '
                              'TRAINING.SYNTHETIC give one folder of clean photos')
        _check_no_held_out_inside(folders[0])
        params = synthetic_params(cfg)
        parts = [get_synthetic_training_data(folders[0], t.SYNTHETIC, t.TRAIN_PS, t.SEED, t.CROPS_PER_PHOTO, params)]
        val = get_synthetic_validation_data(t.VAL_DIR, t.SYNTHETIC, val_ps, t.SEED, params)
    else:
        options = {'patch_size': t.TRAIN_PS, 'saturation_jitter': t.SATURATION_JITTER}
        parts = [get_training_data(folder, options) for folder in folders]
        val = get_validation_data(t.VAL_DIR, {'patch_size': val_ps})
    for folder, part in zip(folders, parts):
        if len(part) == 0:
            raise ValueError(f'no image pairs in {folder}')
    if len(val) == 0:
        raise ValueError(f'no image pairs in {t.VAL_DIR}')
    if t.SCAN_DATA:
        train_sizes: List[Tuple[int, int]] = []
        for dataset, name in [*zip(parts, folders), (val, t.VAL_DIR)]:
            key = f"{'TRAINING.VAL_DIR' if dataset is val else 'TRAINING.TRAIN_DIR'} {name}"
            if hasattr(dataset, 'pairs'):
                sizes = scan_pairs(dataset.pairs, key)
            else:
                sizes = scan_images(dataset.photos, key)
            if dataset is not val:
                train_sizes += sizes
        note = patch_note(train_sizes, t.TRAIN_PS, 'TRAINING.TRAIN_PS')
        if note and notes is not None:
            notes.append(note)
    return (parts[0] if len(parts) == 1 else ConcatDataset(parts)), val


def synthetic_params(cfg) -> Dict[str, Tuple[float, float]]:
    """The degradation's keyword arguments set by the config: add_rain's ranges for SYNTHETIC derain.
    ConfigError for a range that is not [low, high], or one set for another degradation (it would
    be ignored)."""
    t = cfg.TRAINING
    ranges = {'density_range': ('TRAINING.RAIN_DENSITY', t.RAIN_DENSITY, DENSITY_RANGE),
              'intensity_range': ('TRAINING.RAIN_INTENSITY', t.RAIN_INTENSITY, INTENSITY_RANGE)}
    params = {}
    for arg, (key, value, default) in ranges.items():
        if len(value) != 2 or value[0] > value[1]:
            raise ConfigError(f'{key} must be [low, high] with low <= high, got {list(value)}')
        if t.SYNTHETIC != 'derain' and tuple(value) != tuple(default):
            raise ConfigError(f"{key} shapes synthetic rain; it does nothing with TRAINING.SYNTHETIC {t.SYNTHETIC!r}: "
                              f'leave it at {list(default)} or train with TRAINING.SYNTHETIC derain')
        params[arg] = (float(value[0]), float(value[1]))
    return params if t.SYNTHETIC == 'derain' else {}


def check_training_options(cfg) -> None:
    """Option values that would only fail later (after the first batch, or mid-epoch), checked at start."""
    t = cfg.TRAINING
    check_option_ranges(cfg)
    if t.INIT_WEIGHTS and not os.path.isfile(t.INIT_WEIGHTS):
        raise ConfigError(f'TRAINING.INIT_WEIGHTS: no file {t.INIT_WEIGHTS} (give a checkpoint or released weights '
                          "to fine-tune from, or '' to start from random weights)")
    if t.INIT_WIDEN and not t.INIT_WEIGHTS and not t.RESUME:
        raise ConfigError('TRAINING.INIT_WIDEN True widens the weights of TRAINING.INIT_WEIGHTS, which is empty: '
                          'give the narrower checkpoint to start from, or set TRAINING.INIT_WIDEN False')
    synthetic_params(cfg)
    if t.VAL_PS is not None and t.VAL_PS < 0:
        raise ConfigError(f'TRAINING.VAL_PS must be positive, or null for whole images; got {t.VAL_PS}')


def build_dataloaders(cfg, dist_info: DistInfo, device: torch.device,
                      datasets: Optional[Tuple[Dataset, Dataset]] = None, notes: Optional[List[str]] = None
                      ) -> Tuple[DataLoader, EpochIndexSampler, DataLoader]:
    """(train loader, its sampler for set_epoch, validation loader) for this process.

    Each process loads OPTIM.BATCH_SIZE / world_size samples per step, so the
    global batch is OPTIM.BATCH_SIZE whatever the number of processes (and whatever
    OPTIM.ACCUM_STEPS, which splits each process's share into micro-batches).
    """
    train_set, val_set = datasets or build_datasets(cfg, notes)
    batch, world = cfg.OPTIM.BATCH_SIZE, dist_info.world_size
    if batch % world:
        raise ConfigError(f'OPTIM.BATCH_SIZE {batch} (the global batch) must be divisible by the number of '
                          f'processes ({world})')
    accum = cfg.OPTIM.ACCUM_STEPS
    if (batch // world) % accum:
        raise ConfigError(f'OPTIM.BATCH_SIZE {batch} gives {batch // world} samples per process and step, which '
                          f'OPTIM.ACCUM_STEPS {accum} must divide into equal micro-batches')
    workers = cfg.TRAINING.NUM_WORKERS
    if workers < 0:
        raise ConfigError(f'TRAINING.NUM_WORKERS must be >= 0, got {workers}')
    common = dict(num_workers=workers, pin_memory=device.type == 'cuda', persistent_workers=workers > 0,
                  worker_init_fn=seed_worker)
    shuffler = DistributedSampler(train_set, num_replicas=world, rank=dist_info.rank, shuffle=True,
                                  seed=cfg.TRAINING.SEED, drop_last=False)
    sampler = EpochIndexSampler(shuffler)
    train_loader = DataLoader(SeededSamples(train_set, cfg.TRAINING.SEED), batch_size=batch // world,
                              sampler=sampler, drop_last=False, **common)
    # Whole images (VAL_PS null) differ in size and go one at a time.
    val_batch = cfg.TRAINING.VAL_BATCH_SIZE if cfg.TRAINING.VAL_PS else 1
    val_loader = DataLoader(val_set, batch_size=val_batch, shuffle=False,
                            sampler=ShardSampler(len(val_set), dist_info.rank, world), **common)
    return train_loader, sampler, val_loader
