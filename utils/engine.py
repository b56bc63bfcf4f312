"""Training engine shared by Deblurring/, Deraining/ and Denoising/train.py.

As in BasicSR, a model class and a loop: ``Trainer`` is the model step (network,
optimizer, schedule, loss, mixed precision, validation, checkpoints) and ``fit``
runs the epochs (validation where configured, logging, saving, resuming);
``build_dataloaders`` gives them the data. One code path serves a single CPU or
GPU process and ``torchrun`` (DistributedDataParallel). The command line is
utils/train_cli.py; the seeding that makes a run reproducible and resumable
bit for bit is utils/seeding.py; the loss is losses.MultiStageLoss.

Validation runs on every process over its own shard of the validation set
(no padding, no repeats) and the PSNR sums are all-reduced, so the mean is
over the whole set exactly once whatever the number of processes.
"""
import contextlib
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from losses import MultiStageLoss
from MPRNet import MPRNet, PRESETS, canonical_task
from utils.atomic import hold_folder, remove_stale_temporaries
from utils.checkpoint import CheckpointMismatchError, check_task, load_checkpoint_file, load_weights, save_atomic
from utils.config import ConfigError
from utils.distributed import (DistInfo, ShardSampler, all_reduce_sum, init_distributed, select_gpus,
                               shutdown_distributed)
from utils.inference import Restorer, cpu_has_native_bf16
from utils.schedule import WarmupCosineSchedule
from utils.seeding import (EpochIndexSampler, SeededSamples, capture_rng_state, derive_seed, restore_rng_state,
                           seed_everything, seed_worker)

__all__ = ['NonFiniteLossError', 'CheckpointWriteError', 'build_datasets', 'build_dataloaders',
           'model_kwargs_from_config', 'psnr_per_image', 'validation_steps', 'is_validation_epoch', 'Trainer',
           'fit', 'run_dirs']

