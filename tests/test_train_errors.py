"""train.py on common mistakes: one line naming the file or key and what to do, exit 2, before training.

Each case is one a user makes (the probe of issue 13); none may start an epoch
or leave a checkpoint behind.
"""
import importlib.util
import os

import numpy as np
import pytest

from utils.image_io import write_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['MODEL.N_FEAT', '8', 'MODEL.SCALE_UNETFEATS', '4', 'MODEL.SCALE_ORSNETFEATS', '4', 'MODEL.NUM_CAB', '1']

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
    return ['--device', 'cpu', 'MODEL.MODE', 'Deraining', *TINY, 'OPTIM.BATCH_SIZE', '2', 'OPTIM.NUM_EPOCHS', '1',
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
    from utils import engine
    from utils.config import load_config
    cfg = load_config(None, argv(root, 'TRAINING.SCAN_DATA', 'False')[2:])
    train, _ = engine.build_datasets(cfg)
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
