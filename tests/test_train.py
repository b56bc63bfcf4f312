"""The training engine and the train.py scripts, on a tiny model and 8 generated 32x32 pairs (CPU)."""
import importlib.util
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from yacs.config import CfgNode

from MPRNet import MPRNet
from losses import MultiStageLoss
from utils import device as device_probe
from utils.training import datasets, trainer
from utils.files.checkpoint import CheckpointMismatchError, build_model, load_weights
from utils.training.config import ConfigError, load_config
from utils.training.distributed import DistInfo
from utils.evaluation.tensor_psnr import psnr_per_image
from utils.training.datasets import build_dataloaders
from utils.training.loop import fit, is_validation_epoch, validation_steps
from utils.training.trainer import NonFiniteLossError, model_kwargs_from_config
from utils.training.seeding import capture_rng_state, restore_rng_state, seed_everything
from utils.files.image_io import image_to_tensor, list_images, read_image, write_image
from helpers import TINY, interrupt_training_in_epoch, tiny_keys

pytestmark = pytest.mark.usefixtures('one_torch_thread')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_KEYS = tiny_keys()
CHECKPOINT_KEYS = {'epoch', 'state_dict', 'optimizer', 'scheduler', 'scaler', 'rng', 'best_psnr', 'best_epoch',
                   'config', 'model_config'}