AMP_DTYPES = {'off': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
AMP_CHOICES = ('auto', *AMP_DTYPES)


def resolve_amp(choice: str, device: torch.device) -> str:
    """OPTIM.AMP as run: 'auto' is bf16 where the device computes it natively (a CUDA GPU with
    bf16, a CPU with AVX512-BF16 or AMX) and off elsewhere: on a CPU without them bf16 is
    emulated, and a compact-model training step measured 15x slower than fp32 (AVX2-only Zen 3,
    MODEL_CARD.md). Any other choice is taken as it is."""
    if choice not in AMP_CHOICES:
        raise ConfigError(f"OPTIM.AMP must be one of {', '.join(AMP_CHOICES)}, got {choice!r}")
    if choice != 'auto':
        return choice
    if device.type == 'cuda':
        return 'bf16' if torch.cuda.is_bf16_supported() else 'off'
    return 'bf16' if device.type == 'cpu' and cpu_has_native_bf16() else 'off'
MIXUP_ALPHA = 0.6  # published Beta(0.6, 0.6)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; training stops."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (a full disk, a file-size limit); training stops, and the
    message names the last good checkpoint. Not an OSError: the command line gives it its own exit code."""


def _check_folder(path: str, key: str) -> None:
    if not os.path.isdir(path):
        raise FileNotFoundError(f'{key} folder not found: {path} (relative paths are relative to the current '
                                f'directory {os.getcwd()}); set {key} in the config or on the command line')


def build_datasets(cfg) -> Tuple[Dataset, Dataset]:
    """(training, validation) datasets of (target, input, filename) items for the config."""
    t = cfg.TRAINING
    _check_folder(t.TRAIN_DIR, 'TRAINING.TRAIN_DIR')
    _check_folder(t.VAL_DIR, 'TRAINING.VAL_DIR')
    val_ps = t.VAL_PS or None
    if t.SYNTHETIC:
        if t.SYNTHETIC not in ('deblur', 'derain', 'denoise'):
            raise ConfigError(f"TRAINING.SYNTHETIC must be '', 'deblur', 'derain' or 'denoise', got {t.SYNTHETIC!r}")
        from utils.synthetic import get_synthetic_training_data, get_synthetic_validation_data
        if t.CROPS_PER_PHOTO < 1:
            raise ConfigError(f'TRAINING.CROPS_PER_PHOTO must be at least 1, got {t.CROPS_PER_PHOTO}')
        train = get_synthetic_training_data(t.TRAIN_DIR, t.SYNTHETIC, t.TRAIN_PS, t.SEED, t.CROPS_PER_PHOTO)
        val = get_synthetic_validation_data(t.VAL_DIR, t.SYNTHETIC, val_ps, t.SEED)
    else:
        from dataset_RGB import get_training_data, get_validation_data
        train = get_training_data(t.TRAIN_DIR, {'patch_size': t.TRAIN_PS, 'saturation_jitter': t.SATURATION_JITTER})
        val = get_validation_data(t.VAL_DIR, {'patch_size': val_ps})
    if len(train) == 0 or len(val) == 0:
        empty = t.TRAIN_DIR if len(train) == 0 else t.VAL_DIR
        raise ValueError(f'no image pairs in {empty}')
    if t.SCAN_DATA:
        from utils.data_check import scan_images, scan_pairs
        for dataset, key in ((train, 'TRAINING.TRAIN_DIR'), (val, 'TRAINING.VAL_DIR')):
            if hasattr(dataset, 'pairs'):
                scan_pairs(dataset.pairs, f'{key} {getattr(t, key.split(".")[1])}')
            else:
                scan_images(dataset.photos, f'{key} {getattr(t, key.split(".")[1])}')
    return train, val


def check_training_options(cfg) -> None:
    """Option values that would only fail later (after the first batch, or mid-epoch), checked at start."""
    o, t = cfg.OPTIM, cfg.TRAINING
    if o.BATCH_SIZE < 1:
        raise ConfigError(f'OPTIM.BATCH_SIZE must be at least 1, got {o.BATCH_SIZE}')
    if o.NUM_EPOCHS < 1:
        raise ConfigError(f'OPTIM.NUM_EPOCHS must be at least 1, got {o.NUM_EPOCHS}')
    if o.LR_INITIAL <= 0:
        raise ConfigError(f'OPTIM.LR_INITIAL must be positive, got {o.LR_INITIAL}')
    # The network halves the image three times (stage-1 quadrants, then two encoder levels):
    # training patches, which are not padded, must be multiples of 8.
    if t.TRAIN_PS < 8 or t.TRAIN_PS % 8:
        raise ConfigError(f'TRAINING.TRAIN_PS must be a multiple of 8 of at least 8 (the network halves '
                          f'patches three times), got {t.TRAIN_PS}')
    if t.INIT_WEIGHTS and not os.path.isfile(t.INIT_WEIGHTS):
        raise ConfigError(f'TRAINING.INIT_WEIGHTS: no file {t.INIT_WEIGHTS} (give a checkpoint or released weights '
                          "to fine-tune from, or '' to start from random weights)")
    if t.VAL_PS is not None and t.VAL_PS < 0:
        raise ConfigError(f'TRAINING.VAL_PS must be positive, or null for whole images; got {t.VAL_PS}')


def build_dataloaders(cfg, dist_info: DistInfo, device: torch.device,
                      datasets: Optional[Tuple[Dataset, Dataset]] = None
                      ) -> Tuple[DataLoader, EpochIndexSampler, DataLoader]:
    """(train loader, its sampler for set_epoch, validation loader) for this process.

    Each process loads OPTIM.BATCH_SIZE / world_size samples per step, so the
    global batch is OPTIM.BATCH_SIZE whatever the number of processes.
    """
    train_set, val_set = datasets or build_datasets(cfg)
    batch, world = cfg.OPTIM.BATCH_SIZE, dist_info.world_size
    if batch % world:
        raise ConfigError(f'OPTIM.BATCH_SIZE {batch} (the global batch) must be divisible by the number of '
                          f'processes ({world})')
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


# ----------------------------------------------------------------------------- model, loss, metric

def model_kwargs_from_config(cfg) -> Dict[str, int]:
    """MPRNet widths: the preset of MODEL.PRESET (or MODEL.MODE), overridden by positive MODEL.* values."""
    m = cfg.MODEL
    try:
        task = canonical_task(m.PRESET or m.MODE)
    except ValueError as err:
        raise ConfigError(f'MODEL.PRESET / MODEL.MODE: {err}') from err
    kwargs = dict(PRESETS[task])
    for key, value in (('n_feat', m.N_FEAT), ('scale_unetfeats', m.SCALE_UNETFEATS),
                       ('scale_orsnetfeats', m.SCALE_ORSNETFEATS)):
        if value > 0:
            kwargs[key] = value
    if m.NUM_CAB <= 0:
        raise ConfigError(f'MODEL.NUM_CAB must be positive, got {m.NUM_CAB}')
    kwargs['num_cab'] = m.NUM_CAB
    return kwargs


def psnr_per_image(restored: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) pair in [0, 1] -> (N,) PSNR in dB: 20 log10(1 / RMSE) over all pixels and channels."""
    diff = restored.float().clamp(0, 1) - target.float().clamp(0, 1)
    mse = diff.pow(2).flatten(1).mean(1)
    return -10.0 * torch.log10(mse)


def is_validation_epoch(cfg, epoch: int) -> bool:
    t = cfg.TRAINING
    return (t.VAL_AFTER_EVERY > 0 and epoch % t.VAL_AFTER_EVERY == 0) or epoch in t.VAL_EPOCHS


def validation_steps(steps_per_epoch: int, times: int) -> List[int]:
    """The 1-based steps after which to validate: `times` evenly spaced, the last one at the epoch's end."""
    times = max(1, min(times, steps_per_epoch))
    return sorted({math.ceil(steps_per_epoch * j / times) for j in range(1, times + 1)})


def run_dirs(cfg) -> Tuple[str, str]:
    """(models folder, logs folder): SAVE_DIR/MODE/models/SESSION and SAVE_DIR/MODE/logs/SESSION."""
    base = os.path.join(cfg.TRAINING.SAVE_DIR, cfg.MODEL.MODE)
    return os.path.join(base, 'models', cfg.MODEL.SESSION), os.path.join(base, 'logs', cfg.MODEL.SESSION)


# ----------------------------------------------------------------------------- trainer

class Trainer:
    """Model, optimizer, learning-rate schedule, loss and mixed precision of one run.

    ``model`` is the plain MPRNet (its state dict has the released key names);
    ``net`` is what the forward pass runs: the model, wrapped in
    DistributedDataParallel under torchrun and compiled if OPTIM.COMPILE.
    """

    def __init__(self, cfg, device: torch.device, dist_info: DistInfo = DistInfo()):
        o = cfg.OPTIM
        self.amp = resolve_amp(o.AMP, device)
        self.cfg, self.device, self.dist = cfg, device, dist_info
        self.amp_dtype = AMP_DTYPES[self.amp]
        self.channels_last = o.CHANNELS_LAST
        self.model = MPRNet(**model_kwargs_from_config(cfg), batch_patches=o.BATCH_PATCHES,
                            grad_checkpointing=o.GRAD_CHECKPOINT).to(device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=o.LR_INITIAL, betas=(o.BETA1, o.BETA2),
                                          eps=o.EPS, weight_decay=o.WEIGHT_DECAY, **self._adam_kernel())
        self.schedule = WarmupCosineSchedule.from_config(self.optimizer, cfg)
        self.criterion = MultiStageLoss(o.LOSS, o.EDGE_WEIGHT)
        # Only fp16 needs loss scaling; bf16 has float32's exponent range.
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == 'fp16')
        self.mixup_from = cfg.TRAINING.MIXUP_FROM_EPOCH
        self.mixup_generator = torch.Generator()
        self.mixup = None
        if self.mixup_from > 0:
            from dataset_RGB import MixUp
            # Under torchrun each process mixes its own share of the batch (Denoising/README.md).
            self.mixup = MixUp(MIXUP_ALPHA, generator=self.mixup_generator)
        self.net = self._wrap(self.model)
        self.epoch = 0            # last completed epoch
        self.best_psnr = float('-inf')
        # CPU time this run has spent, all threads of this process, summed over resumes: the
        # x axis of a learning curve (wall time depends on what else the machine does).
        self.cpu_seconds = 0.0
        self.best_epoch = 0
        self.latest_path: Optional[str] = None  # the session's model_latest.pth (set by fit)
        self.latest_epoch = 0     # the epoch model_latest.pth is known to hold; 0 = none written or resumed

    def last_good(self) -> str:
        """What a run that stops now leaves behind, for the messages that stop it."""
        if self.latest_epoch > 0:
            return f'the last good checkpoint is {self.latest_path or "model_latest.pth"} (epoch {self.latest_epoch})'
        if self.latest_path and os.path.isfile(self.latest_path):
            return f'{self.latest_path} was not written by this run and is unchanged'
        return 'no epoch was completed, so no checkpoint was written'

    def save(self, state: Dict[str, Any], path: str) -> None:
        """save_atomic, or CheckpointWriteError naming the file, the reason and the last good checkpoint."""
        try:
            save_atomic(state, path)
        except OSError as err:  # save_atomic's message names the file and the reason
            raise CheckpointWriteError(f'{err}. Training stopped in epoch {state["epoch"]}; {self.last_good()}; '
                                       'free space and continue with TRAINING.RESUME True') from err
        if path == self.latest_path:
            self.latest_epoch = int(state['epoch'])

    def _adam_kernel(self) -> Dict[str, bool]:
        """Adam implementation flags: the fused kernel if OPTIM.FUSED_ADAM, else PyTorch's default."""
        return {'fused': True} if self.cfg.OPTIM.FUSED_ADAM else {}

    def _wrap(self, model: nn.Module) -> nn.Module:
        net = model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel
            ids = [self.device.index] if self.device.type == 'cuda' else None
            net = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False,
                                          gradient_as_bucket_view=True)
        if self.cfg.OPTIM.COMPILE:
            net = torch.compile(net)
        return net

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def start_epoch(self, epoch: int) -> float:
        """Set the epoch's learning rate and MixUp seed; returns the learning rate."""
        # The trailing 1 keeps this stream apart from the per-sample seeds (seed, epoch, index).
        self.mixup_generator.manual_seed(derive_seed(self.cfg.TRAINING.SEED, epoch, self.dist.rank, 1))
        self.net.train()
        return self.schedule.apply(epoch)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def train_step(self, target: torch.Tensor, input_: torch.Tensor, epoch: int, step: int) -> float:
        """One optimizer step on a (N, 3, ps, ps) batch; returns the loss averaged over processes.

        Raises NonFiniteLossError (naming epoch and step) before the weights are updated.
        """
        target, input_ = self._to_device(target), self._to_device(input_)
        if self.mixup is not None and epoch >= self.mixup_from:
            target, input_ = self.mixup(target, input_)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            outputs = self.net(input_)
        loss = self.criterion(outputs, target)
        self.scaler.scale(loss).backward()
        # One small all-reduce: every process sees the same value and stops together on NaN.
        value = all_reduce_sum(loss.detach().clone()).item() / self.dist.world_size
        if not math.isfinite(value):
            raise NonFiniteLossError(f'training loss is {value} at epoch {epoch}, step {step}: training stopped '
                                     f'before this step updated the weights; {self.last_good()}; try a lower '
                                     'OPTIM.LR_INITIAL or OPTIM.AMP off/bf16')
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return value

    @torch.no_grad()
    def validate(self, loader: DataLoader, keep_images: int = 0) -> Tuple[float, List[torch.Tensor]]:
        """Mean PSNR of the clamped stage-3 output over the whole validation set (all processes).

        Always in fp32 (whatever OPTIM.AMP), as published, so PSNRs and the best
        checkpoint do not depend on the training precision. Also returns up to
        `keep_images` (3, H, 3W) strips [input | restored | target] from this process.
        """
        restorer = Restorer(self.model, self.device)
        total = torch.zeros(2, dtype=torch.float64, device=self.device)  # [sum of PSNR, count]
        strips: List[torch.Tensor] = []
        for target, input_, _ in loader:
            restored = restorer(input_)
            psnr = psnr_per_image(restored, target.to(self.device))
            total[0] += psnr.double().sum()
            total[1] += len(psnr)
            for i in range(min(keep_images - len(strips), len(psnr))):
                strips.append(torch.cat([input_[i].float(), restored[i].cpu(), target[i].cpu()], dim=-1))
        all_reduce_sum(total)
        self.net.train()
        return (total[0] / total[1]).item(), strips

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self, epoch: int, step: int, steps_per_epoch: int) -> Dict[str, Any]:
        """Everything an exact resume needs, in the released layout plus our keys.

        `step` of `steps_per_epoch` is where in `epoch` the state was taken (the
        end of the epoch for model_latest.pth; model_best.pth may be mid-epoch).
        Keys: epoch, state_dict, optimizer (as released); scheduler, scaler, rng,
        best_psnr, best_epoch, step, steps_per_epoch, world_size, config (YAML
        text), model_config (MPRNet constructor arguments), cpu_seconds (this
        process's CPU time in training so far, over all resumes).
        """
        return {'epoch': epoch, 'state_dict': self.model.state_dict(),
                'optimizer': self.optimizer.state_dict(), 'scheduler': self.schedule.state_dict(),
                'scaler': self.scaler.state_dict() if self.scaler.is_enabled() else None,
                'rng': capture_rng_state(), 'best_psnr': self.best_psnr, 'best_epoch': self.best_epoch,
                'step': step, 'steps_per_epoch': steps_per_epoch, 'world_size': self.dist.world_size,
                'config': self.cfg.dump(), 'model_config': dict(self.model.config),
                'cpu_seconds': self.cpu_seconds}

    def resume(self, path: str) -> List[str]:
        """Load a checkpoint written by ``checkpoint`` (or a published one); returns notes to print.

        A published checkpoint (epoch, state_dict, optimizer only) resumes the
        weights, optimizer and learning rate; the best PSNR and RNG states start afresh.
        """
        ckpt = load_checkpoint_file(path)
        notes = []
        if not isinstance(ckpt, dict) or 'epoch' not in ckpt or 'optimizer' not in ckpt:
            raise CheckpointMismatchError(f'{path} cannot resume training: it needs the keys epoch, state_dict '
                                          'and optimizer; a weights-only file holds no optimizer state to resume')
        # Another task's run would carry its best PSNR over, and model_best.pth might never be written.
        check_task(ckpt, canonical_task(self.cfg.MODEL.MODE), path,
                   hint='Resume a {task} run, or set MODEL.MODE {trained_for} to continue that one')
        load_weights(self.model, ckpt, source_name=path)
        saved = ckpt['optimizer']
        for group in saved['param_groups']:
            # Which Adam kernel to run is this run's choice, not the saved run's.
            group['fused'] = self.optimizer.defaults.get('fused')
            group['foreach'] = self.optimizer.defaults.get('foreach')
        self.optimizer.load_state_dict(saved)
        self.epoch = int(ckpt['epoch'])
        if 'scheduler' in ckpt:
            self.schedule.load_state_dict(ckpt['scheduler'])
            for key, (old, new) in self.schedule.differences(ckpt['scheduler']).items():
                notes.append(f'learning-rate schedule changed since the checkpoint: {key} {old} -> {new}')
        if ckpt.get('scaler') and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt['scaler'])
        if 'rng' in ckpt:
            restore_rng_state(ckpt['rng'])
        else:
            notes.append('no RNG states or best PSNR in this checkpoint (published format): they start afresh')
        self.best_psnr = float(ckpt.get('best_psnr', float('-inf')))
        self.cpu_seconds = float(ckpt.get('cpu_seconds', 0.0))
        self.best_epoch = int(ckpt.get('best_epoch', 0))
        if self.latest_path and os.path.abspath(path) == os.path.abspath(self.latest_path):
            self.latest_epoch = self.epoch
        if ckpt.get('world_size', self.dist.world_size) != self.dist.world_size:
            notes.append(f"the checkpoint was trained by {ckpt['world_size']} processes, this run has "
                         f'{self.dist.world_size}: the data order differs from an uninterrupted run')
        if ckpt.get('step') and ckpt.get('steps_per_epoch') and ckpt['step'] < ckpt['steps_per_epoch']:
            notes.append(f"{path} was written at step {ckpt['step']} of {ckpt['steps_per_epoch']} of epoch "
                         f'{self.epoch}; the rest of that epoch is skipped (resume from model_latest.pth)')
        return notes


