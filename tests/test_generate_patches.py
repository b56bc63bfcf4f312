"""Denoising/generate_patches_SIDD.py on a tiny fake SIDD-Medium tree."""
import importlib.util
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'Denoising', 'generate_patches_SIDD.py')
H, W, PS, N = 40, 50, 16, 5
GT_MARK, NOISY_MARK = 100, 200  # third channel: marks the image kind, plus the pair number


@pytest.fixture(scope='module')
def gen():
    spec = importlib.util.spec_from_file_location('generate_patches_SIDD', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def coded_image(pair, mark):
    """8-bit image whose pixel (r, c) is (4r, 4c, mark + pair): its content gives its position."""
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing='ij')
    return np.dstack([4 * rows, 4 * cols, np.full((H, W), mark + pair)]).astype(np.uint8)


@pytest.fixture
def sidd(tmp_path):
    """Two scenes in the SIDD-Medium layout; the second holds two pairs (010 and 011)."""
    src = tmp_path / 'Data'
    files = [('0001_001_S6_00100_00060_3200_L', '0001', '010'),
             ('0002_001_S6_00100_00020_3200_N', '0002', '010'),
             ('0002_001_S6_00100_00020_3200_N', '0002', '011')]
    for pair, (scene, number, shot) in enumerate(files):
        os.makedirs(src / scene, exist_ok=True)
        cv2.imwrite(str(src / scene / f'{number}_GT_SRGB_{shot}.PNG'), coded_image(pair, GT_MARK))
        cv2.imwrite(str(src / scene / f'{number}_NOISY_SRGB_{shot}.PNG'), coded_image(pair, NOISY_MARK))
    (src / 'README.txt').write_text('not a scene')
    return src


def run_main(gen, src, out, *extra):
    return gen.main(['--src_dir', str(src), '--tar_dir', str(out), '--patch_size', str(PS),
                     '--num_patches', str(N), '--num_workers', '1', *extra])


def read_folder(folder):
    return {name: cv2.imread(os.path.join(folder, name), cv2.IMREAD_UNCHANGED)
            for name in sorted(os.listdir(folder))}


def test_patches_pair_up_and_line_up(gen, sidd, tmp_path):
    out = tmp_path / 'patches'
    assert run_main(gen, sidd, out) == 0
    noisy, clean = read_folder(out / 'input'), read_folder(out / 'target')
    assert not os.path.exists(out / 'groundtruth')
    expected = {f'{pair}_{j}.png' for pair in (1, 2, 3) for j in range(1, N + 1)}
    assert set(noisy) == set(clean) == expected
    corners = set()
    for name, n in noisy.items():
        c = clean[name]
        assert n.shape == c.shape == (PS, PS, 3)
        pair = int(name.split('_')[0]) - 1
        assert np.all(c[:, :, 2] == GT_MARK + pair) and np.all(n[:, :, 2] == NOISY_MARK + pair)
        assert np.array_equal(n[:, :, :2], c[:, :, :2])  # the same position in both images
        top, left = c[0, 0, 0] // 4, c[0, 0, 1] // 4
        assert 0 <= top <= H - PS and 0 <= left <= W - PS
        assert np.array_equal(c[:, :, :2], coded_image(0, 0)[top:top + PS, left:left + PS, :2])
        corners.add((pair, top, left))
    assert len(corners) > 10  # random positions, not one crop repeated


def test_same_seed_same_patches_whatever_the_workers(gen, sidd, tmp_path):
    run_main(gen, sidd, tmp_path / 'a', '--seed', '5')
    # Three worker processes, started as the script runs from the command line.
    subprocess.run([sys.executable, SCRIPT, '--src_dir', str(sidd), '--tar_dir', str(tmp_path / 'b'),
                    '--patch_size', str(PS), '--num_patches', str(N), '--num_workers', '3', '--seed', '5'],
                   check=True, capture_output=True)
    run_main(gen, sidd, tmp_path / 'c', '--seed', '6')
    for side in ('input', 'target'):
        a, b, c = (read_folder(tmp_path / run / side) for run in 'abc')
        assert a.keys() == b.keys() == c.keys()
        assert all(np.array_equal(a[k], b[k]) for k in a)
        assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_crop_positions_cover_every_fitting_corner(gen):
    corners = gen.crop_positions(20, 18, 16, 2000, seed=0, pair_index=0)
    assert set(map(tuple, corners)) == {(r, c) for r in range(5) for c in range(3)}  # 0..H-ps inclusive
    assert np.all(gen.crop_positions(16, 16, 16, 10, seed=0, pair_index=3) == 0)
    assert not np.array_equal(gen.crop_positions(40, 50, 16, 10, 0, 0), gen.crop_positions(40, 50, 16, 10, 0, 1))


def test_existing_output_is_refused_without_overwrite(gen, sidd, tmp_path, capsys):
    out = tmp_path / 'patches'
    os.makedirs(out / 'input')
    (out / 'input' / 'keep.png').write_bytes(b'old')
    (out / 'notes.txt').write_text('mine')
    with pytest.raises(SystemExit) as err:
        run_main(gen, sidd, out)
    assert err.value.code == 2
    assert 'overwrite' in capsys.readouterr().err
    assert (out / 'input' / 'keep.png').read_bytes() == b'old'
    assert run_main(gen, sidd, out, '--overwrite') == 0
    assert not (out / 'input' / 'keep.png').exists()
    assert len(os.listdir(out / 'input')) == 3 * N
    assert (out / 'notes.txt').read_text() == 'mine'  # only input/ and target/ are replaced


def test_missing_gt_and_small_images_are_errors(gen, sidd, tmp_path, capsys):
    os.remove(sidd / '0002_001_S6_00100_00020_3200_N' / '0002_GT_SRGB_011.PNG')
    with pytest.raises(SystemExit):
        run_main(gen, sidd, tmp_path / 'x')
    assert '0002_NOISY_SRGB_011.PNG' in capsys.readouterr().err
    assert not (tmp_path / 'x').exists()  # nothing written before the input is checked
    job = (0, str(next(sidd.glob('*/0001_NOISY*'))), str(next(sidd.glob('*/0001_GT*'))), str(tmp_path / 'y'),
           64, 1, 0)  # a 64x64 patch does not fit in 50x40
    with pytest.raises(ValueError, match='smaller than the patch size'):
        gen.save_patches(job)


def test_a_negative_seed_is_refused_before_any_patch(gen, sidd, tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        run_main(gen, sidd, tmp_path / 'patches', '--seed', '-1')
    assert err.value.code == 2 and '--seed must be at least 0, got -1' in capsys.readouterr().err
    assert not (tmp_path / 'patches').exists()
