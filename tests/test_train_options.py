"""The training options for one's own data: OPTIM.CLIP_GRAD, OPTIM.ACCUM_STEPS, OPTIM.EMA and several
TRAINING.TRAIN_DIR folders, on the tiny model and the generated pairs of test_train.py."""
import contextlib
import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

from MPRNet import MPRNet
from losses import MultiStageLoss
from test_train import ROOT, data_root, load_folder, make_cfg, models_dir, overrides, write_pairs  # noqa: F401
from utils.data.data_check import DataCheckError
from utils.evaluation.tensor_psnr import psnr_per_image
from utils.files.image_io import write_image
from utils.files.checkpoint import CheckpointMismatchError
from utils.training.config import ConfigError, load_config
from utils.training.datasets import build_datasets
from utils.training.ema import WeightAverage
from utils.training.loop import fit
from utils.training.seeding import seed_everything
from utils.training.trainer import Trainer
from helpers import TINY, interrupt_training_in_epoch

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def batch(n, size=16, seed=3):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(n, 3, size, size, generator=g)
    return target, (target + 0.1 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)


def reference_gradients(initial, target, input_):
    """The gradient of the whole batch's published loss, computed here without the Trainer."""
    model = MPRNet(**TINY)
    model.load_state_dict(initial)
    loss = MultiStageLoss('charbonnier_edge', 0.05)(model(input_), target)
    loss.backward()
    return loss.item(), {k: p.grad.clone() for k, p in model.named_parameters()}


def trainer_for(data_root, tmp_path, *extra):
    seed_everything(5)
    return Trainer(make_cfg(data_root, tmp_path, *extra), torch.device('cpu'))


@pytest.mark.parametrize('n, accum', [(8, 4), (7, 4)])
@pytest.mark.slow
def test_micro_batches_give_the_gradient_of_the_whole_batch(data_root, tmp_path, n, accum):
    # 7 in 4 micro-batches is 2 + 2 + 2 + 1: each share weighted by its size, not 1/4.
    trainer = trainer_for(data_root, tmp_path, 'OPTIM.ACCUM_STEPS', accum)
    target, input_ = batch(n)
    expected_loss, expected = reference_gradients(copy.deepcopy(trainer.model.state_dict()), target, input_)
    loss = trainer.train_step(target, input_, 1, 1)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    for key, p in trainer.model.named_parameters():
        torch.testing.assert_close(p.grad, expected[key], rtol=1e-4, atol=1e-7, msg=key)


class SpyDDP:
    """Stands in for DistributedDataParallel's no_sync: counts the backward passes run inside it."""

    def __init__(self):
        self.unsynced = 0

    @contextlib.contextmanager
    def no_sync(self):
        self.unsynced += 1
        yield


def test_only_the_last_micro_batch_synchronises_under_ddp(data_root, tmp_path):
    trainer = trainer_for(data_root, tmp_path, 'OPTIM.ACCUM_STEPS', 4)
    trainer.ddp = SpyDDP()
    trainer.train_step(*batch(8), 1, 1)
    assert trainer.ddp.unsynced == 3, '4 micro-batches: the first 3 skip the all-reduce, the last one syncs'


@pytest.mark.slow
def test_clip_grad_scales_the_gradient_to_the_maximum_norm(data_root, tmp_path):
    trainer = trainer_for(data_root, tmp_path, 'OPTIM.CLIP_GRAD', 1e-3)
    target, input_ = batch(4)
    _, expected = reference_gradients(copy.deepcopy(trainer.model.state_dict()), target, input_)
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in expected.values())).item()
    assert norm > 1e-3, 'the test needs a gradient larger than the limit'
    trainer.train_step(target, input_, 1, 1)
    clipped = {k: p.grad for k, p in trainer.model.named_parameters()}
    assert torch.sqrt(sum((g.double() ** 2).sum() for g in clipped.values())).item() == pytest.approx(1e-3, rel=1e-4)
    for key, grad in clipped.items():  # the same direction, shortened by limit / norm
        torch.testing.assert_close(grad, expected[key] * (1e-3 / norm), rtol=1e-4, atol=1e-10, msg=key)