# ----------------------------------------------------------------------------- the loop

class _RunLog:
    """Console lines and TensorBoard scalars/images; silent on every process but rank 0."""

    def __init__(self, log_dir: str, enabled: bool):
        self.enabled = enabled
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(log_dir)

    def line(self, text: str) -> None:
        if self.enabled:
            tqdm.write(text)

    def scalars(self, values: Dict[str, float], step: int) -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def images(self, strips: Sequence[torch.Tensor], step: int) -> None:
        if self.writer is not None:
            for i, strip in enumerate(strips):
                self.writer.add_image(f'val/{i}_input_restored_target', strip.clamp(0, 1), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@contextlib.contextmanager
def _backend_settings(cfg, device: torch.device):
    """Deterministic algorithms (TRAINING.DETERMINISTIC) or cuDNN autotuning for the run,
    restoring the previous global settings afterwards (fit may be called from a larger program)."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if cfg.TRAINING.DETERMINISTIC:
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')  # needed by deterministic cuBLAS
        # warn_only: the bilinear upsampling backward on CUDA has no deterministic kernel.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    elif device.type == 'cuda':
        torch.backends.cudnn.benchmark = True  # fixed patch sizes: autotuning pays off
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


def _resume_path(cfg, resume: Optional[str], model_dir: str) -> Optional[str]:
    latest = os.path.join(model_dir, 'model_latest.pth')
    if resume:
        return resume
    if cfg.TRAINING.RESUME:
        if not os.path.isfile(latest):
            raise FileNotFoundError(f'TRAINING.RESUME is True but there is no {latest} to resume from; '
                                    'set TRAINING.RESUME False to start, or pass --resume PATH')
        return latest
    if os.path.isfile(latest):
        raise FileExistsError(f'{latest} exists: resume it with TRAINING.RESUME True, or choose another '
                              'MODEL.SESSION (or TRAINING.SAVE_DIR) to start a new run; nothing was overwritten')
    return None


def fit(cfg, device: str = 'auto', resume: Optional[str] = None) -> Dict[str, Any]:
    """Train as configured; returns {'history': [per-epoch dicts], 'best_psnr', 'best_epoch', 'model_dir'}.

    Args:
        cfg: a frozen config from ``utils.config.load_config``.
        device: 'auto', 'cpu' or 'cuda' (under torchrun: one GPU per process).
        resume: a checkpoint to continue from (else TRAINING.RESUME picks the session's model_latest.pth).
    """
    if device != 'cpu' and int(os.environ.get('WORLD_SIZE', '1')) <= 1:
        # One process trains on one GPU: the first of the config's list (torchrun
        # processes take cuda:LOCAL_RANK of the visible GPUs instead).
        select_gpus(cfg.GPU[:1])
    dist_info, dev = init_distributed(device)
    try:
        with _backend_settings(cfg, dev):
            return _fit(cfg, dev, dist_info, resume)
    finally:
        shutdown_distributed()


def _fit(cfg, device: torch.device, dist_info: DistInfo, resume: Optional[str]) -> Dict[str, Any]:
    check_training_options(cfg)
    model_dir, log_dir = run_dirs(cfg)
    if not dist_info.is_main:  # one lock per run: rank 0 holds the folder for all its processes
        return _train(cfg, device, dist_info, resume, model_dir, log_dir)
    # Held from before the first check of the folder until the process ends (exceptions and
    # SIGTERM included, see utils/train_cli.py): a second run of the session is refused at once,
    # not after its first epoch.
    notes: List[str] = []
    with hold_folder(model_dir, f'MODEL.SESSION {cfg.MODEL.SESSION} ({model_dir})', notes):
        for note in notes:
            tqdm.write(f'note: {note}')
        for path in remove_stale_temporaries(model_dir):
            tqdm.write(f'note: removed {path}, left by a checkpoint write that was killed')
        return _train(cfg, device, dist_info, resume, model_dir, log_dir)


def _train(cfg, device: torch.device, dist_info: DistInfo, resume: Optional[str], model_dir: str,
           log_dir: str) -> Dict[str, Any]:
    resume_path = _resume_path(cfg, resume, model_dir)
    seed_everything(cfg.TRAINING.SEED)  # before the model is built: the published initialisation
    train_loader, sampler, val_loader = build_dataloaders(cfg, dist_info, device)
    trainer = Trainer(cfg, device, dist_info)
    trainer.latest_path = os.path.join(model_dir, 'model_latest.pth')
    log = _RunLog(log_dir, dist_info.is_main)
    if len(cfg.GPU) > 1 and device.type == 'cuda' and not dist_info.enabled:
        log.line(f'note: GPU lists {len(cfg.GPU)} GPUs but one process trains on one; use all with '
                 f'torchrun --nproc_per_node {len(cfg.GPU)} (CUDA_VISIBLE_DEVICES picks which)')
    if resume_path:
        for note in trainer.resume(resume_path):
            log.line(f'note: {note}')
        log.line(f'resumed {resume_path} at epoch {trainer.epoch + 1} '
                 f'(best PSNR {trainer.best_psnr:.4f} at epoch {trainer.best_epoch})')
    elif cfg.TRAINING.INIT_WEIGHTS:
        # Weights only: optimizer, schedule and epoch start afresh, as fine-tuning wants.
        load_weights(trainer.model, cfg.TRAINING.INIT_WEIGHTS)
        log.line(f'started from the weights of {cfg.TRAINING.INIT_WEIGHTS}')
    num_epochs, steps = cfg.OPTIM.NUM_EPOCHS, len(train_loader)
    pairs = len(train_loader.dataset)
    batch = min(cfg.OPTIM.BATCH_SIZE, pairs)
    log.line(f'{cfg.MODEL.MODE}: {pairs} training pairs, {len(val_loader.dataset)} validation pairs, '
             f'{steps} step{"s" if steps != 1 else ""} of {batch} per epoch on {dist_info.world_size} x {device}; '
             f'checkpoints in {model_dir}')
    if cfg.OPTIM.AMP == 'auto':
        log.line(f'OPTIM.AMP auto: {trainer.amp}' + ('' if trainer.amp == 'bf16' else
                                                     f' ({device} has no native bf16: fp32 is faster)'))
    if cfg.OPTIM.BATCH_SIZE > pairs:
        log.line(f'note: OPTIM.BATCH_SIZE {cfg.OPTIM.BATCH_SIZE} is more than the {pairs} training pairs: each '
                 f'step uses all {pairs}')
    history: List[Dict[str, Any]] = []
    if trainer.epoch >= num_epochs:
        log.line(f'nothing to train: the checkpoint is at epoch {trainer.epoch} and OPTIM.NUM_EPOCHS is {num_epochs}')
    try:
        for epoch in range(trainer.epoch + 1, num_epochs + 1):
            history.append(_run_epoch(cfg, trainer, epoch, train_loader, sampler, val_loader, log, model_dir))
    finally:
        log.close()
    return {'history': history, 'best_psnr': trainer.best_psnr, 'best_epoch': trainer.best_epoch,
            'model_dir': model_dir}


def _run_epoch(cfg, trainer: Trainer, epoch: int, train_loader: DataLoader, sampler: EpochIndexSampler,
               val_loader: DataLoader, log: _RunLog, model_dir: str) -> Dict[str, Any]:
    """Train one epoch, validate where configured, save checkpoints; returns the epoch's record."""
    is_main, world = trainer.dist.is_main, trainer.dist.world_size
    steps = len(train_loader)
    lr = trainer.start_epoch(epoch)
    sampler.set_epoch(epoch)
    val_at = set(validation_steps(steps, cfg.TRAINING.VAL_PER_EPOCH)) if is_validation_epoch(cfg, epoch) else set()
    start, images, loss_sum, psnr = time.perf_counter(), 0, 0.0, None
    cpu_start = time.process_time()
    # No bar when output goes to a file (a log of a background run): the epoch line below says it all.
    bar = tqdm(train_loader, total=steps, desc=f'epoch {epoch}/{cfg.OPTIM.NUM_EPOCHS}',
               disable=not is_main or not sys.stderr.isatty(), leave=False, dynamic_ncols=True)
    for step, (target, input_, _) in enumerate(bar, 1):
        loss = trainer.train_step(target, input_, epoch, step)
        loss_sum += loss
        images += target.shape[0] * world
        global_step = (epoch - 1) * steps + step
        log.scalars({'train/loss': loss}, global_step)
        bar.set_postfix(loss=f'{loss:.4f}', lr=f'{lr:.2e}', img_s=f'{images / (time.perf_counter() - start):.1f}')
        if step in val_at:
            psnr, strips = trainer.validate(val_loader, keep_images=cfg.TRAINING.VAL_IMAGES if is_main else 0)
            log.scalars({'val/psnr': psnr}, global_step)
            log.images(strips, global_step)
            if psnr > trainer.best_psnr:
                trainer.best_psnr, trainer.best_epoch = psnr, epoch
                if is_main:
                    trainer.save(trainer.checkpoint(epoch, step, steps), os.path.join(model_dir, 'model_best.pth'))
            log.line(f'[epoch {epoch} step {step}/{steps}] PSNR {psnr:.4f}  best {trainer.best_psnr:.4f} '
                     f'(epoch {trainer.best_epoch})')
    bar.close()
    trainer.epoch = epoch
    cpu_seconds = time.process_time() - cpu_start
    trainer.cpu_seconds += cpu_seconds
    if is_main:
        state = trainer.checkpoint(epoch, steps, steps)
        # model_latest.pth first: on a full disk the resumable state matters most.
        trainer.save(state, os.path.join(model_dir, 'model_latest.pth'))
        if val_at:
            trainer.save(state, os.path.join(model_dir, f'model_epoch_{epoch}.pth'))
    seconds, mean_loss = time.perf_counter() - start, loss_sum / steps
    log.scalars({'epoch/loss': mean_loss, 'epoch/lr': lr}, epoch * steps)
    shown = f'{psnr:.4f}' if psnr is not None else '-'
    log.line(f'Epoch {epoch}/{cfg.OPTIM.NUM_EPOCHS}  time {seconds:.1f}s  loss {mean_loss:.4f}  lr {lr:.4e}  '
             f'PSNR {shown}  ({images / seconds:.1f} img/s, CPU {cpu_seconds:.0f}s, '
             f'{trainer.cpu_seconds / 3600:.2f} CPU-h in all)')
    return {'epoch': epoch, 'lr': lr, 'loss': mean_loss, 'psnr': psnr, 'seconds': seconds, 'cpu_seconds': cpu_seconds}
