"""scripts/fetch_weights.py offline: gdown's download is replaced by a stand-in that serves files from
local disk (a good checkpoint, Drive's quota page, a truncated file, another task's model, no network),
and the presets by tiny widths, so that a 'released' checkpoint is a few hundred kB."""
import hashlib
import importlib.util
import io
import json
import os
import sys
import types

import pytest
import torch

import MPRNet as mprnet_module
from MPRNet import MPRNet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_PRESETS = {'Deblurring': dict(n_feat=8, scale_unetfeats=4, scale_orsnetfeats=4),
                'Deraining': dict(n_feat=12, scale_unetfeats=4, scale_orsnetfeats=4),
                'Denoising': dict(n_feat=8, scale_unetfeats=8, scale_orsnetfeats=4)}
QUOTA_PAGE = (b'<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>Too many '
              b'users have viewed or downloaded this file recently.</body></html>')


def released(task, seed=0):
    """A checkpoint as the authors released them: {'state_dict': {'module.' + key: tensor}}."""
    torch.manual_seed(seed)
    state = MPRNet.for_task(task).state_dict()
    buffer = io.BytesIO()
    torch.save({'state_dict': {'module.' + k: v for k, v in state.items()}}, buffer)
    return buffer.getvalue()


@pytest.fixture
def script(monkeypatch):
    for task, widths in TINY_PRESETS.items():
        monkeypatch.setitem(mprnet_module.PRESETS, task, widths)
    spec = importlib.util.spec_from_file_location('fetch_weights', os.path.join(ROOT, 'scripts', 'fetch_weights.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def drive(monkeypatch, script):
    """A stand-in gdown: serves drive.files[task] (bytes, or an exception to raise); records the calls.
    Like gdown it leaves a partial file beside its output, which must not survive."""
    drive = types.SimpleNamespace(files={t: released(t) for t in TINY_PRESETS}, calls=[])
    by_id = {file_id: task for task, file_id in script.DRIVE_IDS.items()}

    def download(id=None, output=None, quiet=False, **_):
        task = by_id[id]
        drive.calls.append(task)
        with open(output + '.part', 'wb') as f:
            f.write(b'partial')
        served = drive.files[task]
        if isinstance(served, Exception):
            raise served
        with open(output, 'wb') as f:
            f.write(served)
        return output

    monkeypatch.setitem(sys.modules, 'gdown', types.SimpleNamespace(download=download))
    return drive


def run(script, capsys, *argv):
    code = script.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_downloads_verifies_and_records_every_task(tmp_path, script, drive, capsys):
    code, out, _ = run(script, capsys, '--out_dir', tmp_path)
    assert code == 0 and drive.calls == ['Deblurring', 'Deraining', 'Denoising']
    manifest = json.loads((tmp_path / 'official_weights.json').read_text())
    for task in TINY_PRESETS:
        name = f'model_{task.lower()}.pth'
        digest = hashlib.sha256(drive.files[task]).hexdigest()
        assert (tmp_path / name).read_bytes() == drive.files[task]
        assert manifest[name]['sha256'] == digest and manifest[name]['bytes'] == len(drive.files[task])
        assert f'{task}: {tmp_path / name}' in out and digest in out
    assert sorted(os.listdir(tmp_path)) == ['model_deblurring.pth', 'model_denoising.pth', 'model_deraining.pth',
                                            'official_weights.json'], 'no partial or temporary file is left'
    # An existing file is kept without asking Drive again.
    code, out, _ = run(script, capsys, '--out_dir', tmp_path, '--task', 'deraining')
    assert code == 0 and drive.calls == ['Deblurring', 'Deraining', 'Denoising'] and 'kept' in out


@pytest.mark.parametrize('kind, words', [
    ('quota page', 'Google Drive sent a web page instead of model_deblurring.pth'),
    ('truncated', 'not the Deblurring model: cannot read checkpoint'),
    ('wrong task', 'this looks like the Deraining model'),
    ('no network', 'cannot download model_deblurring.pth from Google Drive (Failed to establish'),
    ('empty', 'empty file'),
])
@pytest.mark.slow
def test_what_cannot_be_kept_is_named_exit_2_and_leaves_nothing(tmp_path, script, drive, capsys, kind, words):
    good = released('Deblurring')
    drive.files['Deblurring'] = {
        'quota page': QUOTA_PAGE, 'truncated': good[:len(good) // 2], 'wrong task': released('Deraining'),
        'no network': ConnectionError('Failed to establish a new connection: Name or service not known'),
        'empty': b''}[kind]
    code, out, err = run(script, capsys, '--out_dir', tmp_path, '--task', 'Deblurring')
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert 'drive.google.com/file/d/1QwQUVbk6YVOJViCsOKYNykCsdJSVGRtb' in err
    assert os.listdir(tmp_path) == [], 'nothing left behind'


def test_a_download_with_another_hash_is_refused_then_taken_with_overwrite(tmp_path, script, drive, capsys):
    assert run(script, capsys, '--out_dir', tmp_path, '--task', 'Denoising')[0] == 0
    first = hashlib.sha256(drive.files['Denoising']).hexdigest()
    os.remove(tmp_path / 'model_denoising.pth')
    drive.files['Denoising'] = released('Denoising', seed=1)
    second = hashlib.sha256(drive.files['Denoising']).hexdigest()
    assert first != second
    code, _, err = run(script, capsys, '--out_dir', tmp_path, '--task', 'Denoising')
    assert code == 2 and f'SHA-256 {second}' in err and f'recorded {first}' in err
    assert sorted(os.listdir(tmp_path)) == ['official_weights.json']
    code, out, _ = run(script, capsys, '--out_dir', tmp_path, '--task', 'Denoising', '--overwrite')
    assert code == 0 and f'changed from the recorded {first}' in out
    assert json.loads((tmp_path / 'official_weights.json').read_text())['model_denoising.pth']['sha256'] == second


def test_without_gdown_the_message_says_how_to_install_it(tmp_path, script, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'gdown', None)  # import gdown raises ImportError
    code, _, err = run(script, capsys, '--out_dir', tmp_path, '--task', 'Deraining')
    assert code == 2 and "pip install -e '.[fetch]'" in err
    assert os.listdir(tmp_path) == []


def test_the_demo_names_the_command_when_it_falls_back_to_the_bundled_weights(tmp_path, capsys, one_torch_thread):
    import numpy as np
    import cv2
    import demo
    from utils.files.weights import official_paths
    if any(os.path.isfile(p) for p in official_paths('Deraining')):
        pytest.skip('this checkout has the official Deraining weights: the demo does not fall back')
    assert cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((16, 16, 3), np.uint8))
    assert demo.main(['--task', 'Deraining', '--input_dir', str(tmp_path / 'a.png'), '--result_dir',
                      str(tmp_path / 'out'), '--device', 'cpu', '--exact']) == 0
    assert 'python scripts/fetch_weights.py --task Deraining downloads the official one' in capsys.readouterr().out
