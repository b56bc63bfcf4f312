"""The three training.yml files hold the published recipe; overrides and misspelt keys."""
import argparse
import os

import pytest

from utils.training.config import ConfigError, add_config_arguments, config_from_args, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def task_config(task, overrides=()):
    return load_config(os.path.join(ROOT, task, 'training.yml'), overrides)


# The published values (swz30/MPRNet <task>/training.yml and train.py), written out by hand.
PUBLISHED = {
    'Deblurring': dict(epochs=3000, train_ps=256, val_ps=256, val_every=20, weight_decay=0.0, extra=0,
                       loss='charbonnier_edge', jitter=True, mixup=0),
    'Deraining': dict(epochs=250, train_ps=256, val_ps=128, val_every=5, weight_decay=0.0, extra=0,
                      loss='charbonnier_edge', jitter=False, mixup=0),
    'Denoising': dict(epochs=80, train_ps=128, val_ps=256, val_every=None, weight_decay=1e-8, extra=40,
                      loss='charbonnier_clamped', jitter=False, mixup=6),
}


@pytest.mark.parametrize('task', sorted(PUBLISHED))
def test_training_yml_holds_the_published_recipe(task):
    want, cfg = PUBLISHED[task], task_config(task)
    assert cfg.MODEL.MODE == task and cfg.MODEL.SESSION == 'MPRNet'
    assert cfg.OPTIM.BATCH_SIZE == 16
    assert cfg.OPTIM.NUM_EPOCHS == want['epochs']
    assert cfg.OPTIM.LR_INITIAL == pytest.approx(2e-4) and cfg.OPTIM.LR_MIN == pytest.approx(1e-6)
    assert (cfg.OPTIM.BETA1, cfg.OPTIM.BETA2) == (0.9, 0.999) and cfg.OPTIM.EPS == pytest.approx(1e-8)
    assert cfg.OPTIM.WEIGHT_DECAY == pytest.approx(want['weight_decay'], abs=0)
    assert cfg.OPTIM.WARMUP_EPOCHS == 3 and cfg.OPTIM.COSINE_EXTRA_EPOCHS == want['extra']
    assert cfg.OPTIM.LOSS == want['loss'] and cfg.OPTIM.EDGE_WEIGHT == pytest.approx(0.05)
    assert cfg.TRAINING.TRAIN_PS == want['train_ps'] and cfg.TRAINING.VAL_PS == want['val_ps']
    assert cfg.TRAINING.SATURATION_JITTER is want['jitter']
    assert cfg.TRAINING.MIXUP_FROM_EPOCH == want['mixup']
    assert cfg.TRAINING.RESUME is False and cfg.TRAINING.SAVE_DIR == './checkpoints'
    assert cfg.TRAINING.TRAIN_DIR.startswith('./Datasets/')  # published: run from the task folder
    if want['val_every'] is not None:
        assert cfg.TRAINING.VAL_AFTER_EVERY == want['val_every']
        assert list(cfg.TRAINING.VAL_EPOCHS) == [] and cfg.TRAINING.VAL_PER_EPOCH == 1
    assert isinstance(cfg.OPTIM.LR_INITIAL, float)  # '2e-4' is a string to YAML; yacs must decode it


def validating_epochs(cfg):
    """Epochs that validate: listed in VAL_EPOCHS, or divisible by VAL_AFTER_EVERY when that is > 0."""
    every, listed = cfg.TRAINING.VAL_AFTER_EVERY, set(cfg.TRAINING.VAL_EPOCHS)
    return {e for e in range(1, cfg.OPTIM.NUM_EPOCHS + 1) if e in listed or (every > 0 and e % every == 0)}


def test_denoising_validates_like_the_published_train_py():
    cfg = task_config('Denoising')
    # Published: `epoch in [1, 25, 45] or epoch > 60`, about 3 times within each such epoch.
    assert validating_epochs(cfg) == {1, 25, 45} | set(range(61, 81))
    assert cfg.TRAINING.VAL_PER_EPOCH == 3
    # Cosine period of the published scheduler: NUM_EPOCHS - 3 + 40 = 117.
    assert cfg.OPTIM.NUM_EPOCHS - cfg.OPTIM.WARMUP_EPOCHS + cfg.OPTIM.COSINE_EXTRA_EPOCHS == 117


