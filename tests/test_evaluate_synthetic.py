"""scripts/evaluate_synthetic.py: photo selection and the learning-curve mode on tiny data."""
import importlib.util
import math
import os

import cv2
import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script():
    spec = importlib.util.spec_from_file_location('evaluate_synthetic',
                                                  os.path.join(ROOT, 'scripts', 'evaluate_synthetic.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_evenly_spaced_keeps_both_ends_and_the_order():
    es = load_script().evenly_spaced
    names = [f'p{i:02d}' for i in range(10)]
    assert es(names, 4) == ['p00', 'p03', 'p06', 'p09']  # positions 0, 3, 6, 9 of 0..9
    assert es(names, 1) == ['p00']
    assert es(names, None) == names and es(names, 20) == names


@pytest.mark.slow
def test_learning_curve_rows_for_each_checkpoint(tmp_path, tiny_model, tiny_config, capsys):
    es = load_script()
    rng = np.random.default_rng(0)
    for folder in ('test', 'test_source'):
        os.makedirs(tmp_path / folder)
        for i in range(2):
            # Mid-grey texture in [0.3, 0.7]: sigma-25 noise is almost never clipped there.
            img = rng.uniform(0.3, 0.7, (48, 48, 3))
            cv2.imwrite(str(tmp_path / folder / f'{i}.png'), (img * 255).round().astype(np.uint8))
    checkpoints = [str(tmp_path / 'start.pth')]
    # The weights a run started from record no CPU time (and maybe a later epoch of their own run).
    torch.save({'epoch': 24, 'state_dict': tiny_model.state_dict(), 'model_config': tiny_config,
                'task': 'Denoising'}, checkpoints[0])
    for epoch, hours in ((2, 0.5), (4, 2.0)):
        path = tmp_path / f'model_epoch_{epoch}.pth'
        torch.save({'epoch': epoch, 'state_dict': tiny_model.state_dict(), 'model_config': tiny_config,
                    'task': 'Denoising', 'cpu_seconds': hours * 3600}, path)
        checkpoints.append(str(path))
    out = tmp_path / 'curve.md'
    code = es.main(['--tasks', 'Denoising', '--photos', str(tmp_path / 'test'), str(tmp_path / 'test_source'),
                    '--checkpoints', checkpoints[2], checkpoints[1], checkpoints[0], '--out', str(out),
                    '--threads', '1'])
    assert code == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith('| ')]
    assert rows[0] == '| checkpoint | epoch | CPU-h | test PSNR | test_source PSNR |'
    # In training order whatever the order given, with the CPU-hours each checkpoint recorded.
    assert [r.split(' | ')[:3] for r in rows[2:]] == [['| start.pth', '24', '-'],
                                                      ['| model_epoch_2.pth', '2', '0.50'],
                                                      ['| model_epoch_4.pth', '4', '2.00']]
    # The degraded input: white noise of sigma 25 on the 0-255 scale is 20 log10(255 / 25) = 20.17 dB.
    input_psnr = [float(cell) for cell in rows[1].strip(' |').split(' | ')[3:]]
    assert all(abs(p - 20 * math.log10(255 / 25)) < 0.3 for p in input_psnr), input_psnr


def test_training_generator_only_as_a_diagnostic(tmp_path, capsys):
    es = load_script()
    assert es.main(['--generator', 'training', '--photos', str(tmp_path)]) == 2
    assert 'diagnostic' in capsys.readouterr().err


def photo_folders(tmp_path, *names):
    rng = np.random.default_rng(1)
    for folder in names:
        os.makedirs(tmp_path / folder)
        for i in range(2):
            cv2.imwrite(str(tmp_path / folder / f'{i}.png'), rng.integers(60, 200, (24, 24, 3), dtype=np.uint8))
    return [str(tmp_path / folder) for folder in names]


def checkpoint(tmp_path, tiny_model, tiny_config, task='Denoising', name='model_epoch_1.pth'):
    path = tmp_path / name
    torch.save({'epoch': 1, 'state_dict': tiny_model.state_dict(), 'model_config': tiny_config, 'task': task,
                'cpu_seconds': 36.0}, path)
    return str(path)


def one_line_error(capsys, code, *argv):
    assert load_script().main([str(a) for a in argv]) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and len(err.splitlines()) == 1, err
    return err


def test_out_follows_the_output_rules(tmp_path, tiny_model, tiny_config, capsys):
    photos = photo_folders(tmp_path, 'test')
    ckpt = checkpoint(tmp_path, tiny_model, tiny_config)
    before = open(ckpt, 'rb').read()
    common = ['--tasks', 'Denoising', '--photos', *photos, '--checkpoints', ckpt, '--threads', '1', '--max_side', 24]
    for extra in ((), ('--overwrite',)):  # the judged checkpoint is never replaced
        err = one_line_error(capsys, 2, *common, '--out', ckpt, *extra)
        assert f'--out {ckpt} is a judged checkpoint' in err
    assert open(ckpt, 'rb').read() == before
    err = one_line_error(capsys, 2, *common, '--out', os.path.join(photos[0], '0.png'), '--overwrite')
    assert 'is a judged photo' in err
    out = tmp_path / 'curve.md'
    out.write_text('an earlier report')
    assert 'exists; pass --overwrite' in one_line_error(capsys, 2, *common, '--out', out)
    assert out.read_text() == 'an earlier report'
    assert load_script().main([str(a) for a in common + ['--out', out, '--overwrite']]) == 0
    assert out.read_text().startswith('# Learning curve: Denoising')


def test_two_photo_folders_of_one_name_are_both_judged(tmp_path, tiny_model, tiny_config, capsys):
    photos = photo_folders(tmp_path, 'a/test', 'b/test')
    ckpt = checkpoint(tmp_path, tiny_model, tiny_config)
    out = tmp_path / 'curve.md'
    assert load_script().main(['--tasks', 'Denoising', '--photos', *photos, '--checkpoints', ckpt,
                               '--threads', '1', '--out', str(out)]) == 0
    header = out.read_text().splitlines()[4]
    assert header == f'| checkpoint | epoch | CPU-h | {photos[0]} PSNR | {photos[1]} PSNR |', header
    assert 'twice' in one_line_error(capsys, 2, '--tasks', 'Denoising', '--photos', photos[0], photos[0] + '/',
                                     '--checkpoints', ckpt)


def test_bad_options_and_inputs_are_one_line_before_any_work(tmp_path, tiny_model, tiny_config, capsys):
    photos = photo_folders(tmp_path, 'test')
    ckpt = checkpoint(tmp_path, tiny_model, tiny_config)
    curve = ['--tasks', 'Denoising', '--photos', *photos, '--checkpoints', ckpt]
    for option, value, low in (('--threads', -1, 1), ('--time_repeats', -1, 0), ('--max_side', 0, 8)):
        assert f'{option} must be at least {low}, got {value}' in one_line_error(capsys, 2, *curve, option, value)
    assert 'checkpoint not found' in one_line_error(capsys, 2, *curve[:-1], tmp_path / 'missing.pth')
    deraining = checkpoint(tmp_path, tiny_model, tiny_config, task='Deraining', name='derain.pth')
    err = one_line_error(capsys, 2, *curve[:-1], deraining)
    assert 'was trained for Deraining' in err and '--tasks Deraining' in err
    (tmp_path / 'test' / '1.png').write_bytes(b'not a png')
    assert '1.png' in one_line_error(capsys, 2, *curve)
