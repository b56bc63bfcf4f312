"""The benchmark test and evaluation scripts end to end, on tiny fake datasets in the published layouts.

The test scripts run a tiny MPRNet saved in our checkpoint format (with
``model_config``); the released format (``{'state_dict': {'module.' + k: v}}``)
is checked with the real Deraining preset on one small image.
"""
import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import scipy.io
import torch

from MPRNet import MPRNet
from utils.files.checkpoint import OFFICIAL_WEIGHTS_URL, save_atomic
from utils.padding import crop_to, pad_to_multiple

pytestmark = pytest.mark.usefixtures('one_torch_thread')

ROOT = Path(__file__).resolve().parents[1]


def load_script(relpath):
    """Import a task script (e.g. Deblurring/test.py) under a unique module name."""
    name = 'script_' + relpath.replace('/', '_').replace('.py', '')
    spec = importlib.util.spec_from_file_location(name, ROOT / relpath)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny(tmp_path, tiny_config):
    """(checkpoint path, model) of a tiny random MPRNet saved with its configuration."""
    torch.manual_seed(0)
    model = MPRNet(**tiny_config).eval()
    path = tmp_path / 'tiny.pth'
    save_atomic({'state_dict': model.state_dict(), 'model_config': model.config}, str(path))
    return str(path), model


def run_model(model, img):
    """Reference restoration of a float (H, W, 3) image: reflect-pad to 8, stage-3 output, crop, clamp."""
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].float()
    padded, size = pad_to_multiple(x, 8)
    with torch.no_grad():
        out = crop_to(model(padded)[0], size).clamp(0, 1)
    return out[0].permute(1, 2, 0).numpy()


