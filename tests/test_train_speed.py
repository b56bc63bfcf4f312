"""benchmarks/train_speed.py: rows for several patches and configs, switches that do not leak from
a config, and several processes timing at once; on a tiny model."""
import importlib

import pytest

from helpers import TINY


def load_benchmark():
    # Imported by its package name, so that --processes' spawned workers can import it too.
    return importlib.import_module('benchmarks.train_speed')


@pytest.fixture
def tiny_config(tmp_path):
    """A config like the compact one: the speed switches on, which the fp32 row must turn off."""
    path = tmp_path / 'tiny.yml'
    model = '\n'.join(f'  {key.upper()}: {value}' for key, value in TINY.items())
    path.write_text(f'MODEL:\n{model}\nOPTIM:\n  AMP: bf16\n  CHANNELS_LAST: True\n  BATCH_PATCHES: True\n'
                    'TRAINING:\n  TRAIN_PS: 24\n')
    return str(path)


def test_a_row_sets_its_switches_and_turns_the_others_off(tiny_config):
    bench = load_benchmark()
    fp32 = bench.task_config('Deraining', bench.SETTING_BY_NAME['fp32'], 4, 32, tiny_config)
    assert (fp32.OPTIM.AMP, fp32.OPTIM.CHANNELS_LAST, fp32.OPTIM.BATCH_PATCHES) == ('off', False, False)
    assert (fp32.MODEL.MODE, fp32.MODEL.N_FEAT) == ('Deraining', 8)
    assert (fp32.OPTIM.BATCH_SIZE, fp32.TRAINING.TRAIN_PS) == (4, 32)
    batched = bench.task_config('Deraining', bench.SETTING_BY_NAME['+ batch_patches'], 4, 32, tiny_config)
    assert (batched.OPTIM.AMP, batched.OPTIM.CHANNELS_LAST, batched.OPTIM.BATCH_PATCHES) == ('bf16', True, True)
    assert batched.OPTIM.FUSED_ADAM is False


@pytest.mark.parametrize('patch', [['0'], ['20'], ['16', '12']])
def test_patches_must_be_multiples_of_8(patch, capsys):
    with pytest.raises(SystemExit):
        load_benchmark().parse_args(['--patch', *patch])
    assert '--patch must be a positive multiple of 8' in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.benchmark
def test_one_row_per_patch_with_patches_per_cpu_second(tiny_config, tmp_path):
    rows = load_benchmark().main(['--device', 'cpu', '--config', tiny_config, '--tasks', 'Deraining', '--batch', '2',
                                  '--patch', '16', '24', '--settings', 'fp32', '--warmup', '1', '--steps', '1',
                                  '--repeats', '1', '--threads', '1', '--profile', '--out', str(tmp_path / 'r.md')])
    assert [(r.patch, r.setting.name, r.processes) for r in rows] == [(16, 'fp32', 1), (24, 'fp32', 1)]
    for r in rows:
        assert not r.error
        assert r.images_per_s == pytest.approx(2 / (r.step_ms / 1e3))  # batch over seconds per step
        assert 0 < r.images_per_cpu_s < float('inf')
        names, shares = zip(*r.profile)
        assert 'aten::convolution_backward' in names  # a training step runs backward
        assert list(shares) == sorted(shares, reverse=True) and 0 < sum(shares) <= 100 + 1e-6
    report = (tmp_path / 'r.md').read_text()
    assert 'images per CPU-s' in report and 'one process' in report and tiny_config in report
    assert "Where one step's CPU time goes" in report


@pytest.mark.slow
@pytest.mark.benchmark
def test_two_processes_time_the_same_rows_and_sum_their_images(tiny_config, tmp_path):
    rows = load_benchmark().main(['--device', 'cpu', '--config', tiny_config, '--tasks', 'Deraining', '--batch', '2',
                                  '--patch', '16', '--settings', 'fp32', '--warmup', '1', '--steps', '1',
                                  '--repeats', '1', '--processes', '2', '--out', str(tmp_path / 'r.md')])
    assert [(r.patch, r.processes) for r in rows] == [(16, 2)]
    assert rows[0].profile == []  # not asked for
    # images/s is the sum of batch / step time over the processes, step_ms the mean step time: by the
    # inequality of arithmetic and harmonic means the sum is at least 2 x batch / mean (equal when
    # both processes ran equally fast), whatever the machine's load.
    assert rows[0].images_per_s >= 2 * 2 / (rows[0].step_ms / 1e3) * (1 - 1e-9)
    assert '2 processes of 1 thread(s) at once' in (tmp_path / 'r.md').read_text()


@pytest.mark.slow
@pytest.mark.benchmark
def test_a_process_that_fails_ends_the_run_instead_of_leaving_the_others_waiting(tmp_path):
    bad = tmp_path / 'bad.yml'
    bad.write_text('MODEL:\n  NOT_A_KEY: 1\n')  # refused by load_config, which only the workers call
    with pytest.raises(SystemExit, match='a benchmark process ended with exit code 1'):
        load_benchmark().main(['--device', 'cpu', '--config', str(bad), '--tasks', 'Deraining', '--batch', '2',
                               '--patch', '16', '--settings', 'fp32', '--processes', '2'])
