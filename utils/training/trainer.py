"""The model step of a training run: ``Trainer`` holds the network, optimizer, learning-rate
schedule, loss and mixed precision, and does one optimizer step, a validation pass, and the
checkpoint it writes or resumes from (as in BasicSR, a model class; the epochs around it are
utils/training/loop.py, the data utils/training/datasets.py).

Validation runs on every process over its own shard of the validation set (no padding, no
repeats) and the PSNR sums are all-reduced, so the mean is over the whole set exactly once
whatever the number of processes.
"""
import contextlib
import math
import os
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from dataset_RGB import MixUp
from losses import MultiStageLoss
from MPRNet import MPRNet, PRESETS
from utils.tasks import canonical_task
from utils.device import has_native_bf16
from utils.errors import ConfigError
from utils.evaluation.tensor_psnr import psnr_per_image
from utils.files.checkpoint import CheckpointMismatchError, check_task, load_checkpoint_file, save_atomic
from utils.files.checkpoint import load_weights
from utils.inference.restorer import Restorer
from utils.training.distributed import DistInfo, all_reduce_sum
from utils.training.ema import WeightAverage
from utils.training.schedule import WarmupCosineSchedule
from utils.training.widen import load_widened
from utils.training.seeding import capture_rng_state, derive_seed, restore_rng_state

__all__ = ['NonFiniteLossError', 'CheckpointWriteError', 'AMP_CHOICES', 'resolve_amp', 'model_kwargs_from_config',
           'Trainer']