def write_rgb(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def read_rgb(path):
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def random_rgb(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def cpu(*args):
    return ['--device', 'cpu', *args]


# ---------------------------------------------------------------- test scripts


@pytest.fixture
def gopro(tmp_path):
    """Datasets/GoPro/test/input with a multiple-of-8 image, an odd-sized one and a non-image file."""
    rng = np.random.default_rng(0)
    folder = tmp_path / 'Datasets' / 'GoPro' / 'test' / 'input'
    images = {'a': random_rgb(rng, 24, 16), 'b': random_rgb(rng, 21, 13), 'c': random_rgb(rng, 24, 16)}
    for name, img in images.items():
        write_rgb(folder / f'{name}.png', img)
    (folder / 'notes.txt').write_text('not an image')
    return tmp_path, images


def test_deblurring_test_restores_every_image_at_its_own_size(gopro, tiny):
    root, images = gopro
    weights, model = tiny
    script = load_script('Deblurring/test.py')
    written = script.main(cpu('--dataset', 'GoPro', '--input_dir', str(root / 'Datasets'),
                              '--result_dir', str(root / 'results'), '--weights', weights))
    out_dir = root / 'results' / 'GoPro'
    assert sorted(os.listdir(out_dir)) == ['a.png', 'b.png', 'c.png']
    assert sorted(written) == sorted(str(out_dir / f'{n}.png') for n in images)
    for name, img in images.items():
        out = read_rgb(out_dir / f'{name}.png')
        assert out.shape == img.shape  # 21x13 comes back 21x13
        # RGB in, RGB out: the file holds the model's output for this very image, rounded to 8 bits
        expected = np.round(run_model(model, img.astype(np.float32) / 255) * 255)
        assert np.abs(out.astype(float) - expected).max() <= 1


@pytest.mark.slow
def test_batching_same_size_images_gives_the_same_results(gopro, tiny):
    root, _ = gopro
    script = load_script('Deblurring/test.py')
    common = cpu('--dataset', 'GoPro', '--input_dir', str(root / 'Datasets'), '--weights', tiny[0])
    script.main(common + ['--result_dir', str(root / 'one')])
    script.main(common + ['--result_dir', str(root / 'four'), '--batch_size', '4'])  # a,b | c: sizes differ
    for name in 'abc':
        one = read_rgb(root / 'one' / 'GoPro' / f'{name}.png').astype(int)
        four = read_rgb(root / 'four' / 'GoPro' / f'{name}.png').astype(int)
        assert np.abs(one - four).max() <= 1


@pytest.mark.slow
def test_half_precision_and_fast_path_run_on_cpu(gopro, tiny):
    root, images = gopro
    script = load_script('Deblurring/test.py')
    common = cpu('--dataset', 'GoPro', '--input_dir', str(root / 'Datasets'), '--weights', tiny[0])
    script.main(common + ['--result_dir', str(root / 'fp32')])
    script.main(common + ['--result_dir', str(root / 'bf16'), '--precision', 'bf16', '--fast'])
    for name, img in images.items():
        exact = read_rgb(root / 'fp32' / 'GoPro' / f'{name}.png').astype(float)
        approx = read_rgb(root / 'bf16' / 'GoPro' / f'{name}.png').astype(float)
        assert approx.shape == img.shape
        assert np.abs(exact - approx).mean() < 4  # bf16 keeps ~3 significant digits


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the message shown without a GPU')
def test_cuda_without_a_gpu_is_an_error_not_a_silent_cpu_run(gopro, tiny):
    root, _ = gopro
    script = load_script('Deblurring/test.py')
    with pytest.raises(RuntimeError, match='no CUDA GPU'):
        script.main(['--device', 'cuda', '--dataset', 'GoPro', '--input_dir', str(root / 'Datasets'),
                     '--result_dir', str(root / 'res'), '--weights', tiny[0]])


@pytest.mark.slow
def test_existing_results_are_not_overwritten_without_the_flag(gopro, tiny):
    root, _ = gopro
    script = load_script('Deblurring/test.py')
    args = cpu('--dataset', 'GoPro', '--input_dir', str(root / 'Datasets'), '--result_dir', str(root / 'res'),
               '--weights', tiny[0])
    (root / 'res' / 'GoPro').mkdir(parents=True)
    (root / 'res' / 'GoPro' / 'b.png').write_bytes(b'keep me')
    with pytest.raises(FileExistsError, match=r'(?s)b\.png.*--overwrite'):
        script.main(args)
    assert (root / 'res' / 'GoPro' / 'b.png').read_bytes() == b'keep me'
    assert not (root / 'res' / 'GoPro' / 'a.png').exists()  # refused before any work
    script.main(args + ['--overwrite'])
    assert read_rgb(root / 'res' / 'GoPro' / 'b.png').shape == (21, 13, 3)


def test_missing_weights_name_the_path_and_the_official_source(gopro):
    root, _ = gopro
    script = load_script('Deblurring/test.py')
    missing = str(root / 'nowhere' / 'model_deblurring.pth')
    with pytest.raises(FileNotFoundError) as err:
        script.main(cpu('--dataset', 'GoPro', '--input_dir', str(root / 'Datasets'),
                        '--result_dir', str(root / 'res'), '--weights', missing))
    assert missing in str(err.value) and OFFICIAL_WEIGHTS_URL in str(err.value)


@pytest.mark.slow
def test_script_runs_from_its_folder_and_reports_missing_weights_in_one_line(tmp_path):
    """`python test.py` as the README says: imports resolve, default paths are relative, exit code 2
    (nothing was run: utils.inference.cli's convention)."""
    write_rgb(tmp_path / 'Datasets' / 'HIDE' / 'test' / 'input' / 'x.png', np.zeros((8, 8, 3), np.uint8))
    proc = subprocess.run([sys.executable, str(ROOT / 'Deblurring' / 'test.py'), '--dataset', 'HIDE',
                           '--device', 'cpu'], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 2
    assert 'error: weights not found: ./pretrained_models/model_deblurring.pth' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_deraining_skips_missing_sets_and_accepts_the_released_checkpoint_format(tmp_path, capsys):
    """Released format: {'state_dict': {'module.' + key: tensor}} of the Deraining preset, no model_config."""
    preset = MPRNet.for_task('Deraining').eval()
    released = tmp_path / 'model_deraining.pth'
    torch.save({'state_dict': {'module.' + k: v for k, v in preset.state_dict().items()}}, released)
    img = np.random.default_rng(3).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    write_rgb(tmp_path / 'test' / 'Rain100L' / 'input' / 'rain-001.png', img)
    script = load_script('Deraining/test.py')
    out = script.main(cpu('--datasets', 'Rain100L', 'Test100', '--input_dir', str(tmp_path / 'test'),
                          '--result_dir', str(tmp_path / 'results'), '--weights', str(released)))
    assert list(out) == ['Rain100L']
    assert 'skipping Test100' in capsys.readouterr().err
    result = read_rgb(tmp_path / 'results' / 'Rain100L' / 'rain-001.png')
    assert result.shape == (12, 20, 3)
    expected = np.round(run_model(preset, img.astype(np.float32) / 255) * 255)
    assert np.abs(result.astype(float) - expected).max() <= 1
    with pytest.raises(FileNotFoundError, match='none of the test sets'):
        script.main(cpu('--datasets', 'Test1200', '--input_dir', str(tmp_path / 'test'),
                        '--weights', str(released)))


def test_sidd_writes_idenoised_mat_and_pngs_in_block_order(tmp_path, tiny):
    weights, model = tiny
    noisy = np.random.default_rng(5).integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8)
    (tmp_path / 'sidd').mkdir()
    scipy.io.savemat(tmp_path / 'sidd' / 'ValidationNoisyBlocksSrgb.mat', {'ValidationNoisyBlocksSrgb': noisy})
    script = load_script('Denoising/test_SIDD.py')
    mat_path = script.main(cpu('--input_dir', str(tmp_path / 'sidd'), '--result_dir', str(tmp_path / 'res'),
                               '--weights', weights, '--save_images', '--batch_size', '4'))
    assert mat_path == str(tmp_path / 'res' / 'mat' / 'Idenoised.mat')
    denoised = scipy.io.loadmat(mat_path)['Idenoised']
    assert denoised.shape == (2, 3, 16, 16, 3) and denoised.dtype == np.float32  # MATLAB single
    assert denoised.min() >= 0 and denoised.max() <= 1
    # block (image 2, block 3) holds the restoration of that very block
    expected = run_model(model, noisy[1, 2].astype(np.float32) / 255)
    assert np.abs(denoised[1, 2] - expected).max() < 1e-5
    pngs = sorted(os.listdir(tmp_path / 'res' / 'png'))
    assert pngs == [f'{i:04d}_{k:02d}.png' for i in (1, 2) for k in (1, 2, 3)]
    png = read_rgb(tmp_path / 'res' / 'png' / '0002_03.png')
    assert np.abs(png.astype(float) - np.round(denoised[1, 2] * 255)).max() == 0
    with pytest.raises(FileExistsError):
        script.main(cpu('--input_dir', str(tmp_path / 'sidd'), '--result_dir', str(tmp_path / 'res'),
                        '--weights', weights))


def make_fake_dnd(folder, images, boxes):
    """info.mat and images_srgb/<nnnn>.mat as MATLAB v7.3 (HDF5) writes them: arrays transposed,
    info.boundingboxes a 1 x n array of references to 4 x boxes tables (1-based, inclusive)."""
    (folder / 'images_srgb').mkdir(parents=True)
    with h5py.File(folder / 'info.mat', 'w') as f:
        refs = [f.create_dataset(f'#refs#/b{i}', data=np.asarray(b, np.float64).T).ref
                for i, b in enumerate(boxes)]
        f.create_group('info').create_dataset('boundingboxes', data=np.array([refs], dtype=h5py.ref_dtype))
    for i, img in enumerate(images):
        with h5py.File(folder / 'images_srgb' / f'{i + 1:04d}.mat', 'w') as f:
            f.create_dataset('InoisySRGB', data=img.T)


def test_dnd_writes_the_bundled_submission(tmp_path, tiny):
    weights, model = tiny
    rng = np.random.default_rng(7)
    images = [rng.random((40, 48, 3)).astype(np.float32) for _ in range(2)]
    # [top, left, bottom, right], 1-based inclusive: 16x16, 16x16, 12x20 crops
    boxes = [[[1, 1, 16, 16], [5, 9, 20, 24], [29, 29, 40, 48]],
             [[25, 33, 40, 48], [1, 1, 16, 16], [3, 4, 14, 23]]]
    make_fake_dnd(tmp_path / 'DND', images, boxes)
    script = load_script('Denoising/test_DND.py')
    outputs = script.main(cpu('--input_dir', str(tmp_path / 'DND'), '--result_dir', str(tmp_path / 'res'),
                              '--weights', weights, '--batch_size', '2', '--save_crops', '--save_images'))
    assert outputs == [str(tmp_path / 'res' / 'mat' / f'{i:04d}.mat') for i in (1, 2)]
    sub = scipy.io.loadmat(outputs[0])
    cell = sub['Idenoised']
    assert cell.dtype == object and cell.shape == (1, 3)  # a MATLAB 1 x 20 cell in the real benchmark
    assert [c.shape for c in cell[0]] == [(16, 16, 3), (16, 16, 3), (12, 20, 3)]
    assert all(c.dtype == np.float32 for c in cell[0])
    assert sub['israw'].item() == 0 and sub['eval_version'].item() == '1.0'
    assert scipy.io.whosmat(outputs[1]) == [('Idenoised', (1, 3), 'cell'), ('israw', (1, 1), 'logical'),
                                            ('eval_version', (1,), 'char')]
    # box 2 of image 1 = rows 5..20, columns 9..24 (1-based) of the image as MATLAB sees it
    expected = run_model(model, images[0][4:20, 8:24])
    assert np.abs(cell[0, 1] - expected).max() < 1e-5
    crop = scipy.io.loadmat(tmp_path / 'res' / 'crops' / '0002_03.mat')['Idenoised_crop']
    assert crop.shape == (12, 20, 3)
    assert np.abs(crop - run_model(model, images[1][2:14, 3:23])).max() < 1e-5
    assert read_rgb(tmp_path / 'res' / 'png' / '0002_03.png').shape == (12, 20, 3)


def test_dnd_box_outside_the_image_is_named(tmp_path, tiny):
    make_fake_dnd(tmp_path / 'DND', [np.zeros((16, 16, 3), np.float32)], [[[1, 1, 16, 17]]])
    script = load_script('Denoising/test_DND.py')
    with pytest.raises(ValueError, match=r'0001\.mat: box 1 .* outside the 16x16 image'):
        script.main(cpu('--input_dir', str(tmp_path / 'DND'), '--result_dir', str(tmp_path / 'res'),
                        '--weights', tiny[0]))


# ---------------------------------------------------------------- evaluation scripts


def constant(h, w, rgb):
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = rgb
    return img


def test_evaluate_gopro_hide_prints_matlab_numbers(tmp_path, capsys):
    # two constant pairs: PSNR = 20 log10(255 / d); SSIM = (2ab + C1) / (a^2 + b^2 + C1) (no variance)
    pairs = {'a': (100, 104), 'b': (50, 52)}
    for name, (res, tar) in pairs.items():
        write_rgb(tmp_path / 'results' / 'GoPro' / f'{name}.png', constant(12, 14, res))
        write_rgb(tmp_path / 'Datasets' / 'GoPro' / 'test' / 'target' / f'{name}.png', constant(12, 14, tar))
    script = load_script('Deblurring/evaluate_GOPRO_HIDE.py')
    scores = script.main(['--result_dir', str(tmp_path / 'results'), '--gt_dir', str(tmp_path / 'Datasets'),
                          '--workers', '2'])
    c1 = 2.55 ** 2
    psnr = (20 * math.log10(255 / 4) + 20 * math.log10(255 / 2)) / 2
    ssim = sum((2 * a * b + c1) / (a * a + b * b + c1) for a, b in pairs.values()) / 2
    assert list(scores) == ['GoPro']  # HIDE has no results: reported, skipped
    assert scores['GoPro'] == pytest.approx((psnr, ssim), abs=1e-10)
    captured = capsys.readouterr()
    assert f'For GoPro dataset PSNR: {psnr:f} SSIM: {ssim:f}' in captured.out
    assert 'skipping HIDE' in captured.err


def test_evaluation_pairs_by_name_and_lists_unmatched_names(tmp_path):
    rng = np.random.default_rng(2)
    for name in ('x1', 'x2', 'only_result'):
        write_rgb(tmp_path / 'results' / 'Rain100L' / f'{name}.png', random_rgb(rng, 12, 12))
    for name in ('x1', 'x2', 'only_target'):
        write_rgb(tmp_path / 'test' / 'Rain100L' / 'target' / f'{name}.png', random_rgb(rng, 12, 12))
    script = load_script('Deraining/evaluate_PSNR_SSIM.py')
    args = ['--datasets', 'Rain100L', '--result_dir', str(tmp_path / 'results'),
            '--gt_dir', str(tmp_path / 'test'), '--workers', '1']
    with pytest.raises(ValueError, match=r'(?s)result\(s\) without target: only_result.*'
                                         r'target\(s\) without result: only_target'):
        script.main(args)


def test_pairing_is_by_stem_across_extensions(tmp_path):
    from utils.evaluation.scoring import pair_by_name
    rng = np.random.default_rng(6)
    write_rgb(tmp_path / 'res' / 'b.png', random_rgb(rng, 8, 8))
    write_rgb(tmp_path / 'res' / 'a.png', random_rgb(rng, 8, 8))
    write_rgb(tmp_path / 'gt' / 'a.jpg', random_rgb(rng, 8, 8))
    write_rgb(tmp_path / 'gt' / 'b.png', random_rgb(rng, 8, 8))
    assert pair_by_name(str(tmp_path / 'res'), str(tmp_path / 'gt')) == [
        (str(tmp_path / 'res' / 'a.png'), str(tmp_path / 'gt' / 'a.jpg')),
        (str(tmp_path / 'res' / 'b.png'), str(tmp_path / 'gt' / 'b.png'))]


def test_lossy_results_against_lossless_targets_are_warned_about(tmp_path, capsys):
    from utils.evaluation.scoring import pair_by_name
    rng = np.random.default_rng(7)
    write_rgb(tmp_path / 'res' / 'a.jpg', random_rgb(rng, 8, 8))
    write_rgb(tmp_path / 'gt' / 'a.png', random_rgb(rng, 8, 8))
    pair_by_name(str(tmp_path / 'res'), str(tmp_path / 'gt'))
    err = capsys.readouterr().err
    assert 'JPEG (lossy)' in err and 'a.jpg' in err
    write_rgb(tmp_path / 'res2' / 'a.png', random_rgb(rng, 8, 8))
    pair_by_name(str(tmp_path / 'res2'), str(tmp_path / 'gt'))
    assert 'lossy' not in capsys.readouterr().err


def test_evaluate_deraining_on_y_channel(tmp_path, capsys):
    write_rgb(tmp_path / 'results' / 'Rain100H' / '2.png', constant(16, 16, (120, 60, 30)))
    write_rgb(tmp_path / 'test' / 'Rain100H' / 'target' / '2.png', constant(16, 16, (124, 60, 30)))
    write_rgb(tmp_path / 'results' / 'Rain100H' / '1.png', constant(16, 16, (0, 0, 0)))
    write_rgb(tmp_path / 'test' / 'Rain100H' / 'target' / '1.png', constant(16, 16, (0, 0, 0)))
    script = load_script('Deraining/evaluate_PSNR_SSIM.py')
    scores = script.main(['--datasets', 'Rain100H', '--result_dir', str(tmp_path / 'results'),
                          '--gt_dir', str(tmp_path / 'test'), '--workers', '1'])
    # image 1 identical: PSNR inf (as MATLAB), SSIM 1; image 2: Y 80 vs 81 (see test_metrics)
    c1 = 2.55 ** 2
    assert scores['Rain100H'][0] == math.inf
    assert scores['Rain100H'][1] == pytest.approx((1 + (2 * 80 * 81 + c1) / (80 ** 2 + 81 ** 2 + c1)) / 2,
                                                  abs=1e-10)
    out = capsys.readouterr().out
    assert 'For Rain100H dataset PSNR: inf SSIM: ' in out and 'For all datasets PSNR: inf' in out


def test_evaluate_sidd_on_single_blocks(tmp_path, capsys):
    denoised = np.full((2, 2, 16, 16, 3), 0.5, np.float32)
    gt = np.full((2, 2, 16, 16, 3), 128, np.uint8)
    (tmp_path / 'res' / 'mat').mkdir(parents=True)
    scipy.io.savemat(tmp_path / 'res' / 'mat' / 'Idenoised.mat', {'Idenoised': denoised})
    scipy.io.savemat(tmp_path / 'ValidationGtBlocksSrgb.mat', {'ValidationGtBlocksSrgb': gt})
    script = load_script('Denoising/evaluate_SIDD.py')
    psnr, ssim = script.main(['--result_dir', str(tmp_path / 'res'), '--gt_dir', str(tmp_path),
                              '--workers', '1'])
    t = float(np.float32(128) / np.float32(255))  # im2single(uint8(128)), in single precision
    d = t - 0.5
    assert psnr == pytest.approx(10 * math.log10(1 / d ** 2), abs=1e-6)  # L = 1 for single
    c1 = 0.01 ** 2
    assert ssim == pytest.approx((2 * 0.5 * t + c1) / (0.25 + t * t + c1), abs=1e-10)
    assert f'For SIDD dataset PSNR: {psnr:f} SSIM: {ssim:f}' in capsys.readouterr().out
    with h5py.File(tmp_path / 'ValidationGtBlocksSrgb.mat', 'w') as f:  # a v7.3 (HDF5) copy: axes reversed
        f.create_dataset('ValidationGtBlocksSrgb', data=gt.T)
    assert script.main(['--result_dir', str(tmp_path / 'res'), '--gt_dir', str(tmp_path), '--workers', '1']) == \
        pytest.approx((psnr, ssim), abs=1e-12)
    scipy.io.savemat(tmp_path / 'ValidationGtBlocksSrgb.mat', {'ValidationGtBlocksSrgb': gt[:1]})
    with pytest.raises(ValueError, match='expected the same'):
        script.main(['--result_dir', str(tmp_path / 'res'), '--gt_dir', str(tmp_path), '--workers', '1'])


def test_evaluate_realblur_aligns_before_scoring(tmp_path, capsys):
    rng = np.random.default_rng(4)
    noise = rng.random((8, 8, 3)).astype(np.float32)
    target = np.round(np.clip(cv2.resize(noise, (64, 64), interpolation=cv2.INTER_CUBIC), 0, 1) * 255)
    target = target.astype(np.uint8)
    shifted = cv2.warpAffine(target, np.float32([[1, 0, 1], [0, 1, 0]]), (64, 64), borderMode=cv2.BORDER_REFLECT)
    write_rgb(tmp_path / 'Datasets' / 'RealBlur_J' / 'test' / 'target' / 'scene1.png', target)
    write_rgb(tmp_path / 'results' / 'RealBlur_J' / 'scene1.png', shifted)
    script = load_script('Deblurring/evaluate_RealBlur.py')
    scores = script.main(['--datasets', 'RealBlur_J', '--result_dir', str(tmp_path / 'results'),
                          '--gt_dir', str(tmp_path / 'Datasets'), '--workers', '1'])
    unaligned = 10 * math.log10(1 / np.mean((shifted / 255.0 - target / 255.0) ** 2))
    psnr, ssim = scores['RealBlur_J']
    assert psnr > unaligned + 10 and ssim > 0.98
    assert 'For RealBlur_J dataset PSNR:' in capsys.readouterr().out


# ---------------------------------------------------------------------- failed writes and damaged inputs

def make_sidd(folder):
    noisy = np.random.default_rng(3).integers(0, 256, (1, 2, 16, 16, 3), dtype=np.uint8)
    folder.mkdir()
    scipy.io.savemat(folder / 'ValidationNoisyBlocksSrgb.mat', {'ValidationNoisyBlocksSrgb': noisy})


def disk_full_savemat(real):
    """scipy.io.savemat that writes part of the file, then fails as a full disk does."""
    import errno

    def savemat(target, variables, *args, **kwargs):
        target.write(b'MATLAB 5.0 MAT-file, half of it')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return savemat


def test_sidd_overwrite_that_fails_keeps_the_previous_result(tmp_path, tiny, capsys, monkeypatch):
    from utils.inference.cli import run_main
    make_sidd(tmp_path / 'sidd')
    script = load_script('Denoising/test_SIDD.py')
    args = cpu('--input_dir', str(tmp_path / 'sidd'), '--result_dir', str(tmp_path / 'res'), '--weights', tiny[0])
    mat_path = tmp_path / 'res' / 'mat' / 'Idenoised.mat'
    assert run_main(script.main, args) == 0
    before = mat_path.read_bytes()
    monkeypatch.setattr(script.scipy.io, 'savemat', disk_full_savemat(scipy.io.savemat))
    assert run_main(script.main, args + ['--overwrite']) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f'error: [Errno 28] cannot write {mat_path}: No space left on device'), err
    assert mat_path.read_bytes() == before and os.listdir(mat_path.parent) == ['Idenoised.mat']


@pytest.mark.slow
def test_dnd_overwrite_that_fails_keeps_the_previous_submission(tmp_path, tiny, monkeypatch):
    from utils.inference.cli import run_main
    make_fake_dnd(tmp_path / 'DND', [np.full((16, 16, 3), 0.5, np.float32)], [[[1, 1, 16, 16]]])
    script = load_script('Denoising/test_DND.py')
    args = cpu('--input_dir', str(tmp_path / 'DND'), '--result_dir', str(tmp_path / 'res'), '--weights', tiny[0])
    assert run_main(script.main, args) == 0
    submission = tmp_path / 'res' / 'mat' / '0001.mat'
    before = submission.read_bytes()
    monkeypatch.setattr(script.scipy.io, 'savemat', disk_full_savemat(scipy.io.savemat))
    assert run_main(script.main, args + ['--overwrite']) == 2
    assert submission.read_bytes() == before and os.listdir(submission.parent) == ['0001.mat']


@pytest.mark.parametrize('damage', ['empty', 'text', 'truncated'])
def test_a_damaged_sidd_file_is_one_line_naming_it(tmp_path, tiny, capsys, damage):
    from utils.inference.cli import run_main
    make_sidd(tmp_path / 'sidd')
    path = tmp_path / 'sidd' / 'ValidationNoisyBlocksSrgb.mat'
    whole = path.read_bytes()
    path.write_bytes({'empty': b'', 'text': b'ValidationNoisyBlocksSrgb = zeros(40, 32)\n',
                      'truncated': whole[:len(whole) // 2]}[damage])
    script = load_script('Denoising/test_SIDD.py')
    code = run_main(script.main, cpu('--input_dir', str(tmp_path / 'sidd'), '--result_dir', str(tmp_path / 'res'),
                                     '--weights', tiny[0]))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and 'Traceback' not in err, err
    assert err.startswith(f'error: cannot read {path} as a .mat file'), err
    assert not (tmp_path / 'res' / 'mat').exists()


def test_sidd_advises_only_options_it_has(tmp_path, tiny, capsys):
    # One Idenoised.mat is made from every block: results cannot be skipped one by one.
    from utils.inference.cli import run_main
    make_sidd(tmp_path / 'sidd')
    script = load_script('Denoising/test_SIDD.py')
    args = cpu('--input_dir', str(tmp_path / 'sidd'), '--result_dir', str(tmp_path / 'res'), '--weights', tiny[0])
    assert run_main(script.main, args) == 0
    capsys.readouterr()
    assert run_main(script.main, args) == 2
    err = capsys.readouterr().err
    assert 'Idenoised.mat' in err and '--overwrite' in err and '--skip_existing' not in err, err
    with pytest.raises(SystemExit) as stopped:
        script.main(args + ['--skip_existing'])
    assert stopped.value.code == 2 and 'unrecognized arguments: --skip_existing' in capsys.readouterr().err


@pytest.mark.parametrize('script_path', ['Denoising/evaluate_SIDD.py', 'Deraining/evaluate_PSNR_SSIM.py',
                                         'utils/evaluation/scoring.py'])
def test_workers_below_one_are_refused_not_taken_as_one(script_path, capsys):
    script = load_script(script_path)
    extra = ['--restored', 'r', '--target', 't'] if script_path.startswith('utils') else []
    with pytest.raises(SystemExit) as stopped:
        script.main(['--workers', '-1', *extra])
    assert stopped.value.code == 2 and 'argument --workers: must be at least 1, got -1' in capsys.readouterr().err