def test_weight_average_by_hand():
    layer = nn.Linear(1, 1, bias=False)
    layer.register_buffer('count', torch.tensor(3))
    with torch.no_grad():
        layer.weight.fill_(0.0)
        average = WeightAverage(layer, 0.5)
        for w, count in ((4.0, 4), (8.0, 5)):
            layer.weight.fill_(w)
            layer.count.fill_(count)
            average.update(layer)
    # 0.5^2 x 0 + 0.5 x 0.5 x 4 + 0.5 x 8 = 5; integer buffers are copied, not averaged.
    assert average.model.weight.item() == 5.0 and average.model.count.item() == 5
    assert not average.model.weight.requires_grad and not average.model.training
    with pytest.raises(ValueError, match='strictly between 0 and 1'):
        WeightAverage(layer, 1.0)


def test_ema_after_one_step_is_the_decayed_mix_of_old_and_new_weights(data_root, tmp_path):
    trainer = trainer_for(data_root, tmp_path, 'OPTIM.EMA', 0.9)
    before = copy.deepcopy(trainer.model.state_dict())
    trainer.train_step(*batch(4), 1, 1)
    after, average = trainer.model.state_dict(), trainer.ema.model.state_dict()
    for key, value in before.items():
        torch.testing.assert_close(average[key], 0.9 * value + 0.1 * after[key], rtol=0, atol=1e-7, msg=key)
    saved = trainer.checkpoint(1, 1, 1)
    assert all(torch.equal(saved['state_dict'][k], average[k]) for k in average)
    assert all(torch.equal(saved['train_state_dict'][k], after[k]) for k in after)


@pytest.mark.slow
def test_ema_validates_is_saved_and_resumes_exactly(data_root, tmp_path, monkeypatch):
    extra = ['OPTIM.NUM_EPOCHS', 3, 'OPTIM.EMA', 0.6, 'OPTIM.ACCUM_STEPS', 2, 'OPTIM.CLIP_GRAD', 0.05,
             'TRAINING.DETERMINISTIC', True]
    straight = fit(make_cfg(data_root, tmp_path, 'MODEL.SESSION', 'straight', *extra), 'cpu')
    folder = models_dir(tmp_path, session='straight')
    best = torch.load(os.path.join(folder, 'model_best.pth'), weights_only=True)
    # The best PSNR is that of the averaged weights (state_dict), measured here on the 4 whole images.
    val_in, val_target = load_folder(data_root / 'val' / 'input'), load_folder(data_root / 'val' / 'target')

    def psnr_of(weights):
        with torch.no_grad():
            model = MPRNet(**TINY).eval()
            model.load_state_dict(weights)
            return psnr_per_image(model(val_in)[0], val_target).mean().item()

    assert psnr_of(best['state_dict']) == pytest.approx(best['best_psnr'], abs=1e-4)
    assert abs(psnr_of(best['train_state_dict']) - best['best_psnr']) > 1e-3, 'the average is another model'

    interrupt_training_in_epoch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        fit(make_cfg(data_root, tmp_path, 'MODEL.SESSION', 'killed', *extra), 'cpu')
    monkeypatch.undo()
    resumed = fit(make_cfg(data_root, tmp_path, 'MODEL.SESSION', 'killed', *extra, 'TRAINING.RESUME', True), 'cpu')
    assert [h['epoch'] for h in resumed['history']] == [3]
    assert (resumed['history'][0]['loss'], resumed['history'][0]['psnr']) == (
        straight['history'][2]['loss'], straight['history'][2]['psnr'])
    final = [torch.load(os.path.join(models_dir(tmp_path, session=s), 'model_latest.pth'), weights_only=True)
             for s in ('straight', 'killed')]
    for part in ('state_dict', 'train_state_dict'):
        for key, value in final[0][part].items():
            assert torch.equal(value, final[1][part][key]), (part, key)


