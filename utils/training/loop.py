"""The epochs of a training run, shared by Deblurring/, Deraining/ and Denoising/train.py:
``fit`` holds the session folder, resumes, runs the epochs with validation where configured,
logs and saves (the step itself is utils/training/trainer.py, the data
utils/training/datasets.py). One code path serves a single CPU or GPU process and ``torchrun``
(DistributedDataParallel). The command line is utils/training/cli.py; the seeding that makes a
run reproducible and resumable bit for bit is utils/training/seeding.py.
"""
import contextlib
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from utils.files.atomic import hold_folder, remove_stale_temporaries
from utils.training.datasets import build_dataloaders, check_training_options
from utils.training.distributed import DistInfo, init_distributed, select_gpus, shutdown_distributed
from utils.training.seeding import EpochIndexSampler, seed_everything
from utils.training.trainer import Trainer

__all__ = ['fit', 'run_dirs', 'validation_steps', 'is_validation_epoch']

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


class _RunLog:
    """Console lines and TensorBoard scalars/images; silent on every process but rank 0."""

    def __init__(self, log_dir: str, enabled: bool):
        self.enabled = enabled
        self.writer = None
        if enabled:
            # Deliberately lazy: only rank 0 writes logs, so the other torchrun processes never
            # load tensorboard (0.12 s after torch on this machine, and its protobuf stack).
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


def _checkpoints_in(model_dir: str) -> List[str]:
    """The checkpoint files (model_*.pth) a session folder holds, sorted; [] for no folder."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(n for n in os.listdir(model_dir) if n.startswith('model_') and n.endswith('.pth'))


def _resume_path(cfg, resume: Optional[str], model_dir: str) -> Optional[str]:
    """The checkpoint to resume (None: a fresh run), or an error when the run would write over
    another run's checkpoints: a fresh run into a session that holds any checkpoint (not only
    model_latest.pth: its best and epoch files would be replaced), or --resume of a file from
    elsewhere into a session that holds checkpoints of its own."""
    latest = os.path.join(model_dir, 'model_latest.pth')
    held = _checkpoints_in(model_dir)
    shown = ', '.join(held[:4]) + (f' (+{len(held) - 4} more)' if len(held) > 4 else '')
    if resume:
        inside = os.path.realpath(os.path.dirname(os.path.abspath(resume))) == os.path.realpath(model_dir)
        if held and not inside:
            raise FileExistsError(f'MODEL.SESSION {cfg.MODEL.SESSION} ({model_dir}) already holds checkpoints of a '
                                  f'run ({shown}) and --resume {resume} is from elsewhere: resuming it there would '
                                  'replace them; choose another MODEL.SESSION (or TRAINING.SAVE_DIR); nothing was '
                                  'overwritten')
        return resume
    if cfg.TRAINING.RESUME:
        if not os.path.isfile(latest):
            other = f' (it holds {shown}: pass --resume with one of them)' if held else ''
            raise FileNotFoundError(f'TRAINING.RESUME is True but there is no {latest} to resume from{other}; '
                                    'set TRAINING.RESUME False to start a new run, or pass --resume PATH')
        return latest
    if held:
        raise FileExistsError(f'MODEL.SESSION {cfg.MODEL.SESSION} ({model_dir}) already holds {shown}: resume it '
                              "(TRAINING.RESUME True, or --resume PATH with one of its checkpoints), or choose "
                              'another MODEL.SESSION (or TRAINING.SAVE_DIR) to start a new run; nothing was '
                              'overwritten')
    return None


def fit(cfg, device: str = 'auto', resume: Optional[str] = None) -> Dict[str, Any]:
    """Train as configured; returns {'history': [per-epoch dicts], 'best_psnr', 'best_epoch', 'model_dir'}.

    Args:
        cfg: a frozen config from ``utils.training.config.load_config``.
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
    # SIGTERM included, see utils/training/cli.py): a second run of the session is refused at once,
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
    data_notes: List[str] = []
    train_loader, sampler, val_loader = build_dataloaders(cfg, dist_info, device, notes=data_notes)
    trainer = Trainer(cfg, device, dist_info)
    trainer.latest_path = os.path.join(model_dir, 'model_latest.pth')
    log = _RunLog(log_dir, dist_info.is_main)
    for note in data_notes:
        log.line(f'note: {note}')
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
        trainer.init_weights(cfg.TRAINING.INIT_WEIGHTS, widen=cfg.TRAINING.INIT_WIDEN)
        how = ', widened to this model (TRAINING.INIT_WIDEN)' if cfg.TRAINING.INIT_WIDEN else ''
        log.line(f'started from the weights of {cfg.TRAINING.INIT_WEIGHTS}{how}')
    num_epochs, steps = cfg.OPTIM.NUM_EPOCHS, len(train_loader)
    pairs = len(train_loader.dataset)
    batch = min(cfg.OPTIM.BATCH_SIZE, pairs)
    log.line(f'{cfg.MODEL.MODE}: {pairs} training pairs, {len(val_loader.dataset)} validation pairs, '
             f'{steps} step{"s" if steps != 1 else ""} of {batch} per epoch on {dist_info.world_size} x {device}; '
             f'checkpoints in {model_dir}')
    o, extras = cfg.OPTIM, []
    if o.ACCUM_STEPS > 1:
        micro = o.BATCH_SIZE // dist_info.world_size // o.ACCUM_STEPS
        extras.append(f'OPTIM.ACCUM_STEPS {o.ACCUM_STEPS}: micro-batches of {micro} per process')
    if o.CLIP_GRAD > 0:
        extras.append(f'OPTIM.CLIP_GRAD {o.CLIP_GRAD:g}')
    if o.EMA > 0:
        extras.append(f'OPTIM.EMA {o.EMA:g}: the weight average validates and is saved as state_dict')
    if extras:
        log.line('; '.join(extras))
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
