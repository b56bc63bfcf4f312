"""Checkpoint files: the task they record is enforced, writes are atomic with normal permissions."""
import os
import stat

import pytest
import torch

from utils.files.atomic import remove_stale_temporaries, write_atomically
from utils.files.checkpoint import CheckpointMismatchError, build_model, recorded_task, save_atomic


def tiny_checkpoint(path, tiny_model, **extra):
    torch.save({'state_dict': tiny_model.state_dict(), 'model_config': tiny_model.config, **extra}, path)
    return str(path)


@pytest.mark.slow
def test_a_checkpoint_for_another_task_is_refused(tmp_path, tiny_model):
    training = tiny_checkpoint(tmp_path / 'run.pth', tiny_model, config="MODEL:\n  MODE: 'Deraining'\n")
    release = tiny_checkpoint(tmp_path / 'release.pth', tiny_model, task='Denoising')
    assert recorded_task(torch.load(training, weights_only=True)) == 'Deraining'
    assert recorded_task(torch.load(release, weights_only=True)) == 'Denoising'
    with pytest.raises(CheckpointMismatchError, match='trained for Deraining.*asked for Deblurring'):
        build_model('Deblurring', training)
    with pytest.raises(CheckpointMismatchError, match='trained for Denoising'):
        build_model('deraining', release)
    assert build_model('Deraining', training).config == tiny_model.config
    # Files that record no task (released or bare) load for any task whose shapes they fit.
    bare = tiny_checkpoint(tmp_path / 'bare.pth', tiny_model)
    assert recorded_task(torch.load(bare, weights_only=True)) is None
    build_model('Deblurring', bare)


def test_demo_refuses_a_training_run_of_another_task(tmp_path, tiny_model, capsys):
    import demo
    path = tiny_checkpoint(tmp_path / 'model_latest.pth', tiny_model, config="MODEL:\n  MODE: 'Deraining'\n")
    (tmp_path / 'in').mkdir()
    (tmp_path / 'in' / 'x.png').write_bytes(b'')
    assert demo.main(['--task', 'Deblurring', '--input_dir', str(tmp_path / 'in'), '--result_dir',
                      str(tmp_path / 'out'), '--weights', path]) == 2
    assert 'trained for Deraining' in capsys.readouterr().err


def test_checkpoints_get_the_umask_permissions_and_leave_no_temporary(tmp_path):
    path = tmp_path / 'ckpt.pth'
    save_atomic({'x': torch.zeros(2)}, str(path))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    assert os.listdir(tmp_path) == ['ckpt.pth']


def test_a_killed_write_keeps_the_old_file_and_its_temporary_is_cleared_later(tmp_path):
    path = tmp_path / 'model_latest.pth'
    save_atomic({'epoch': 1}, str(path))

    def dies_midway(f):
        f.write(b'partial')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(str(path), dies_midway)
    assert torch.load(path, weights_only=True) == {'epoch': 1}
    assert os.listdir(tmp_path) == ['model_latest.pth']  # cleaned up on the way out
    # A process killed outright (SIGKILL) cannot clean up: its temporary is cleared at the next start.
    stale = tmp_path / '.model_latest.pth.ab12_x9z.tmp'
    stale.write_bytes(b'partial')
    other = tmp_path / '.hidden_notes.txt'
    other.write_text('not ours')
    assert remove_stale_temporaries(str(tmp_path)) == [str(stale)]
    assert sorted(os.listdir(tmp_path)) == ['.hidden_notes.txt', 'model_latest.pth']


# ---------------------------------------------------------------------- what a checkpoint holds is checked

def test_weights_holding_nan_or_inf_are_refused_naming_the_first_bad_tensor(tmp_path, tiny_model):
    from utils.files.checkpoint import CheckpointReadError
    state = tiny_model.state_dict()
    keys = list(state)
    first, later = keys[3], keys[10]
    state[first] = state[first].clone()
    state[first].view(-1)[1] = float('inf')
    state[later] = torch.full_like(state[later], float('nan'))
    path = tmp_path / 'diverged.pth'
    torch.save({'state_dict': state, 'model_config': tiny_model.config}, path)
    with pytest.raises(CheckpointReadError) as refused:
        build_model('Deraining', str(path))
    message = str(refused.value)
    assert str(path) in message and f'tensor {first} holds 1 NaN or infinite value(s)' in message
    assert later not in message


def test_the_demo_refuses_nan_weights_with_exit_2(tmp_path, tiny_model, capsys):
    import demo
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    key = next(iter(state))
    state[key].view(-1)[0] = float('nan')
    path = tmp_path / 'nan.pth'
    torch.save({'state_dict': state, 'model_config': tiny_model.config}, path)
    import numpy as np
    from utils.files.image_io import write_image
    write_image(str(tmp_path / 'in' / 'x.png'), np.full((16, 16, 3), 0.5, np.float32))
    assert demo.main(['--task', 'Deraining', '--input_dir', str(tmp_path / 'in'), '--result_dir',
                      str(tmp_path / 'out'), '--weights', str(path)]) == 2
    err = capsys.readouterr().err
    assert f'tensor {key} holds' in err and str(path) in err
    assert not (tmp_path / 'out' / 'x.png').exists()