@pytest.mark.slow
def test_resume_notes_when_the_average_is_started_or_dropped(data_root, tmp_path):
    plain = fit(make_cfg(data_root, tmp_path, 'MODEL.SESSION', 'plain', 'OPTIM.NUM_EPOCHS', 1), 'cpu')
    latest = os.path.join(plain['model_dir'], 'model_latest.pth')
    trainer = trainer_for(data_root, tmp_path, 'OPTIM.EMA', 0.9)
    assert any('holds no weight average' in n for n in trainer.resume(latest))
    weights = torch.load(latest, weights_only=True)['state_dict']
    assert all(torch.equal(trainer.ema.model.state_dict()[k], v) for k, v in weights.items())

    averaged = fit(make_cfg(data_root, tmp_path, 'MODEL.SESSION', 'avg', 'OPTIM.NUM_EPOCHS', 1, 'OPTIM.EMA', 0.9),
                   'cpu')
    ckpt = torch.load(os.path.join(averaged['model_dir'], 'model_latest.pth'), weights_only=True)
    trainer = trainer_for(data_root, tmp_path)
    assert any('drops' in n for n in trainer.resume(os.path.join(averaged['model_dir'], 'model_latest.pth')))
    assert all(torch.equal(trainer.model.state_dict()[k], v) for k, v in ckpt['train_state_dict'].items())


@pytest.mark.slow
def test_accumulation_under_ddp_matches_one_process_with_the_whole_batch(data_root, tmp_path):
    # Global batch 8 = 2 processes x 2 micro-batches of 2: one step, the gradient of all 8 samples.
    # train.py reads Deblurring/training.yml, whose saturation jitter the single run must set too.
    extra = ['OPTIM.BATCH_SIZE', 8, 'OPTIM.NUM_EPOCHS', 1, 'TRAINING.VAL_AFTER_EVERY', 0,
             'TRAINING.SATURATION_JITTER', True]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
               os.path.join(ROOT, 'Deblurring', 'train.py'), '--device', 'cpu',
               *overrides(data_root, tmp_path / 'ddp', *extra, 'OPTIM.ACCUM_STEPS', 2)]
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert 'OPTIM.ACCUM_STEPS 2: micro-batches of 2 per process' in run.stdout
    fit(make_cfg(data_root, tmp_path / 'single', *extra), 'cpu')
    ddp, one = (torch.load(os.path.join(models_dir(tmp_path / d), 'model_latest.pth'), weights_only=True)
                for d in ('ddp', 'single'))
    # exp_avg = 0.1 x gradient after one Adam step.
    for index, state in one['optimizer']['state'].items():
        expected = state['exp_avg']
        torch.testing.assert_close(ddp['optimizer']['state'][index]['exp_avg'], expected, rtol=1e-4,
                                   atol=1e-4 * expected.abs().max().item())


def test_several_train_dirs_pool_their_pairs_and_each_is_checked(data_root, tmp_path):
    rng = np.random.default_rng(1)
    write_pairs(tmp_path / 'mine', 3, 32, rng)
    folders = f"['{data_root / 'train'}', '{tmp_path / 'mine'}']"
    train, _ = build_datasets(make_cfg(data_root, tmp_path, 'TRAINING.TRAIN_DIR', folders))
    assert len(train) == 8 + 3
    assert train[10][2] == '02' and train[0][2] == '00'  # the last item is the second folder's last pair

    write_image(str(tmp_path / 'mine' / 'input' / '01.png'), np.zeros((24, 32, 3), np.float32))
    with pytest.raises(DataCheckError, match=f"TRAIN_DIR {tmp_path / 'mine'}"):
        build_datasets(make_cfg(data_root, tmp_path, 'TRAINING.TRAIN_DIR', folders))
    missing = f"['{data_root / 'train'}', '{tmp_path / 'nowhere'}']"
    with pytest.raises(FileNotFoundError, match='nowhere'):
        build_datasets(make_cfg(data_root, tmp_path, 'TRAINING.TRAIN_DIR', missing))
    with pytest.raises(ConfigError, match='TRAINING.SYNTHETIC give one folder'):
        build_datasets(make_cfg(data_root, tmp_path, 'TRAINING.TRAIN_DIR', folders, 'TRAINING.SYNTHETIC', 'denoise'))


