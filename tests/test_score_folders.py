"""python -m utils.evaluation.scoring on any two folders, against closed-form PSNR and SSIM of flat
images, and the Deblurring scripts on a dataset that is not one of the benchmarks."""
import importlib.util
import math
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from MPRNet import MPRNet
from utils.evaluation import scoring

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
C1 = (0.01 * 255) ** 2


def flat(path, value, size=16):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((size, size, 3), value, np.uint8))


def flat_ssim(a, b):
    """SSIM of two flat images (no variance): the luminance term alone, (2ab + C1) / (a^2 + b^2 + C1)."""
    return (2 * a * b + C1) / (a * a + b * b + C1)


@pytest.fixture
def folders(tmp_path):
    # Gray levels (restored, target): (110, 100) and (190, 200), both off by 10: MSE 100.
    for name, (restored, target) in {'a': (110, 100), 'b': (190, 200)}.items():
        flat(tmp_path / 'restored' / f'{name}.png', restored)
        flat(tmp_path / 'target' / f'{name}.png', target)
    return tmp_path


def scores(capsys, *argv):
    code = scoring.main([*map(str, argv), '--workers', '1'])
    out = capsys.readouterr()
    line = out.out.strip().splitlines()[-1] if out.out.strip() else ''
    return code, line, out.err


def test_rgb_scores_of_flat_images_by_hand(folders, capsys):
    code, line, _ = scores(capsys, '--restored', folders / 'restored', '--target', folders / 'target')
    assert code == 0
    psnr = 10 * math.log10(255 ** 2 / 100)  # 28.1308
    ssim = (flat_ssim(110, 100) + flat_ssim(190, 200)) / 2
    assert line == f'For restored dataset PSNR: {psnr:f} SSIM: {ssim:f}'


def test_y_channel_scores_of_flat_images_by_hand(folders, capsys):
    # Y = round(16 + 219 v / 255) for a gray v: 110 -> 110 (110.47), 100 -> 102 (101.88),
    # 190 -> 179 (179.18), 200 -> 188 (187.76). Differences 8 and 9.
    code, line, _ = scores(capsys, '--restored', folders / 'restored', '--target', folders / 'target', '--y_channel')
    assert code == 0
    psnr = (10 * math.log10(255 ** 2 / 64) + 10 * math.log10(255 ** 2 / 81)) / 2
    ssim = (flat_ssim(110, 102) + flat_ssim(179, 188)) / 2
    assert line == f'For restored dataset PSNR: {psnr:f} SSIM: {ssim:f}'


def test_missing_and_extra_files_are_named(folders, capsys):
    flat(folders / 'restored' / 'extra.png', 5)
    os.remove(folders / 'target' / 'b.png')
    code, _, err = scores(capsys, '--restored', folders / 'restored', '--target', folders / 'target')
    assert code == 2
    assert 'result(s) without target: b, extra' in err
    code, _, err = scores(capsys, '--restored', folders / 'restored', '--target', folders / 'nowhere')
    assert code == 2 and 'target folder not found' in err


@pytest.mark.slow
def test_python_dash_m_runs_it(folders):
    run = subprocess.run([sys.executable, '-m', 'utils.evaluation.scoring', '--restored', str(folders / 'restored'),
                          '--target', str(folders / 'target'), '--workers', '2'],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f'For restored dataset PSNR: {10 * math.log10(255 ** 2 / 100):f}')


def load_script(relpath):
    spec = importlib.util.spec_from_file_location('script_' + relpath.replace('/', '_')[:-3],
                                                  os.path.join(ROOT, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_deblurring_scripts_take_any_dataset_in_the_benchmark_layout(tmp_path, tiny_config, capsys,
                                                                     one_torch_thread):
    torch.manual_seed(0)
    weights = tmp_path / 'tiny.pth'
    model = MPRNet(**tiny_config)
    torch.save({'state_dict': model.state_dict(), 'model_config': model.config}, weights)
    for name, value in (('x', 90), ('y', 160)):
        flat(tmp_path / 'Datasets' / 'MyBlur' / 'test' / 'input' / f'{name}.png', value)
        flat(tmp_path / 'Datasets' / 'MyBlur' / 'test' / 'target' / f'{name}.png', value)
    written = load_script('Deblurring/test.py').main(
        ['--device', 'cpu', '--dataset', 'MyBlur', '--input_dir', str(tmp_path / 'Datasets'),
         '--result_dir', str(tmp_path / 'results'), '--weights', str(weights)])
    assert sorted(os.path.basename(p) for p in written) == ['x.png', 'y.png']
    got = load_script('Deblurring/evaluate_GOPRO_HIDE.py').main(
        ['--datasets', 'MyBlur', '--result_dir', str(tmp_path / 'results'), '--gt_dir', str(tmp_path / 'Datasets'),
         '--workers', '1'])
    # The same folders through the one evaluator give the same line.
    capsys.readouterr()
    assert scoring.main(['--restored', str(tmp_path / 'results' / 'MyBlur'), '--target',
                         str(tmp_path / 'Datasets' / 'MyBlur' / 'test' / 'target'), '--workers', '1']) == 0
    assert capsys.readouterr().out.strip() == f"For MyBlur dataset PSNR: {got['MyBlur'][0]:f} SSIM: {got['MyBlur'][1]:f}"
