"""Checkpoint files: the task they record is enforced, writes are atomic with normal permissions."""
import os
import stat

import pytest
import torch

from utils.atomic import remove_stale_temporaries, write_atomically
from utils.checkpoint import CheckpointMismatchError, build_model, recorded_task, save_atomic


def tiny_checkpoint(path, tiny_model, **extra):
    torch.save({'state_dict': tiny_model.state_dict(), 'model_config': tiny_model.config, **extra}, path)
    return str(path)


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
    assert build_model('Deblurring', training, allow_other_task=True).config == tiny_model.config
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