AMP_DTYPES = {'off': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
AMP_CHOICES = ('auto', *AMP_DTYPES)
# The inference precision names (utils.inference.options): fp32 is off under its other name.
AMP_SYNONYMS = {'fp32': 'off'}


def resolve_amp(choice: str, device: torch.device) -> str:
    """OPTIM.AMP as run: 'auto' is bf16 where the device computes it natively (a CUDA GPU with
    bf16, a CPU with AVX512-BF16 or AMX) and off elsewhere: on a CPU without them bf16 is
    emulated, and a compact-model training step measured 15x slower than fp32 (AVX2-only Zen 3,
    MODEL_CARD.md). fp32 (inference's name) is off; any other choice is taken as it is."""
    choice = AMP_SYNONYMS.get(choice, choice)
    if choice not in AMP_CHOICES:
        raise ConfigError(f"OPTIM.AMP must be one of {', '.join(AMP_CHOICES)}, got {choice!r} "
                          f"(fp32 is another name for off)")
    if choice != 'auto':
        return choice
    return 'bf16' if has_native_bf16(device) else 'off'
MIXUP_ALPHA = 0.6  # published Beta(0.6, 0.6)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; training stops."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (a full disk, a file-size limit); training stops, and the
    message names the last good checkpoint. Not an OSError: the command line gives it its own exit code."""


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
            # Under torchrun each process mixes its own share of the batch (Denoising/README.md).
            self.mixup = MixUp(MIXUP_ALPHA, generator=self.mixup_generator)
        self.ddp: Optional[DistributedDataParallel] = None  # set by _wrap under torchrun (for no_sync)
        self.net = self._wrap(self.model)
        # The average starts from the initial weights; INIT_WEIGHTS and resume reset or load it.
        self.ema = WeightAverage(self.model, o.EMA) if o.EMA > 0 else None
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
            ids = [self.device.index] if self.device.type == 'cuda' else None
            net = self.ddp = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False,
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
        if self.cfg.OPTIM.ACCUM_STEPS > 1:
            loss = self._accumulate(target, input_)
        else:
            with self.autocast():
                outputs = self.net(input_)
            loss = self.criterion(outputs, target)
            self.scaler.scale(loss).backward()
        # One small all-reduce: every process sees the same value and stops together on NaN.
        value = all_reduce_sum(loss.detach().clone()).item() / self.dist.world_size
        if not math.isfinite(value):
            raise NonFiniteLossError(f'training loss is {value} at epoch {epoch}, step {step}: training stopped '
                                     f'before this step updated the weights; {self.last_good()}; try a lower '
                                     'OPTIM.LR_INITIAL, OPTIM.CLIP_GRAD (e.g. 0.01) or OPTIM.AMP off/bf16')
        if self.cfg.OPTIM.CLIP_GRAD > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not fp16-scaled ones
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.OPTIM.CLIP_GRAD)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        return value

    def _accumulate(self, target: torch.Tensor, input_: torch.Tensor) -> torch.Tensor:
        """Forward and backward of OPTIM.ACCUM_STEPS micro-batches, the gradients summed: each loss
        (a mean over its micro-batch) weighted by its share of the batch, so the sum is the gradient
        of the whole batch's mean loss. Returns that loss. Under DDP only the last backward
        all-reduces (no_sync on the others): the summed gradients are averaged once."""
        total = target.shape[0]
        parts = list(zip(target.chunk(self.cfg.OPTIM.ACCUM_STEPS), input_.chunk(self.cfg.OPTIM.ACCUM_STEPS)))
        loss_sum = torch.zeros((), device=self.device)
        for i, (tgt, inp) in enumerate(parts):
            last = i == len(parts) - 1
            sync = self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext()
            with sync:
                with self.autocast():
                    outputs = self.net(inp)
                loss = self.criterion(outputs, tgt) * (tgt.shape[0] / total)
                self.scaler.scale(loss).backward()
            loss_sum += loss.detach().float()
        return loss_sum

    def init_weights(self, path: str, widen: bool = False) -> None:
        """Start from a file's weights (TRAINING.INIT_WEIGHTS), the weight average with them.

        With `widen` (TRAINING.INIT_WIDEN) the file may hold a narrower MPRNet, embedded so that
        the model still computes the narrower one's output (utils/training/widen.py).
        """
        if widen:
            load_widened(self.model, path)
        else:
            load_weights(self.model, path)
        if self.ema is not None:
            self.ema.reset(self.model)

    @torch.no_grad()
    def validate(self, loader: DataLoader, keep_images: int = 0) -> Tuple[float, List[torch.Tensor]]:
        """Mean PSNR of the clamped stage-3 output over the whole validation set (all processes).

        Always in fp32 (whatever OPTIM.AMP), as published, so PSNRs and the best
        checkpoint do not depend on the training precision. Also returns up to
        `keep_images` (3, H, 3W) strips [input | restored | target] from this process.
        """
        # With OPTIM.EMA the average is what validates, and so what model_best.pth is chosen by.
        model = self.model if self.ema is None else self.ema.model
        model.eval()  # a Restorer never changes the model it is given; self.net.train() below undoes this
        restorer = Restorer(model, self.device)
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
        process's CPU time in training so far, over all resumes). With OPTIM.EMA,
        state_dict holds the weight average (what validated, and what every loader
        reads) and train_state_dict the weights the optimizer trains.
        """
        extra = {} if self.ema is None else {'train_state_dict': self.model.state_dict()}
        weights = self.model if self.ema is None else self.ema.model
        return {**extra, 'epoch': epoch, 'state_dict': weights.state_dict(),
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
        # A run with OPTIM.EMA saved the average as state_dict and its trained weights beside it.
        trained = ckpt.get('train_state_dict', ckpt)
        load_weights(self.model, trained, source_name=path)
        if self.ema is not None and 'train_state_dict' in ckpt:
            load_weights(self.ema.model, ckpt, source_name=path)
        elif self.ema is not None:
            self.ema.reset(self.model)
            notes.append(f'{path} holds no weight average: OPTIM.EMA starts one from its weights')
        elif 'train_state_dict' in ckpt:
            notes.append(f'{path} holds a weight average (OPTIM.EMA) that this run, without OPTIM.EMA, drops: '
                         'training continues from its trained weights')
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