def test_deblurring_and_deraining_validation_epochs():
    assert validating_epochs(task_config('Deblurring')) == set(range(20, 3001, 20))
    assert validating_epochs(task_config('Deraining')) == set(range(5, 251, 5))


def test_overrides_apply_and_types_are_kept():
    cfg = task_config('Deraining', ['OPTIM.BATCH_SIZE', '8', 'TRAINING.VAL_PS', 'None',
                                    'OPTIM.LR_INITIAL', '1e-4', 'TRAINING.VAL_EPOCHS', '[2, 4]'])
    assert cfg.OPTIM.BATCH_SIZE == 8 and cfg.TRAINING.VAL_PS is None
    assert cfg.OPTIM.LR_INITIAL == pytest.approx(1e-4)
    assert list(cfg.TRAINING.VAL_EPOCHS) == [2, 4]
    assert cfg.OPTIM.NUM_EPOCHS == 250  # untouched keys keep the file's values
    assert cfg.is_frozen()


def test_command_line_config_and_overrides():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, default_config=os.path.join(ROOT, 'Deblurring', 'training.yml'))
    cfg = config_from_args(parser.parse_args(['OPTIM.NUM_EPOCHS', '5']))
    assert cfg.MODEL.MODE == 'Deblurring' and cfg.OPTIM.NUM_EPOCHS == 5
    args = parser.parse_args(['--config', os.path.join(ROOT, 'Denoising', 'training.yml'),
                              'TRAINING.MIXUP_FROM_EPOCH', '0'])
    cfg = config_from_args(args)
    assert cfg.MODEL.MODE == 'Denoising' and cfg.TRAINING.MIXUP_FROM_EPOCH == 0


def test_misspelt_key_in_a_file_is_named(tmp_path):
    path = tmp_path / 'typo.yml'
    path.write_text("MODEL:\n  MODE: 'Deraining'\nOPTIM:\n  BATCH_SZIE: 8\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert 'OPTIM.BATCH_SZIE' in str(err.value) and 'typo.yml' in str(err.value)


def test_published_verbose_key_is_accepted_and_ignored(tmp_path):
    path = tmp_path / 'published.yml'
    path.write_text("GPU: [0,1,2,3]\nVERBOSE: True\nMODEL:\n  MODE: 'Deraining'\n")
    cfg = load_config(str(path), ['VERBOSE', 'False'])
    assert cfg.MODEL.MODE == 'Deraining' and 'VERBOSE' not in cfg
    assert 'VERBOSE' not in cfg.dump()


def test_misspelt_key_on_the_command_line_is_named():
    with pytest.raises(ConfigError) as err:
        task_config('Deblurring', ['TRAINING.VAL_AFTER_EVRY', '3'])
    assert 'TRAINING.VAL_AFTER_EVRY' in str(err.value) and 'command line' in str(err.value)


def test_bad_override_values_and_pairs_fail():
    with pytest.raises(ConfigError, match='KEY VALUE'):
        task_config('Deblurring', ['OPTIM.BATCH_SIZE'])
    with pytest.raises(ConfigError, match='OPTIM.BATCH_SIZE'):
        task_config('Deblurring', ['OPTIM.BATCH_SIZE', "'sixteen'"])


def test_every_numeric_option_has_a_range_and_the_shipped_configs_are_within_it():
    from utils.training.config import OPTION_RANGES, check_option_ranges, get_default_config
    numeric = []
    for section, node in get_default_config().items():
        for key, value in (node.items() if hasattr(node, 'items') else [('', node)]):
            items = value if isinstance(value, list) else [value]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
                numeric.append(f'{section}.{key}' if key else section)
    # TRAINING.VAL_PS may be null and is checked with its own rule at the start of a run.
    assert sorted(numeric) == sorted([key for key, _, _ in OPTION_RANGES] + ['TRAINING.VAL_PS'])
    for path in ('Deblurring/training.yml', 'Deraining/training.yml', 'Denoising/training.yml',
                 'pretrained_models/synthetic/training.yml'):
        check_option_ranges(load_config(os.path.join(ROOT, path)))
