"""demo.py end to end on CPU with a tiny model saved in our checkpoint format."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import demo
from MPRNet import MPRNet
from utils.files.checkpoint import OFFICIAL_WEIGHTS_URL
from utils.inference.restorer import Restorer, TilePlan
from utils.files.weights import WeightsNotFoundError, resolve_weights
from helpers import rgb8, run_demo, save_weights, write_test_image

pytestmark = pytest.mark.usefixtures('one_torch_thread')


@pytest.fixture
def weights(tmp_path, tiny_model):
    """The tiny model saved as DataParallel keys plus its configuration (what build_model reads)."""
    return save_weights(tmp_path / 'tiny.pth', tiny_model, prefix='module.')


@pytest.fixture
def inputs(tmp_path):
    """One image of each awkward kind, written with OpenCV directly."""
    folder = tmp_path / 'in'
    folder.mkdir()
    write_test_image(folder / 'odd.png', rgb8(33, 47))
    write_test_image(folder / 'gray.jpg', rgb8(24, 20)[:, :, 0])
    write_test_image(folder / 'alpha.png', np.dstack([rgb8(16, 24), np.full((16, 24), 128, np.uint8)]))
    write_test_image(folder / 'deep.png', (rgb8(24, 24).astype(np.uint16) * 257))
    write_test_image(folder / 'pic.bmp', rgb8(8, 16))
    Image.fromarray(rgb8(12, 20)).convert('P').save(folder / 'palette.png')
    (folder / 'notes.txt').write_text('not an image')
    return folder


def test_restores_every_kind_of_image(inputs, tmp_path, weights, capsys):
    out = tmp_path / 'out'
    assert run_demo('--task', 'deblurring', '--input_dir', inputs, '--result_dir', out, '--weights', weights) == 0
    expected = {'odd': (33, 47, np.uint8), 'gray': (24, 20, np.uint8), 'alpha': (16, 24, np.uint8),
                'deep': (24, 24, np.uint16), 'pic': (8, 16, np.uint8), 'palette': (12, 20, np.uint8)}
    assert sorted(os.listdir(out)) == sorted(f'{name}.png' for name in expected)
    for name, (h, w, dtype) in expected.items():
        result = cv2.imread(str(out / f'{name}.png'), cv2.IMREAD_UNCHANGED)
        assert result.shape == (h, w, 3) and result.dtype == dtype, name
    printed = capsys.readouterr().out
    assert '6 of 6 images restored' in printed and str(out) in printed
    assert '1 non-image files' in printed  # notes.txt is reported, not silently skipped


def test_result_is_the_restorers_output(tmp_path, weights, tiny_model):
    src = write_test_image(tmp_path / 'one.png', rgb8(33, 47, seed=3))
    assert run_demo('--task', 'Deblurring', '--input_dir', src, '--result_dir', tmp_path / 'out', '--weights', weights,
                    '--tile', 24, '--tile_overlap', 8, '--exact') == 0
    result = cv2.cvtColor(cv2.imread(str(tmp_path / 'out' / 'one.png')), cv2.COLOR_BGR2RGB)
    x = torch.from_numpy(cv2.cvtColor(cv2.imread(str(src)), cv2.COLOR_BGR2RGB)).permute(2, 0, 1)[None] / 255.0
    expected = Restorer(tiny_model, tiles=TilePlan(24, 8))(x.float())[0].permute(1, 2, 0).numpy()
    assert np.abs(result.astype(np.float32) - np.round(expected * 255)).max() <= 1


@pytest.mark.slow
def test_a_broken_file_is_named_and_the_others_written(inputs, tmp_path, weights, capsys):
    (inputs / 'broken.png').write_bytes(b'\x89PNG this is not really a png')
    out = tmp_path / 'out'
    assert run_demo('--task', 'Deblurring', '--input_dir', inputs, '--result_dir', out, '--weights', weights) == 1
    assert len(os.listdir(out)) == 6 and not (out / 'broken.png').exists()
    captured = capsys.readouterr()
    assert 'broken.png' in captured.err and '6 of 7 images restored' in captured.out


def test_missing_weights_name_the_file_and_the_source(inputs, tmp_path, capsys):
    missing = tmp_path / 'nowhere' / 'model_deblurring.pth'
    assert run_demo('--task', 'Deblurring', '--input_dir', inputs, '--result_dir', tmp_path / 'out',
                    '--weights', missing) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and OFFICIAL_WEIGHTS_URL in err
    assert not (tmp_path / 'out').exists()


def test_weight_lookup_official_then_synthetic(tmp_path):
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights('Deraining', 'auto', str(tmp_path))
    message = str(info.value)
    assert str(tmp_path / 'pretrained_models' / 'model_deraining.pth') in message
    assert OFFICIAL_WEIGHTS_URL in message and '\n' not in message
    synthetic = tmp_path / 'pretrained_models' / 'synthetic' / 'model_deraining_synthetic.pth'
    synthetic.parent.mkdir(parents=True)
    synthetic.write_bytes(b'')
    assert resolve_weights('Deraining', 'auto', str(tmp_path)) == (str(synthetic), 'bundled')
    with pytest.raises(WeightsNotFoundError, match='no official weights'):
        resolve_weights('Deraining', 'official', str(tmp_path))
    in_task_folder = tmp_path / 'Deraining' / 'pretrained_models' / 'model_deraining.pth'
    in_task_folder.parent.mkdir(parents=True)
    in_task_folder.write_bytes(b'')
    assert resolve_weights('Deraining', 'auto', str(tmp_path)) == (str(in_task_folder), 'official')
    official = tmp_path / 'pretrained_models' / 'model_deraining.pth'
    official.write_bytes(b'')
    assert resolve_weights('Deraining', 'auto', str(tmp_path)) == (str(official), 'official')
    assert resolve_weights('Deraining', 'bundled', str(tmp_path)) == (str(synthetic), 'bundled')


def test_an_installed_copy_without_the_weights_folder_says_so(tmp_path):
    """A root like site-packages after `pip install .`: no pretrained_models/ at all. Each way of
    asking names that folder and says to pass a path; a checkout that has the folder but not the
    file gets no such hint (there the file is missing, not the install's data)."""
    folder = str(tmp_path / 'pretrained_models')
    for choice in ('auto', 'official', 'bundled'):
        with pytest.raises(WeightsNotFoundError) as info:
            resolve_weights('Denoising', choice, str(tmp_path))
        message = str(info.value)
        assert f'There is no {folder}/ folder' in message, choice
        assert 'installed without its weights' in message and 'pass a checkpoint path' in message
    (tmp_path / 'pretrained_models').mkdir()
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights('Denoising', 'bundled', str(tmp_path))
    assert 'installed without' not in str(info.value)


def test_wrong_task_weights_get_the_preset_message(inputs, tmp_path, capsys):
    path = tmp_path / 'model_deraining.pth'
    torch.save({'state_dict': MPRNet.for_task('Deraining').state_dict()}, path)
    assert run_demo('--task', 'Denoising', '--input_dir', inputs, '--result_dir', tmp_path / 'out',
                    '--weights', path) == 2
    assert 'looks like the Deraining model' in capsys.readouterr().err


def test_empty_folder_is_an_error(tmp_path, weights, capsys):
    (tmp_path / 'empty').mkdir()
    assert run_demo('--task', 'Denoising', '--input_dir', tmp_path / 'empty', '--result_dir', tmp_path / 'out',
                    '--weights', weights) == 2
    assert 'no images found in' in capsys.readouterr().err


def test_nothing_is_overwritten_silently(inputs, tmp_path, weights, capsys):
    assert run_demo('--task', 'Deblurring', '--input_dir', inputs, '--result_dir', inputs, '--weights', weights) == 2
    assert 'input folder' in capsys.readouterr().err
    out = tmp_path / 'out'
    out.mkdir()
    write_test_image(out / 'odd.png', np.zeros((5, 5, 3), np.uint8))
    assert run_demo('--task', 'Deblurring', '--input_dir', inputs, '--result_dir', out, '--weights', weights) == 2
    err = capsys.readouterr().err
    assert 'odd.png' in err and '--overwrite' in err
    assert cv2.imread(str(out / 'odd.png')).shape == (5, 5, 3)  # untouched
    assert run_demo('--task', 'Deblurring', '--input_dir', inputs, '--result_dir', out, '--weights', weights,
                    '--overwrite') == 0
    assert cv2.imread(str(out / 'odd.png')).shape == (33, 47, 3)


def test_two_inputs_with_one_result_name_are_refused(tmp_path, weights, capsys):
    folder = tmp_path / 'in'
    folder.mkdir()
    write_test_image(folder / 'same.png', rgb8(8, 8))
    write_test_image(folder / 'same.jpg', rgb8(8, 8))
    assert run_demo('--task', 'Deblurring', '--input_dir', folder, '--result_dir', tmp_path / 'out',
                    '--weights', weights) == 2
    err = capsys.readouterr().err
    assert 'same.png' in err and 'same.jpg' in err


def test_bad_tile_option_is_refused_before_loading(inputs, tmp_path, capsys):
    assert run_demo('--task', 'Deblurring', '--input_dir', inputs, '--result_dir', tmp_path / 'out',
                    '--tile', 100) == 2
    assert '--tile 100' in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the message shown when no GPU is present')
def test_cuda_without_a_gpu_is_a_clear_error(inputs, tmp_path, weights, capsys):
    assert run_demo('--task', 'Deblurring', '--input_dir', inputs, '--result_dir', tmp_path / 'out',
                    '--weights', weights, '--device', 'cuda') == 2
    assert '--device cpu' in capsys.readouterr().err


def test_a_selection_of_links_into_the_result_folder_is_never_replaced(tmp_path, weights, capsys):
    # A first run restored photos/ into out/; a 'selection' folder links to two of those results.
    out, selection = tmp_path / 'out', tmp_path / 'selection'
    out.mkdir()
    selection.mkdir()
    write_test_image(out / 'best.png', rgb8(8, 8, seed=1))
    write_test_image(tmp_path / 'other.png', rgb8(8, 8, seed=2))
    os.symlink(out / 'best.png', selection / 'best.png')      # the result itself
    os.symlink(tmp_path / 'other.png', selection / 'other.png')
    before = (out / 'best.png').read_bytes()
    for extra in ((), ('--overwrite',), ('--skip_existing',)):
        assert run_demo('--task', 'Deblurring', '--input_dir', selection, '--result_dir', out, '--weights', weights,
                        *extra) == 2, extra
        err = capsys.readouterr().err
        assert f'the result {out / "best.png"} is the input {selection / "best.png"}' in err, err
        assert (out / 'best.png').read_bytes() == before
    assert sorted(os.listdir(out)) == ['best.png']


@pytest.mark.slow
def test_a_result_that_appears_after_planning_is_kept(tmp_path, weights, capsys, monkeypatch):
    # A second demo into the same folder writes b.png while this one loads its model.
    folder, out = tmp_path / 'in', tmp_path / 'out'
    folder.mkdir()
    write_test_image(folder / 'a.png', rgb8(8, 8))
    write_test_image(folder / 'b.png', rgb8(8, 8, seed=3))
    loader = demo.load_restorer

    def other_run_writes_first(*args, **kwargs):
        out.mkdir(exist_ok=True)
        (out / 'b.png').write_bytes(b'the other run')
        return loader(*args, **kwargs)

    monkeypatch.setattr(demo, 'load_restorer', other_run_writes_first)
    assert run_demo('--task', 'Deblurring', '--input_dir', folder, '--result_dir', out, '--weights', weights) == 1
    err = capsys.readouterr().err
    assert f'{out / "b.png"} appeared while this run was working' in err and 'it was kept' in err
    assert (out / 'b.png').read_bytes() == b'the other run'
    assert cv2.imread(str(out / 'a.png')).shape == (8, 8, 3)
    assert sorted(os.listdir(out)) == ['a.png', 'b.png']  # no temporary left behind
    # --overwrite replaces it, as asked.
    monkeypatch.setattr(demo, 'load_restorer', loader)
    assert run_demo('--task', 'Deblurring', '--input_dir', folder, '--result_dir', out, '--weights', weights,
                    '--overwrite') == 0
    assert cv2.imread(str(out / 'b.png')).shape == (8, 8, 3)


# Records OMP_WAIT_POLICY at the moment PyTorch (and with it its OpenMP runtime) is first imported.
_SPY_ON_TORCH = '''
import importlib.abc, os, sys
seen = []
class Spy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == 'torch' and not seen:
            seen.append(os.environ.get('OMP_WAIT_POLICY'))
sys.meta_path.insert(0, Spy())
import {module}
print(seen[0])
'''


@pytest.mark.slow
@pytest.mark.parametrize('module', ['demo', 'app'])
@pytest.mark.parametrize('given,expected', [(None, 'PASSIVE'), ('ACTIVE', 'ACTIVE')])
def test_openmp_threads_sleep_when_idle_from_before_torch_loads(module, given, expected):
    env = {k: v for k, v in os.environ.items() if k != 'OMP_WAIT_POLICY'}
    if given:
        env['OMP_WAIT_POLICY'] = given  # the user's choice wins
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, '-c', _SPY_ON_TORCH.format(module=module)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == expected