@pytest.mark.parametrize('change, fragment', [
    ({'widht': 8}, "unknown key 'widht'"),
    ({'n_feat': '8'}, "n_feat must be an integer from 1 to 512, got '8'"),
    ({'num_cab': 2.0}, 'num_cab must be an integer from 1 to 64, got 2.0'),
    ({'n_feat': True}, 'n_feat must be an integer from 1 to 512, got True'),
    ({'n_feat': 4000}, 'n_feat must be an integer from 1 to 512, got 4000'),
    ({'bias': 'no'}, "bias must be true or false, got 'no'"),
    ({'in_c': 4}, 'in_c must be an integer from 3 to 3, got 4'),
    ({'reduction': 9}, 'reduction 9 is larger than n_feat'),
])
def test_a_bad_model_config_is_refused_before_a_model_is_built(tmp_path, tiny_model, monkeypatch, change, fragment):
    import MPRNet as mprnet_module
    path = tiny_checkpoint(tmp_path / 'bad.pth', tiny_model)
    ckpt = torch.load(path, weights_only=True)
    ckpt['model_config'] = {**ckpt['model_config'], **change}
    torch.save(ckpt, path)
    built = []
    real_init = mprnet_module.MPRNet.__init__

    def counted_init(self, *args, **kwargs):
        built.append(kwargs)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(mprnet_module.MPRNet, '__init__', counted_init)
    with pytest.raises(CheckpointMismatchError) as refused:
        build_model('Deraining', path)
    assert str(refused.value).startswith(f'{path}: model_config ') and fragment in str(refused.value)
    assert built == []


def test_a_wide_config_that_does_not_fit_the_tensors_is_refused_without_allocating(tmp_path, tiny_model):
    import resource
    path = tiny_checkpoint(tmp_path / 'wide.pth', tiny_model)
    ckpt = torch.load(path, weights_only=True)
    ckpt['model_config'] = {**ckpt['model_config'], 'n_feat': 512, 'scale_unetfeats': 512}
    torch.save(ckpt, path)
    # A real MPRNet of these widths holds about 1.2e9 float32 parameters (4.6 GB).
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(CheckpointMismatchError, match='does not fit a custom MPRNet \\(n_feat=512\\)'):
        build_model('Deraining', path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 500 * 1024


def test_bundling_refuses_what_would_not_load_and_leaves_no_file(tmp_path, tiny_model):
    from utils.files.checkpoint import CheckpointReadError
    from utils.files.weights import bundle_checkpoint
    out = tmp_path / 'release.pth'
    good = tiny_checkpoint(tmp_path / 'good.pth', tiny_model, config="MODEL:\n  MODE: 'Deraining'\n")
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key].view(-1)[0] = 1e6  # finite in float32, infinite once bundled as fp16 (max 65504)
    overflow = tmp_path / 'overflow.pth'
    torch.save({'state_dict': state, 'model_config': tiny_model.config}, overflow)
    with pytest.raises(CheckpointReadError, match=f'tensor {key} holds 1 NaN or infinite'):
        bundle_checkpoint(str(overflow), str(out), 'Deraining')
    ckpt = torch.load(good, weights_only=True)
    ckpt['model_config'] = {**ckpt['model_config'], 'n_feat': 'eight'}
    torch.save(ckpt, tmp_path / 'badconfig.pth')
    with pytest.raises(CheckpointMismatchError, match='n_feat must be an integer'):
        bundle_checkpoint(str(tmp_path / 'badconfig.pth'), str(out), 'Deraining')
    with pytest.raises(ValueError, match='is the checkpoint being bundled'):
        bundle_checkpoint(good, good, 'Deraining')
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []
    bundle_checkpoint(good, str(out), 'Deraining')
    assert build_model('Deraining', str(out)).config == tiny_model.config


@pytest.mark.slow
def test_a_file_size_limit_mid_save_keeps_the_previous_checkpoint(tmp_path):
    import subprocess
    import sys
    path = tmp_path / 'model_latest.pth'
    save_atomic({'epoch': 1}, str(path))
    before = path.read_bytes()
    # A real failed write, no monkeypatching: the kernel refuses bytes past 64 KiB (EFBIG), and
    # the 4 MB tensor does not fit. SIGXFSZ is ignored so the write fails instead of killing.
    code = ('import resource, signal, sys, torch\n'
            'from utils.files.checkpoint import save_atomic\n'
            'signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n'
            'resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n'
            'try:\n'
            '    save_atomic({"epoch": 2, "w": torch.zeros(2 ** 20)}, sys.argv[1])\n'
            'except OSError as err:\n'
            '    print(err)\n')
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run([sys.executable, '-c', code, str(path)], cwd=root, capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, PYTHONPATH=root, OMP_NUM_THREADS='1'))
    assert run.returncode == 0, run.stderr[-2000:]
    assert f'cannot write {path}' in run.stdout and 'the previous file, if any, is unchanged' in run.stdout
    assert path.read_bytes() == before and os.listdir(tmp_path) == ['model_latest.pth']


def test_a_checkpoint_of_compressed_tensors_is_refused_unread(tmp_path, tiny_model, monkeypatch):
    import zipfile
    from utils.files import checkpoint
    monkeypatch.setattr(checkpoint, '_UNPACK_SLACK', 0, raising=False)  # the slack is for large files; these are small
    plain = tmp_path / 'plain.pth'
    torch.save({'epoch': 1, 'zeros': torch.zeros(10 ** 6)}, plain)
    assert checkpoint.load_checkpoint_file(str(plain))['zeros'].shape == (10 ** 6,)  # stored: loads
    # The same entries deflated: 4 MB of zeros fit in a few KB.
    bomb = tmp_path / 'bomb.pth'
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(bomb, 'w', zipfile.ZIP_DEFLATED) as packed:
        for info in source.infolist():
            packed.writestr(info.filename, source.read(info))
    assert os.path.getsize(bomb) < 10 ** 5

    def never(*args, **kwargs):
        raise AssertionError('torch.load ran')
    monkeypatch.setattr(torch, 'load', never)
    with pytest.raises(checkpoint.CheckpointReadError, match=r'bomb.pth: its 0.0 MiB unpack to .* GiB of '
                                                             'compressed tensors, which torch.save never writes'):
        checkpoint.load_checkpoint_file(str(bomb))