def test_train_dir_list_in_a_yaml_file(tmp_path):
    path = tmp_path / 'mine.yml'
    path.write_text('TRAINING:\n  TRAIN_DIR: [a/train, b/train]\n')
    assert load_config(str(path)).TRAINING.TRAIN_DIR == ['a/train', 'b/train']
    # One folder on the command line over a list in the file, and the published string form.
    assert load_config(str(path), ['TRAINING.TRAIN_DIR', 'c']).TRAINING.TRAIN_DIR == 'c'
    assert load_config(os.path.join(ROOT, 'Deraining', 'training.yml')).TRAINING.TRAIN_DIR == './Datasets/train'


@pytest.mark.parametrize('key, value, words', [
    ('OPTIM.CLIP_GRAD', -1.0, 'OPTIM.CLIP_GRAD must be a positive'),
    ('OPTIM.ACCUM_STEPS', 0, 'OPTIM.ACCUM_STEPS must be at least 1'),
    ('OPTIM.EMA', 1.0, 'OPTIM.EMA must be a decay'),
    ('OPTIM.ACCUM_STEPS', 3, 'OPTIM.ACCUM_STEPS 3 must divide'),
])
def test_bad_values_are_refused_before_training(data_root, tmp_path, key, value, words):
    with pytest.raises(ConfigError, match=words):
        fit(make_cfg(data_root, tmp_path, key, value), 'cpu')
    assert not os.path.exists(os.path.join(models_dir(tmp_path), 'model_latest.pth'))


def test_defaults_leave_the_published_recipe_alone():
    cfg = load_config(os.path.join(ROOT, 'Deblurring', 'training.yml'))
    assert (cfg.OPTIM.CLIP_GRAD, cfg.OPTIM.ACCUM_STEPS, cfg.OPTIM.EMA) == (0.0, 1, 0.0)


def test_init_widen_starts_a_wider_model_at_the_narrow_models_output(data_root, tmp_path):
    torch.manual_seed(4)
    narrow = MPRNet(**TINY).eval()
    path = str(tmp_path / 'narrow.pth')
    torch.save({'state_dict': narrow.state_dict(), 'model_config': dict(narrow.config)}, path)
    wider = ['MODEL.N_FEAT', 12, 'MODEL.SCALE_UNETFEATS', 8, 'OPTIM.EMA', 0.9]
    with pytest.raises(CheckpointMismatchError, match='does not fit'):  # without the option: refused, as before
        trainer_for(data_root, tmp_path, *wider).init_weights(path)
    trainer = trainer_for(data_root, tmp_path, *wider)
    trainer.init_weights(path, widen=True)
    assert trainer.model.shallow_feat1[0].weight.shape[0] == 12
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        expected = narrow(x)[0]
        for model in (trainer.model.eval(), trainer.ema.model):  # the weight average starts there too
            torch.testing.assert_close(model(x)[0], expected, rtol=0, atol=1e-5)


def test_init_widen_without_init_weights_is_refused(data_root, tmp_path):
    with pytest.raises(ConfigError, match='INIT_WIDEN True widens the weights of TRAINING.INIT_WEIGHTS'):
        fit(make_cfg(data_root, tmp_path, 'TRAINING.INIT_WIDEN', True), 'cpu')