def write_pairs(folder, count, size, rng):
    """`count` PNG pairs: a smooth random target and the target plus Gaussian noise (sigma 0.1)."""
    for i in range(count):
        coarse = rng.random((size // 4, size // 4, 3)).astype(np.float32)
        target = np.kron(coarse, np.ones((4, 4, 1), np.float32))
        noisy = np.clip(target + rng.normal(0, 0.1, target.shape), 0, 1)
        write_image(os.path.join(folder, 'target', f'{i:02d}.png'), target)
        write_image(os.path.join(folder, 'input', f'{i:02d}.png'), noisy)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('pairs')
    rng = np.random.default_rng(7)
    write_pairs(root / 'train', 8, 32, rng)
    write_pairs(root / 'val', 4, 32, rng)
    return root


def overrides(data_root, save_dir, *extra, mode='Deblurring'):
    """KEY VALUE strings: a tiny model, batch 4 (2 steps per epoch), 16-pixel training patches."""
    base = ['MODEL.MODE', mode, *TINY_KEYS, 'OPTIM.BATCH_SIZE', 4, 'OPTIM.NUM_EPOCHS', 2,
            'OPTIM.WARMUP_EPOCHS', 1, 'TRAINING.TRAIN_PS', 16, 'TRAINING.VAL_PS', 32,
            'TRAINING.TRAIN_DIR', data_root / 'train', 'TRAINING.VAL_DIR', data_root / 'val',
            'TRAINING.SAVE_DIR', save_dir, 'TRAINING.NUM_WORKERS', 0, 'TRAINING.VAL_AFTER_EVERY', 1,
            'TRAINING.VAL_BATCH_SIZE', 4, 'TRAINING.VAL_IMAGES', 2]
    return [str(v) for v in base + list(extra)]


def make_cfg(data_root, save_dir, *extra, mode='Deblurring'):
    return load_config(None, overrides(data_root, save_dir, *extra, mode=mode))


def load_folder(folder):
    """All images of `folder` as one (N, 3, H, W) batch."""
    return torch.stack([image_to_tensor(read_image(p)[0]) for p in list_images(folder)])


def models_dir(save_dir, mode='Deblurring', session='MPRNet'):
    return os.path.join(save_dir, mode, 'models', session)


# ----------------------------------------------------------------------------- small pieces

def test_psnr_per_image_hand_values():
    target = torch.full((2, 3, 4, 4), 0.4)
    restored = torch.stack([torch.full((3, 4, 4), 0.5), torch.full((3, 4, 4), 0.4)])
    restored[1, 0, 0, 0] = 0.0  # one pixel of 48 off by 0.4: mse = 0.16 / 48
    psnr = psnr_per_image(restored, target)
    assert psnr[0].item() == pytest.approx(20.0, abs=1e-4)  # mse 0.01
    assert psnr[1].item() == pytest.approx(10 * math.log10(48 / 0.16), abs=1e-4)
    # Values outside [0, 1] are clamped first: 1.3 counts as 1.0.
    assert torch.isinf(psnr_per_image(torch.full((1, 3, 2, 2), 1.3), torch.ones(1, 3, 2, 2)))[0]


def test_validation_schedule_of_the_denoising_recipe():
    cfg = load_config(os.path.join(ROOT, 'Denoising', 'training.yml'))
    published = {e for e in range(1, 81) if e in (1, 25, 45) or e > 60}  # the published train.py's rule
    assert {e for e in range(1, 81) if is_validation_epoch(cfg, e)} == published
    deblur = load_config(os.path.join(ROOT, 'Deblurring', 'training.yml'))
    assert [e for e in range(1, 101) if is_validation_epoch(deblur, e)] == [20, 40, 60, 80, 100]
    assert validation_steps(10, 3) == [4, 7, 10]
    assert validation_steps(10, 1) == [10]
    assert validation_steps(2, 3) == [1, 2]


def test_model_widths_from_config():
    cfg = load_config(None, ['MODEL.MODE', 'Deraining', 'MODEL.N_FEAT', 24])
    assert model_kwargs_from_config(cfg) == dict(n_feat=24, scale_unetfeats=20, scale_orsnetfeats=16, num_cab=8)
    cfg = load_config(None, ['MODEL.MODE', 'Deraining', 'MODEL.PRESET', 'denoising'])
    assert model_kwargs_from_config(cfg) == dict(n_feat=80, scale_unetfeats=48, scale_orsnetfeats=32, num_cab=8)


def test_amp_auto_is_bf16_only_where_the_cpu_computes_it(monkeypatch):
    cpu = torch.device('cpu')
    for native, expected in ((True, 'bf16'), (False, 'off')):
        monkeypatch.setattr(device_probe, 'cpu_has_native_bf16', lambda: native)
        assert trainer.resolve_amp('auto', cpu) == expected
        # An explicit choice is never second-guessed.
        assert [trainer.resolve_amp(c, cpu) for c in ('off', 'bf16', 'fp16')] == ['off', 'bf16', 'fp16']
    with pytest.raises(ConfigError, match="OPTIM.AMP must be one of auto, off, bf16, fp16, got 'bf32'"):
        trainer.resolve_amp('bf32', cpu)


def test_rng_state_round_trip_is_plain_data(tmp_path):
    import random
    state = capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    torch.save(state, tmp_path / 'rng.pth')
    restore_rng_state(torch.load(tmp_path / 'rng.pth', weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_global_batch_must_split_over_processes(data_root, tmp_path):
    cfg = make_cfg(data_root, tmp_path, 'OPTIM.BATCH_SIZE', 5)
    with pytest.raises(ConfigError, match='BATCH_SIZE 5.*divisible.*3'):
        build_dataloaders(cfg, DistInfo(rank=0, world_size=3), torch.device('cpu'))


def test_augmentations_reproducible_for_any_worker_count(data_root, tmp_path):
    def epoch_batches(workers, epoch):
        cfg = make_cfg(data_root, tmp_path, 'TRAINING.NUM_WORKERS', workers, 'TRAINING.SATURATION_JITTER', True)
        loader, sampler, _ = build_dataloaders(cfg, DistInfo(), torch.device('cpu'))
        sampler.set_epoch(epoch)
        return [torch.cat([t, x]) for t, x, _ in loader]

    in_process = epoch_batches(0, 1)
    assert len(in_process) == 2
    assert all(torch.equal(a, b) for a, b in zip(in_process, epoch_batches(2, 1)))
    assert all(torch.equal(a, b) for a, b in zip(in_process, epoch_batches(0, 1)))
    assert not torch.equal(in_process[0], epoch_batches(0, 2)[0]), 'a new epoch draws new crops'


# ----------------------------------------------------------------------------- training runs

@pytest.mark.slow
def test_two_epochs_lower_the_loss_and_write_loadable_checkpoints(data_root, tmp_path, tiny_config):
    cfg = make_cfg(data_root, tmp_path, 'OPTIM.LR_INITIAL', 1e-3)
    result = fit(cfg, device='cpu')
    history = result['history']
    assert [h['epoch'] for h in history] == [1, 2]
    assert history[1]['loss'] < history[0]['loss']

    folder = models_dir(tmp_path)
    assert sorted(os.listdir(folder)) == ['model_best.pth', 'model_epoch_1.pth', 'model_epoch_2.pth',
                                          'model_latest.pth']  # and no temporary files left
    for name in os.listdir(folder):
        ckpt = torch.load(os.path.join(folder, name), weights_only=True)
        assert CHECKPOINT_KEYS <= set(ckpt)
        load_weights(MPRNet(**tiny_config), os.path.join(folder, name))
    latest = torch.load(os.path.join(folder, 'model_latest.pth'), weights_only=True)
    assert latest['epoch'] == 2 and latest['scheduler']['last_epoch'] == 2
    assert torch.load(os.path.join(folder, 'model_epoch_1.pth'), weights_only=True)['epoch'] == 1
    assert latest['model_config'] == MPRNet(**tiny_config).config
    saved_cfg = CfgNode.load_cfg(latest['config'])
    assert (saved_cfg.MODEL.N_FEAT, saved_cfg.OPTIM.AMP, saved_cfg.OPTIM.LR_INITIAL) == (8, 'off', 1e-3)
    assert build_model('Deblurring', weights=os.path.join(folder, 'model_latest.pth')).config['n_feat'] == 8

    # The whole training set (full 32x32 images) fits better than the same initialisation did.
    inputs, targets = load_folder(data_root / 'train' / 'input'), load_folder(data_root / 'train' / 'target')
    seed_everything(cfg.TRAINING.SEED)
    untrained = MPRNet(**tiny_config)
    trained = load_weights(MPRNet(**tiny_config), os.path.join(folder, 'model_latest.pth'))
    criterion = MultiStageLoss()
    with torch.no_grad():
        assert criterion(trained(inputs), targets) < criterion(untrained(inputs), targets)

    # The best PSNR, recomputed here in numpy from model_best.pth, over the 4 validation pairs.
    best = torch.load(os.path.join(folder, 'model_best.pth'), weights_only=True)
    model = load_weights(MPRNet(**tiny_config), best).eval()
    with torch.no_grad():
        restored = model(load_folder(data_root / 'val' / 'input'))[0].clamp(0, 1).numpy().astype(np.float64)
    val_targets = load_folder(data_root / 'val' / 'target').numpy().astype(np.float64)
    psnrs = [10 * np.log10(1 / np.mean((r - t) ** 2)) for r, t in zip(restored, val_targets)]
    assert best['best_psnr'] == pytest.approx(np.mean(psnrs), abs=1e-4)
    assert result['best_psnr'] == best['best_psnr'] == max(h['psnr'] for h in history)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(os.path.join(tmp_path, 'Deblurring', 'logs', 'MPRNet'))
    events.Reload()
    assert {'train/loss', 'val/psnr', 'epoch/loss', 'epoch/lr'} <= set(events.Tags()['scalars'])
    assert len(events.Tags()['images']) == 2  # TRAINING.VAL_IMAGES
    assert [e.value for e in events.Scalars('epoch/lr')] == pytest.approx([1e-3, 1e-3])


@pytest.mark.slow
def test_kill_and_resume_equals_an_uninterrupted_run(data_root, tmp_path, monkeypatch):
    # Denoising recipe: clamped Charbonnier, weight decay, MixUp from epoch 3; deterministic kernels.
    extra = ['OPTIM.NUM_EPOCHS', 4, 'OPTIM.WARMUP_EPOCHS', 3, 'OPTIM.LOSS', 'charbonnier_clamped',
             'OPTIM.WEIGHT_DECAY', 1e-8, 'TRAINING.MIXUP_FROM_EPOCH', 3, 'TRAINING.VAL_AFTER_EVERY', 2,
             'TRAINING.DETERMINISTIC', True]
    straight = fit(make_cfg(data_root, tmp_path, 'MODEL.SESSION', 'straight', *extra, mode='Denoising'), 'cpu')
    assert [h['lr'] for h in straight['history']] == pytest.approx([2e-4 / 3, 4e-4 / 3, 2e-4, 2e-4], rel=1e-12)
    assert not torch.are_deterministic_algorithms_enabled(), 'fit restores the global setting'

    cfg = make_cfg(data_root, tmp_path, 'MODEL.SESSION', 'killed', *extra, mode='Denoising')
    interrupt_training_in_epoch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, 'cpu')
    monkeypatch.undo()
    latest = os.path.join(models_dir(tmp_path, 'Denoising', 'killed'), 'model_latest.pth')
    assert torch.load(latest, weights_only=True)['epoch'] == 2
    cpu_before = torch.load(latest, weights_only=True)['cpu_seconds']
    assert cpu_before > 0

    with pytest.raises(FileExistsError, match='TRAINING.RESUME True'):
        fit(cfg, 'cpu')  # a fresh start would overwrite the session
    resumed = fit(make_cfg(data_root, tmp_path, 'MODEL.SESSION', 'killed', *extra, 'TRAINING.RESUME', True,
                           mode='Denoising'), 'cpu')
    assert [h['epoch'] for h in resumed['history']] == [3, 4]
    for a, b in zip(straight['history'][2:], resumed['history']):
        assert (a['lr'], a['loss'], a['psnr']) == (b['lr'], b['loss'], b['psnr'])
    assert (resumed['best_psnr'], resumed['best_epoch']) == (straight['best_psnr'], straight['best_epoch'])
    final = {name: torch.load(os.path.join(models_dir(tmp_path, 'Denoising', s), 'model_latest.pth'),
                              weights_only=True) for name, s in (('straight', 'straight'), ('resumed', 'killed'))}
    for key, value in final['straight']['state_dict'].items():
        assert torch.equal(value, final['resumed']['state_dict'][key]), key
    adam = [final[n]['optimizer']['state'] for n in ('straight', 'resumed')]
    assert all(torch.equal(adam[0][i]['exp_avg_sq'], adam[1][i]['exp_avg_sq']) for i in adam[0])
    # The CPU time of a learning curve adds up over the resume: the two epochs before plus the two after.
    assert final['resumed']['cpu_seconds'] == pytest.approx(
        cpu_before + sum(h['cpu_seconds'] for h in resumed['history']), rel=1e-9)


@pytest.mark.slow
def test_init_weights_fine_tunes_from_a_file_with_a_fresh_optimizer_and_schedule(data_root, tmp_path, tiny_config):
    first = fit(make_cfg(data_root, tmp_path, 'MODEL.SESSION', 'first', 'OPTIM.NUM_EPOCHS', 1), 'cpu')
    start = os.path.join(first['model_dir'], 'model_latest.pth')
    start_weights = torch.load(start, weights_only=True)['state_dict']
    # Learning rate 1e-12: Adam moves each weight by about 1e-12 per step, so the run ends where it started.
    tuned = fit(make_cfg(data_root, tmp_path, 'MODEL.SESSION', 'tuned', 'OPTIM.NUM_EPOCHS', 1,
                         'OPTIM.LR_INITIAL', 1e-12, 'TRAINING.INIT_WEIGHTS', start), 'cpu')
    assert [h['epoch'] for h in tuned['history']] == [1], 'epochs count from 1, not from the file'
    latest = torch.load(os.path.join(tuned['model_dir'], 'model_latest.pth'), weights_only=True)
    seed_everything(1234)
    random_init = MPRNet(**tiny_config).state_dict()
    for key, value in start_weights.items():
        assert torch.allclose(latest['state_dict'][key], value, rtol=0, atol=1e-9), key
    assert any(not torch.allclose(start_weights[k], random_init[k]) for k in start_weights)
    assert all(s['step'] == 2 for s in latest['optimizer']['state'].values()), 'a fresh Adam: 2 steps, not 4'

    with pytest.raises(ConfigError, match='TRAINING.INIT_WEIGHTS: no file'):
        fit(make_cfg(data_root, tmp_path, 'MODEL.SESSION', 'missing', 'TRAINING.INIT_WEIGHTS',
                     tmp_path / 'nowhere.pth'), 'cpu')
    wider = make_cfg(data_root, tmp_path, 'MODEL.SESSION', 'wider', 'MODEL.N_FEAT', 16,
                     'TRAINING.INIT_WEIGHTS', start)
    with pytest.raises(CheckpointMismatchError, match='shape mismatches'):
        fit(wider, 'cpu')


@pytest.mark.slow
def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(data_root, tmp_path, monkeypatch):
    real_forward = MultiStageLoss.forward
    calls = []

    def nan_on_fourth_call(self, outputs, target):  # 2 steps per epoch: call 4 = epoch 2, step 2
        calls.append(1)
        loss = real_forward(self, outputs, target)
        return loss * float('nan') if len(calls) == 4 else loss

    monkeypatch.setattr(MultiStageLoss, 'forward', nan_on_fourth_call)
    with pytest.raises(NonFiniteLossError, match='nan at epoch 2, step 2'):
        fit(make_cfg(data_root, tmp_path, 'TRAINING.VAL_AFTER_EVERY', 0), 'cpu')
    folder = models_dir(tmp_path)
    assert sorted(os.listdir(folder)) == ['model_latest.pth']
    ckpt = torch.load(os.path.join(folder, 'model_latest.pth'), weights_only=True)
    assert ckpt['epoch'] == 1
    load_weights(MPRNet(**TINY), ckpt)


def test_kill_during_a_save_keeps_the_previous_latest(data_root, tmp_path, monkeypatch):
    real_save = torch.save
    saves = []

    def dies_in_second_save(obj, f, *args, **kwargs):
        saves.append(1)
        if len(saves) == 2:  # epoch 2's model_latest.pth: half written, then killed
            f.write(b'partial checkpoint')
            raise KeyboardInterrupt
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, 'save', dies_in_second_save)
    with pytest.raises(KeyboardInterrupt):
        fit(make_cfg(data_root, tmp_path, 'TRAINING.VAL_AFTER_EVERY', 0), 'cpu')
    folder = models_dir(tmp_path)
    assert os.listdir(folder) == ['model_latest.pth']
    assert torch.load(os.path.join(folder, 'model_latest.pth'), weights_only=True)['epoch'] == 1


@pytest.mark.slow
def test_ddp_two_gloo_processes_train_like_one_process_and_rank0_saves(data_root, tmp_path):
    # 8 pairs, global batch 8: one step per epoch, so 2 processes x 4 samples see the same
    # samples (and augmentations) as 1 process x 8, and the averaged gradients agree.
    extra = ['OPTIM.BATCH_SIZE', 8, 'OPTIM.NUM_EPOCHS', 1, 'TRAINING.SATURATION_JITTER', True]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
               os.path.join(ROOT, 'Deblurring', 'train.py'), '--device', 'cpu',
               *overrides(data_root, tmp_path / 'ddp', *extra)]
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.count('Epoch 1/1') == 1, 'only rank 0 prints'
    folder = models_dir(tmp_path / 'ddp')
    assert sorted(os.listdir(folder)) == ['model_best.pth', 'model_epoch_1.pth', 'model_latest.pth']
    ddp = torch.load(os.path.join(folder, 'model_latest.pth'), weights_only=True)
    assert ddp['world_size'] == 2 and ddp['epoch'] == 1

    single = fit(make_cfg(data_root, tmp_path / 'single', *extra), 'cpu')
    one = torch.load(os.path.join(models_dir(tmp_path / 'single'), 'model_latest.pth'), weights_only=True)
    # Adam's first step moves each weight by about lr = 2e-4 in the gradient's direction;
    # different samples per process would flip many of those directions.
    for key, value in one['state_dict'].items():
        torch.testing.assert_close(ddp['state_dict'][key], value, rtol=0, atol=1e-6, msg=key)
    # exp_avg = 0.1 x gradient after one step: averaged over the processes (a sum would double it).
    for index, state in one['optimizer']['state'].items():
        expected = state['exp_avg']
        torch.testing.assert_close(ddp['optimizer']['state'][index]['exp_avg'], expected, rtol=1e-3,
                                   atol=1e-3 * expected.abs().max().item())
    # Validation is sharded over the processes and all-reduced: the same mean over all 4 images.
    assert ddp['best_psnr'] == pytest.approx(single['best_psnr'], abs=1e-4)


def test_synthetic_pairs_from_clean_photos_train(data_root, tmp_path):
    pytest.importorskip('utils.data.synthetic')
    photos = str(data_root / 'train' / 'target')
    cfg = make_cfg(data_root, tmp_path, 'TRAINING.SYNTHETIC', 'denoise', 'TRAINING.TRAIN_DIR', photos,
                   'TRAINING.VAL_DIR', photos, 'OPTIM.NUM_EPOCHS', 1)
    loader, sampler, _ = build_dataloaders(cfg, DistInfo(), torch.device('cpu'))
    sampler.set_epoch(1)
    first = [torch.cat([t, x]) for t, x, _ in loader]
    assert all(torch.equal(a, torch.cat([t, x])) for a, (t, x, _) in zip(first, loader)), 'same epoch, same noise'
    result = fit(cfg, 'cpu')
    assert math.isfinite(result['history'][0]['loss']) and math.isfinite(result['best_psnr'])
    # TRAINING.CROPS_PER_PHOTO draws that many patches of each photo per epoch.
    count = len(list_images(photos))
    three = make_cfg(data_root, tmp_path, 'TRAINING.SYNTHETIC', 'denoise', 'TRAINING.TRAIN_DIR', photos,
                     'TRAINING.VAL_DIR', photos, 'TRAINING.CROPS_PER_PHOTO', 3)
    assert len(datasets.build_datasets(three)[0]) == 3 * count
    zero = make_cfg(data_root, tmp_path, 'TRAINING.SYNTHETIC', 'denoise', 'TRAINING.TRAIN_DIR', photos,
                    'TRAINING.VAL_DIR', photos, 'TRAINING.CROPS_PER_PHOTO', 0)
    with pytest.raises(ConfigError, match='CROPS_PER_PHOTO'):
        datasets.build_datasets(zero)


def load_train_script(task):
    spec = importlib.util.spec_from_file_location(f'train_{task}', os.path.join(ROOT, task, 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_train_py_end_to_end(data_root, tmp_path, capsys):
    # Denoising with MixUp from epoch 1, one loader worker, whole-image validation (VAL_PS None).
    argv = ['--device', 'cpu', *overrides(data_root, tmp_path, 'OPTIM.NUM_EPOCHS', 1, 'TRAINING.MIXUP_FROM_EPOCH', 1,
                                          'TRAINING.NUM_WORKERS', 1, 'TRAINING.VAL_PS', 'None', mode='Denoising')]
    run = subprocess.run([sys.executable, os.path.join(ROOT, 'Denoising', 'train.py'), *argv], cwd=tmp_path,
                         env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert 'Epoch 1/1' in run.stdout and 'PSNR' in run.stdout
    latest = os.path.join(models_dir(tmp_path, 'Denoising'), 'model_latest.pth')
    ckpt = torch.load(latest, weights_only=True)
    assert CfgNode.load_cfg(ckpt['config']).TRAINING.MIXUP_FROM_EPOCH == 1
    assert math.isfinite(ckpt['best_psnr'])

    script = load_train_script('Denoising')
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        script.main(argv)  # the same session again without RESUME: refused, nothing overwritten
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and 'already holds' in err and 'model_latest.pth' in err
    with pytest.raises(SystemExit) as stopped:
        script.main(argv[2:] + ['--device', 'cpu'])
    assert stopped.value.code == 2 and '--device after KEY VALUE' in capsys.readouterr().err
    assert torch.equal(torch.load(latest, weights_only=True)['state_dict']['tail.weight'],
                       ckpt['state_dict']['tail.weight'])
