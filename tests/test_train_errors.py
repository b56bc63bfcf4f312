"""train.py on common mistakes: one line naming the file or key and what to do, exit 2, before training.

Each case is one a user makes; none may start an epoch
or leave a checkpoint behind.
"""
import importlib.util
import os
import shutil

import numpy as np
import pytest

from helpers import png_header_only, tiny_keys
from utils.files.image_io import write_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_KEYS = tiny_keys(num_cab=1)

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def load_train_script():
    spec = importlib.util.spec_from_file_location('train_deraining', os.path.join(ROOT, 'Deraining', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_set(folder, names, size=32, seed=0):
    rng = np.random.default_rng(seed)
    for name in names:
        for side in ('input', 'target'):
            write_image(os.path.join(folder, side, f'{name}.png'), rng.random((size, size, 3)).astype(np.float32))


@pytest.fixture
def root(tmp_path):
    write_set(tmp_path / 'train', ['a', 'b', 'c', 'd'])
    write_set(tmp_path / 'val', ['v'])
    return tmp_path


def argv(root, *extra):
    return ['--device', 'cpu', 'MODEL.MODE', 'Deraining', *TINY_KEYS, 'OPTIM.BATCH_SIZE', '2', 'OPTIM.NUM_EPOCHS', '1',
            'TRAINING.TRAIN_PS', '16', 'TRAINING.VAL_PS', '16', 'TRAINING.NUM_WORKERS', '0',
            'TRAINING.TRAIN_DIR', str(root / 'train'), 'TRAINING.VAL_DIR', str(root / 'val'),
            'TRAINING.SAVE_DIR', str(root / 'runs'), *[str(e) for e in extra]]


def refused(capsys, args, *fragments):
    """Run train.py with `args`: it must exit 2 with one line holding every fragment, before training."""
    with pytest.raises(SystemExit) as stopped:
        load_train_script().main(args)
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 2, err
    assert err.startswith('error: ') and 'Traceback' not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def no_checkpoint(root):
    models = root / 'runs' / 'Deraining' / 'models' / 'MPRNet'
    return not models.exists() or not [f for f in os.listdir(models) if f.endswith('.pth')]


def test_empty_input_folder(root, capsys):
    for f in os.listdir(root / 'train' / 'input'):
        os.remove(root / 'train' / 'input' / f)
    refused(capsys, argv(root), 'no images in', 'input')
    assert no_checkpoint(root)


def test_unmatched_pair_names(root, capsys):
    os.rename(root / 'train' / 'target' / 'b.png', root / 'train' / 'target' / 'bb.png')
    refused(capsys, argv(root), 'inputs without a target', 'b', 'targets without an input', 'bb')


def test_yaml_syntax_error_names_the_file(root, capsys):
    bad = root / 'bad.yml'
    bad.write_text('OPTIM:\n  BATCH_SIZE: [1, 2\n')
    refused(capsys, ['--config', str(bad)] + argv(root), str(bad), 'not valid YAML')


@pytest.mark.parametrize('patch', [4, 20])
def test_patch_size_the_network_cannot_take(root, capsys, patch):
    refused(capsys, argv(root, 'TRAINING.TRAIN_PS', patch), 'TRAINING.TRAIN_PS', 'multiple of 8', str(patch))
    assert no_checkpoint(root)


def test_batch_size_zero(root, capsys):
    refused(capsys, argv(root, 'OPTIM.BATCH_SIZE', 0), 'OPTIM.BATCH_SIZE', 'at least 1')


def test_corrupt_checkpoint_with_resume(root, capsys):
    models = root / 'runs' / 'Deraining' / 'models' / 'MPRNet'
    models.mkdir(parents=True)
    (models / 'model_latest.pth').write_bytes(b'truncated download')
    refused(capsys, argv(root, 'TRAINING.RESUME', 'True'), 'cannot read checkpoint', 'model_latest.pth')


def test_size_mismatch_and_corrupt_image_are_found_at_start(root, capsys):
    write_image(str(root / 'train' / 'target' / 'c.png'), np.zeros((24, 32, 3), np.float32))
    (root / 'train' / 'input' / 'd.png').write_bytes(b'\x89PNG but not really')
    refused(capsys, argv(root), '2 problem(s) in TRAINING.TRAIN_DIR', 'sizes differ within a pair: c.png',
                  'd.png', 'TRAINING.SCAN_DATA False')
    assert no_checkpoint(root)
    # The scan can be switched off for huge sets (the problems then surface when a sample is loaded).
    from utils.training import datasets
    from utils.training.config import load_config
    cfg = load_config(None, argv(root, 'TRAINING.SCAN_DATA', 'False')[2:])
    train, _ = datasets.build_datasets(cfg)
    assert len(train) == 4


def test_log_counts_steps_of_the_real_batch_and_temporaries_are_cleared(root, capsys):
    models = root / 'runs' / 'Deraining' / 'models' / 'MPRNet'
    models.mkdir(parents=True)
    stale = models / '.model_latest.pth.k3j5x_9q.tmp'
    stale.write_bytes(b'half a checkpoint')
    load_train_script().main(argv(root, 'OPTIM.BATCH_SIZE', 64))
    out = capsys.readouterr()
    assert '1 step of 4 per epoch' in out.out and 'OPTIM.BATCH_SIZE 64 is more than the 4' in out.out
    assert not stale.exists() and 'removed' in out.err + out.out


# ------------------------------------------------------------------------------------ faults during a run

def session_dir(root):
    return root / 'runs' / 'Deraining' / 'models' / 'MPRNet'


def one_line_exit(capsys, args, code):
    """Run train.py with `args`: it must exit `code` with one error line; returns that line."""
    with pytest.raises(SystemExit) as stopped:
        load_train_script().main(args)
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == code, err
    assert err.startswith('error: ') and len(err.splitlines()) == 1 and 'Traceback' not in err, err
    return err


def test_a_second_run_of_the_same_session_is_refused_while_the_first_trains(root, capsys, monkeypatch):
    from utils.training.trainer import Trainer
    real_step, second = Trainer.train_step, {}

    def step_then_start_a_second_run(self, *args, **kwargs):
        if not second:  # during the first run's first step, before any checkpoint exists
            with pytest.raises(SystemExit) as stopped:
                load_train_script().main(argv(root))
            second['code'], second['err'] = stopped.value.code, capsys.readouterr().err.strip()
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, 'train_step', step_then_start_a_second_run)
    load_train_script().main(argv(root))
    assert second['code'] == 2, second['err']
    assert len(second['err'].splitlines()) == 1
    for fragment in ('MODEL.SESSION MPRNet', f'in use by process {os.getpid()} on this host', '.lock'):
        assert fragment in second['err'], (fragment, second['err'])
    # The first run finished and let go of its folder.
    assert sorted(os.listdir(session_dir(root))) == ['model_latest.pth']


def test_a_stale_lock_of_a_dead_process_is_replaced_with_a_note(root, capsys):
    import socket
    import subprocess
    import sys
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()  # its pid is now free: nothing runs under it
    session_dir(root).mkdir(parents=True)
    (session_dir(root) / '.lock').write_text(f'{dead.pid} {socket.gethostname()}\n')
    load_train_script().main(argv(root))
    out = capsys.readouterr()
    assert f'replaced the stale lock {session_dir(root) / ".lock"} (by process {dead.pid}, no longer running)' \
        in out.out + out.err
    assert sorted(os.listdir(session_dir(root))) == ['model_latest.pth']


def test_a_lock_from_another_host_is_not_guessed_stale(root, capsys):
    session_dir(root).mkdir(parents=True)
    lock = session_dir(root) / '.lock'
    lock.write_text('4242 some-other-node\n')
    err = one_line_exit(capsys, argv(root), 2)
    assert 'in use by process 4242 on host some-other-node' in err and 'delete the lock' in err
    assert lock.read_text() == '4242 some-other-node\n' and no_checkpoint(root)


@pytest.mark.slow
def test_sigterm_releases_the_lock_and_exits_143(root):
    import signal
    import subprocess
    import sys
    import time
    script = os.path.join(ROOT, 'Deraining', 'train.py')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    run = subprocess.Popen([sys.executable, script, *argv(root, 'OPTIM.NUM_EPOCHS', 10000)], cwd=root, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = session_dir(root) / '.lock'
    deadline = time.monotonic() + 120
    # The lock is created, then its owner written into it: wait for both.
    while not (lock.exists() and lock.read_text().strip()) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lock.read_text().split()[0] == str(run.pid)
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 143, err[-2000:]
    assert 'terminated (SIGTERM)' in err and 'Traceback' not in err, err[-2000:]
    assert not lock.exists()


def test_sigterm_inside_an_import_waits_for_the_import_to_finish(tmp_path, monkeypatch):
    # The module signals itself at its top level, then keeps importing: the import must complete
    # (a half-imported module breaks every later import of it), and Terminated must come after it.
    import signal
    import sys
    import time
    from utils.training import cli
    module = 'slow_module_under_sigterm'
    (tmp_path / f'{module}.py').write_text(
        'import os, signal, time\n'
        'os.kill(os.getpid(), signal.SIGTERM)\n'
        'end = time.monotonic() + 0.3\n'
        'while time.monotonic() < end:\n'
        '    pass\n'
        'COMPLETE = True\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    before = signal.getsignal(signal.SIGTERM)
    reached = []
    with pytest.raises(cli.Terminated):
        with cli._sigterm_raises():
            # By a name in a variable: the module exists only in this test's folder, and
            # tests/test_packaging.py reads literal imports as dependencies.
            reached.append(importlib.import_module(module).COMPLETE)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # the signal is delivered again once the import is over
                time.sleep(0.01)
    assert reached == [True]
    assert sys.modules[module].COMPLETE
    assert signal.getsignal(signal.SIGTERM) == before
    del sys.modules[module]


def test_a_full_disk_stops_with_exit_3_and_names_the_last_good_checkpoint(root, capsys, monkeypatch):
    import errno
    import torch
    real_save, saves = torch.save, []

    def disk_full_at_the_second_save(obj, f, *args, **kwargs):
        saves.append(1)
        if len(saves) == 2:  # epoch 2's model_latest.pth: part of it fits, then the disk is full
            f.write(b'part of a checkpoint')
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, 'save', disk_full_at_the_second_save)
    latest = session_dir(root) / 'model_latest.pth'
    err = one_line_exit(capsys, argv(root, 'OPTIM.NUM_EPOCHS', 3), 3)
    for fragment in (f'cannot write {latest}', 'No space left on device', 'Training stopped in epoch 2',
                     f'the last good checkpoint is {latest} (epoch 1)', 'TRAINING.RESUME True'):
        assert fragment in err, (fragment, err)
    assert sorted(os.listdir(session_dir(root))) == ['model_latest.pth']  # no temporary, no lock
    assert torch.load(latest, weights_only=True)['epoch'] == 1


def test_resuming_a_checkpoint_of_another_task_is_refused(root, capsys):
    import torch
    load_train_script().main(argv(root))
    latest = session_dir(root) / 'model_latest.pth'
    ckpt = torch.load(latest, weights_only=True)
    assert 'MODE: Deraining' in ckpt['config']
    # The same run as if it had been a Denoising one, with a best PSNR no Deraining epoch would beat.
    ckpt['config'] = ckpt['config'].replace('MODE: Deraining', 'MODE: Denoising')
    ckpt['best_psnr'] = 99.0
    other = root / 'denoising_run.pth'
    torch.save(ckpt, other)
    before = latest.read_bytes()
    # Into a session of its own (one holding the first run's checkpoints is refused for that alone).
    err = one_line_exit(capsys, ['--resume', str(other)] + argv(root, 'OPTIM.NUM_EPOCHS', 2, 'MODEL.SESSION', 'next'),
                        2)
    assert f'{other} was trained for Denoising' in err and 'you asked for Deraining' in err
    assert 'MODEL.MODE Denoising' in err
    assert latest.read_bytes() == before and sorted(os.listdir(session_dir(root))) == ['model_latest.pth']
    assert not (session_dir(root).parent / 'next').exists()


def test_a_bad_allocator_setting_is_one_line(root, capsys, monkeypatch):
    import utils.allocator
    monkeypatch.setattr(utils.allocator, '_applied', None)  # as in a new process
    monkeypatch.setenv('MPRNET_ALLOCATOR', 'bogus')
    refused(capsys, argv(root), 'MPRNET_ALLOCATOR', "'bogus'")
    assert no_checkpoint(root)


# A session never holds two runs: a fresh run over any checkpoint, or --resume of a file from
# elsewhere into an occupied session, is refused with the files untouched.

def contents(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


@pytest.fixture
def finished(root):
    """A session after one epoch that validated: model_latest, model_best and model_epoch_1."""
    load_train_script().main(argv(root, 'TRAINING.VAL_AFTER_EVERY', 1))
    assert sorted(os.listdir(session_dir(root))) == ['model_best.pth', 'model_epoch_1.pth', 'model_latest.pth']
    return root


def test_a_fresh_run_over_a_session_without_latest_is_refused(finished, capsys):
    os.remove(session_dir(finished) / 'model_latest.pth')  # deleted to save space
    before = contents(session_dir(finished))
    err = one_line_exit(capsys, argv(finished, 'TRAINING.VAL_AFTER_EVERY', 1), 2)
    assert 'MODEL.SESSION MPRNet' in err and 'model_best.pth' in err and 'model_epoch_1.pth' in err
    assert 'nothing was overwritten' in err
    assert contents(session_dir(finished)) == before


@pytest.mark.slow
def test_resume_true_without_latest_names_the_checkpoints_there(finished, capsys):
    os.remove(session_dir(finished) / 'model_latest.pth')
    err = one_line_exit(capsys, argv(finished, 'TRAINING.RESUME', 'True'), 2)
    assert 'no ' in err and 'model_best.pth' in err and '--resume' in err


def test_resume_of_another_run_into_an_occupied_session_is_refused(finished, capsys):
    other = finished / 'elsewhere.pth'
    shutil.copy(session_dir(finished) / 'model_epoch_1.pth', other)
    before = contents(session_dir(finished))
    err = one_line_exit(capsys, ['--resume', str(other)] + argv(finished, 'OPTIM.NUM_EPOCHS', 2), 2)
    assert f'--resume {other}' in err and 'MODEL.SESSION' in err and 'model_latest.pth' in err
    assert contents(session_dir(finished)) == before


@pytest.mark.slow
def test_resume_of_the_sessions_own_checkpoint_and_into_an_empty_session_work(finished, capsys):
    own = session_dir(finished) / 'model_epoch_1.pth'
    load_train_script().main(['--resume', str(own)] + argv(finished, 'OPTIM.NUM_EPOCHS', 2))
    import torch
    assert torch.load(session_dir(finished) / 'model_latest.pth', weights_only=True)['epoch'] == 2
    load_train_script().main(['--resume', str(own)] + argv(finished, 'OPTIM.NUM_EPOCHS', 2, 'MODEL.SESSION', 'copy'))
    copy = session_dir(finished).parent / 'copy' / 'model_latest.pth'
    assert torch.load(copy, weights_only=True)['epoch'] == 2


def test_a_photo_folder_holding_the_held_out_splits_is_refused(tmp_path, capsys):
    # TRAINING.TRAIN_DIR set to prepare_photos.py's root instead of its train/: its subfolders are read.
    photos = tmp_path / 'photos'
    rng = np.random.default_rng(0)
    for split in ('train', 'val', 'test'):
        for i in range(2):
            write_image(str(photos / split / f'{split}{i}.png'), rng.random((32, 32, 3)).astype(np.float32))
    args = ['--device', 'cpu', 'MODEL.MODE', 'Denoising', *TINY_KEYS, 'OPTIM.BATCH_SIZE', '2', 'OPTIM.NUM_EPOCHS', '1',
            'TRAINING.TRAIN_PS', '16', 'TRAINING.VAL_PS', '16', 'TRAINING.NUM_WORKERS', '0',
            'TRAINING.SYNTHETIC', 'denoise', 'TRAINING.VAL_DIR', str(photos / 'val'),
            'TRAINING.SAVE_DIR', str(tmp_path / 'runs')]
    err = one_line_exit(capsys, args + ['TRAINING.TRAIN_DIR', str(photos)], 2)
    assert f'TRAINING.TRAIN_DIR {photos} holds photos kept out of training (test, val)' in err, err
    assert f'({photos / "train"})' in err
    assert not (tmp_path / 'runs' / 'Denoising' / 'models' / 'MPRNet').exists()
    load_train_script().main(args + ['TRAINING.TRAIN_DIR', str(photos / 'train')])  # the right folder trains
    assert (tmp_path / 'runs' / 'Denoising' / 'models' / 'MPRNet' / 'model_latest.pth').exists()


@pytest.mark.parametrize('key, value, words', [
    ('OPTIM.LR_MIN', -1e-4, 'at least 0'),                       # the rate would go below zero
    ('OPTIM.LR_INITIAL', '1e999', 'positive'),                   # YAML reads it as infinity
    ('OPTIM.EPS', 0.0, 'positive'),
    ('OPTIM.BETA1', 1.0, 'in [0, 1)'),
    ('OPTIM.EDGE_WEIGHT', -0.05, 'at least 0'),
    ('MODEL.N_FEAT', 2, "0 (the preset's) or from 4"),  # 2 // 4 = 0 attention channels
    ('MODEL.SCALE_UNETFEATS', -4, "0 (the preset's) or up to 512"),
    ('TRAINING.VAL_PER_EPOCH', 0, 'at least 1'),
    ('TRAINING.VAL_EPOCHS', '[3, -1]', 'epochs of at least 1'),
    ('TRAINING.SEED', -1, 'from 0 to 2**32 - 1'),
    ('TRAINING.RAIN_DENSITY', '[0.0, 0.01]', 'streaks per pixel, each in (0, 1]'),
    ('TRAINING.RAIN_INTENSITY', '[0.5, 1.5]', 'opacities, each in (0, 1]'),
])
def test_every_numeric_option_has_a_checked_range(root, capsys, key, value, words):
    err = refused(capsys, argv(root, key, value), f'{key} must be {words}', ', got ')
    assert len(err.splitlines()) == 1
    assert no_checkpoint(root)


@pytest.mark.parametrize('kind', ['folder', 'dangling link', 'binary junk'])
def test_a_lock_that_is_no_lock_is_one_line(root, capsys, kind):
    session_dir(root).mkdir(parents=True)
    lock = session_dir(root) / '.lock'
    if kind == 'folder':
        lock.mkdir()
    elif kind == 'dangling link':
        os.symlink(root / 'nowhere', lock)
    else:  # a regular file, as our locks are, holding what no run wrote: unreadable, so stale
        lock.write_bytes(b'\xff\xfe\x00\x81' * 64)
        load_train_script().main(argv(root))
        out = capsys.readouterr()
        assert f'replaced the stale lock {lock} (unreadable)' in out.out + out.err
        assert sorted(os.listdir(session_dir(root))) == ['model_latest.pth']
        return
    err = one_line_exit(capsys, argv(root), 2)
    what = 'a symbolic link' if kind == 'dangling link' else 'not a regular file (a folder?)'
    assert f'its lock {lock} is {what}, which no run writes; remove it' in err, err
    assert os.path.lexists(lock) and not [f for f in os.listdir(session_dir(root)) if f.endswith('.pth')]


def test_a_pair_whose_names_differ_only_in_accent_encoding_gets_a_hint(root, capsys):
    import unicodedata
    nfc, nfd = unicodedata.normalize('NFC', 'café'), unicodedata.normalize('NFD', 'café')
    assert nfc != nfd and len(nfd.encode()) == len(nfc.encode()) + 1  # e + combining accent
    write_set(root / 'train', [nfc])
    os.rename(root / 'train' / 'target' / f'{nfc}.png', root / 'train' / 'target' / f'{nfd}.png')
    refused(capsys, argv(root), 'inputs without a target', 'targets without an input',
            f'{nfc}: the same name in both folders with its accents encoded differently (Unicode NFC and NFD')


def test_a_pair_broken_beyond_its_header_is_one_line_from_a_loader_worker(root, capsys):
    (root / 'train' / 'input' / 'b.png').write_bytes(png_header_only(32, 32))  # header fine, pixels not
    err = one_line_exit(capsys, argv(root, 'TRAINING.NUM_WORKERS', 1), 2)
    assert f'cannot decode image {root / "train" / "input" / "b.png"}' in err, err
    assert 'DataLoader worker process 0' in err and 'Traceback' not in err


def test_a_pair_over_the_pixel_limit_is_found_by_the_start_up_scan(root, capsys, monkeypatch):
    from utils.data import data_check
    monkeypatch.setattr(data_check, 'DEFAULT_MAX_MEGAPIXELS', 0.001)  # 1000 pixels: the 32x32 pairs are over it
    err = refused(capsys, argv(root), 'is 32x32 (0.0 megapixels), more than the limit of 0.001',
                  'training reads images of up to 0.001 megapixels: shrink or cut it into tiles')
    assert '--max_megapixels' not in err


@pytest.mark.slow
def test_a_patch_larger_than_every_training_image_gets_a_note(root, capsys):
    # The 32x32 pairs cannot hold a 48-px patch: every patch is partly reflect-padding.
    load_train_script().main(argv(root, 'TRAINING.TRAIN_PS', 48))
    out = capsys.readouterr()
    assert ('note: TRAINING.TRAIN_PS 48 is larger than every training image (the largest, 32x32): every patch is '
            'partly reflect-padded') in out.out + out.err
    load_train_script().main(argv(root, 'MODEL.SESSION', 'fits'))  # 16-px patches fit: no note
    out = capsys.readouterr()
    assert 'larger than every training image' not in out.out + out.err


@pytest.mark.parametrize('extra, fragments', [
    (['TRAINING.RAIN_DENSITY', '[0.01, 0.001]'], ['TRAINING.RAIN_DENSITY must be [low, high] with low <= high']),
    (['TRAINING.RAIN_INTENSITY', '[0.5]'], ['TRAINING.RAIN_INTENSITY must be [low, high]']),
    # paired data, no synthetic rain: the option would be ignored
    (['TRAINING.RAIN_DENSITY', '[0.001, 0.02]'], ["it does nothing with TRAINING.SYNTHETIC ''"]),
])
def test_rain_ranges_are_checked(root, capsys, extra, fragments):
    refused(capsys, argv(root, *extra), *fragments)
    assert no_checkpoint(root)
