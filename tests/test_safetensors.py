""".safetensors weights: scripts/bundle_weights.py --format safetensors writes them, and every loader
(--weights, the weights lookup of the web page, torch.hub, TRAINING.INIT_WEIGHTS) reads them with the
checks a .pth gets. spandrel reads them in tests/test_spandrel.py."""
import importlib.util
import json
import os
import struct

import numpy as np
import pytest
import torch

import demo
import hubconf
from MPRNet import MPRNet
from utils.files.checkpoint import CheckpointMismatchError, CheckpointReadError, build_model, is_safetensors
from utils.files.weights import resolve_weights
from utils.inference.loading import build_restorer
from utils.inference.options import InferenceOptions
from utils.training.config import load_config
from utils.training.trainer import Trainer

safetensors = pytest.importorskip('safetensors')
pytestmark = pytest.mark.usefixtures('one_torch_thread')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_KEYS = ['MODEL.N_FEAT', 8, 'MODEL.SCALE_UNETFEATS', 4, 'MODEL.SCALE_ORSNETFEATS', 4, 'MODEL.NUM_CAB', 2]


def bundle_script():
    spec = importlib.util.spec_from_file_location('bundle_weights', os.path.join(ROOT, 'scripts', 'bundle_weights.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.bundle


@pytest.fixture
def training_checkpoint(tmp_path, tiny_model):
    path = tmp_path / 'model_latest.pth'
    torch.save({'epoch': 7, 'state_dict': tiny_model.state_dict(), 'model_config': tiny_model.config,
                'config': "MODEL:\n  MODE: 'Deraining'\n"}, path)
    return str(path)


@pytest.fixture
def release(tmp_path, training_checkpoint, capsys):
    out = tmp_path / 'tiny.safetensors'
    bundle_script()(['--task', 'Deraining', '--checkpoint', training_checkpoint, '--format', 'safetensors',
                     '--out', str(out)])
    assert capsys.readouterr().out.startswith(f'{out}: Deraining, epoch 7,')
    return str(out)


def test_the_file_is_safetensors_with_the_task_and_configuration_in_its_metadata(release, tiny_model):
    with open(release, 'rb') as f:
        header_length = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(header_length))
    metadata = header.pop('__metadata__')
    assert metadata['task'] == 'Deraining' and metadata['epoch'] == '7'
    assert json.loads(metadata['model_config']) == dict(n_feat=8, scale_unetfeats=4, scale_orsnetfeats=4,
                                                        num_cab=2, **{k: tiny_model.config[k] for k in
                                                                      ('in_c', 'out_c', 'kernel_size',
                                                                       'reduction', 'bias')})
    assert set(header) == set(tiny_model.state_dict()) and {v['dtype'] for v in header.values()} == {'F16'}
    assert is_safetensors(release)


@pytest.mark.slow
def test_it_restores_exactly_what_the_pth_release_restores(release, training_checkpoint, tmp_path):
    pth = tmp_path / 'tiny.pth'
    bundle_script()(['--task', 'Deraining', '--checkpoint', training_checkpoint, '--out', str(pth)])
    x = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours, theirs = (build_model('Deraining', p).eval()(x)[0] for p in (release, str(pth)))
    assert (ours - theirs).abs().max().item() == 0.0


def test_loaders_refuse_it_as_they_refuse_a_pth(release, tmp_path, tiny_model):
    with pytest.raises(CheckpointMismatchError, match='was trained for Deraining'):
        build_model('Denoising', release)
    with open(release, 'rb') as f:
        data = f.read()
    truncated = tmp_path / 'truncated.safetensors'
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointReadError, match='cannot read checkpoint .*truncated.safetensors'):
        build_model('Deraining', str(truncated))
    from safetensors.torch import save_file
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    state['tail.weight'].view(-1)[0] = float('nan')
    save_file(state, str(tmp_path / 'nan.safetensors'), metadata={'model_config': json.dumps(tiny_model.config)})
    with pytest.raises(CheckpointReadError, match='tensor tail.weight holds 1 NaN'):
        build_model('Deraining', str(tmp_path / 'nan.safetensors'))


@pytest.mark.slow
def test_every_loader_accepts_it(release, tmp_path, capsys):
    reference = build_model('Deraining', release)
    # torch.hub
    hub = hubconf.mprnet('Deraining', weights=release)
    assert all(torch.equal(a, b) for a, b in zip(hub.state_dict().values(), reference.state_dict().values()))
    # the web page's lookup: a bundled .safetensors under its --weights_root
    folder = tmp_path / 'root' / 'pretrained_models' / 'synthetic'
    folder.mkdir(parents=True)
    os.replace(release, folder / 'model_deraining_synthetic.safetensors')
    path, kind = resolve_weights('Deraining', 'auto', root=str(tmp_path / 'root'))
    assert (os.path.basename(path), kind) == ('model_deraining_synthetic.safetensors', 'bundled')
    restorer, info = build_restorer('Deraining', InferenceOptions(device='cpu', root=str(tmp_path / 'root')))
    assert info.kind == 'bundled'
    # demo.py --weights
    images = tmp_path / 'in'
    images.mkdir()
    import cv2
    cv2.imwrite(str(images / 'a.png'), np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8))
    assert demo.main(['--task', 'Deraining', '--input_dir', str(images), '--result_dir', str(tmp_path / 'out'),
                      '--weights', path, '--device', 'cpu']) == 0
    assert (tmp_path / 'out' / 'a.png').is_file() and 'safetensors' in capsys.readouterr().out
    # TRAINING.INIT_WEIGHTS
    trainer = Trainer(load_config(None, ['MODEL.MODE', 'Deraining', *[str(v) for v in TINY_KEYS]]),
                      torch.device('cpu'))
    trainer.init_weights(path)
    assert all(torch.equal(a, b) for a, b in zip(trainer.model.state_dict().values(),
                                                 reference.state_dict().values()))
    assert isinstance(trainer.model, MPRNet)
