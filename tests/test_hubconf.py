"""hubconf.py through torch.hub.load(..., source='local'), with tiny weights made here."""
import os

import pytest
import torch

from MPRNet import PRESETS, MPRNet
from utils.files.weights import WeightsNotFoundError, bundled_path, official_paths

pytestmark = pytest.mark.usefixtures('one_torch_thread')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = list(PRESETS)


def hub_load(entry, **kwargs):
    """torch.hub.load from this checkout, as a user would call it."""
    return torch.hub.load(REPO, entry, source='local', **kwargs)


def save_tiny(path, config, seed=0):
    """A tiny model saved like this project's checkpoints (state_dict + model_config); returns it."""
    torch.manual_seed(seed)
    model = MPRNet(**config).eval()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({'state_dict': model.state_dict(), 'model_config': dict(model.config)}, path)
    return model


def test_docstrings_list_the_entries():
    import hubconf  # torch.hub.list and help only read GitHub repositories
    entries = [name for name in ('mprnet', 'deblurring', 'deraining', 'denoising')
               if callable(getattr(hubconf, name, None))]
    assert len(entries) == 4 and hubconf.dependencies == ['torch']
    for name in entries:
        assert f'``{name}(' in hubconf.__doc__ and getattr(hubconf, name).__doc__
    assert "'official'" in hubconf.mprnet.__doc__ and "'bundled'" in hubconf.mprnet.__doc__


@pytest.mark.parametrize('task', TASKS)
def test_loads_each_task_from_a_checkpoint_path(task, tmp_path, tiny_config):
    path = str(tmp_path / f'{task}.pth')
    reference = save_tiny(path, tiny_config)
    model = hub_load('mprnet', task=task.upper(), weights=path)
    assert not model.training
    assert model.config == reference.config
    assert (model.weights_path, model.weights_kind) == (path, 'file')
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        assert torch.equal(model(x)[0], reference(x)[0])


def test_bundled_and_official_lookup_under_a_root(tmp_path, tiny_config):
    root = str(tmp_path)
    save_tiny(bundled_path('Deraining', root), tiny_config, seed=1)
    model = hub_load('mprnet', task='deraining', weights='auto', root=root)
    assert model.weights_kind == 'bundled' and model.weights_path == bundled_path('Deraining', root)
    save_tiny(official_paths('Deraining', root)[1], tiny_config, seed=2)
    model = hub_load('mprnet', task='Deraining', weights='auto', root=root)
    assert model.weights_kind == 'official'
    with pytest.raises(WeightsNotFoundError, match='no official weights for Denoising'):
        hub_load('mprnet', task='Denoising', weights='official', root=root)


@pytest.mark.parametrize('task', TASKS)
def test_no_weights_gives_the_task_preset_in_eval_mode(task):
    model = hub_load(task.lower(), weights=None)
    assert model.preset_name() == task and not model.training
    assert model.weights_kind is None


def test_unknown_task_and_missing_file_are_clear():
    with pytest.raises(ValueError, match='unknown task'):
        hub_load('mprnet', task='Dehazing', weights=None)
    with pytest.raises(WeightsNotFoundError, match='not found: /no/such.pth'):
        hub_load('mprnet', task='Deblurring', weights='/no/such.pth')
