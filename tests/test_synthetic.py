"""Synthetic pairs from clean photos (utils/data/synthetic.py) and the photo preparation script."""
import importlib.util
import os
import random

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from utils.data import photos
from utils.data.synthetic import get_synthetic_training_data, get_synthetic_validation_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PS = 16


def load_prepare_photos():
    spec = importlib.util.spec_from_file_location('prepare_photos', os.path.join(ROOT, 'scripts', 'prepare_photos.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_rgb(path, rgb_uint8):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb_uint8[:, :, ::-1]))


def coordinate_photo(h, w):
    """uint8 (h, w, 3) whose red channel is the row and green the column of each pixel,
    so any crop says where it came from; blue is a texture."""
    rows, cols = np.mgrid[0:h, 0:w]
    return np.stack([rows, cols, (rows * 7 + cols * 13) % 256], axis=2).astype(np.uint8)


def dihedral(a):
    """The 8 flips/rotations of (H, W, C), written with numpy independently of flip_rotate."""
    out = []
    for flipped in (a, a[::-1]):
        out.extend(np.rot90(flipped, k, axes=(0, 1)) for k in range(4))
    return out


def to_hwc(t):
    return t.permute(1, 2, 0).numpy()


@pytest.fixture
def photo_dir(tmp_path):
    """A big photo at the top, a small one (smaller than the patch) in a subfolder, a text file."""
    folder = tmp_path / 'photos'
    write_rgb(folder / 'big.png', coordinate_photo(40, 56))
    write_rgb(folder / 'sub' / 'small.png', coordinate_photo(10, 12))
    (folder / 'notes.txt').write_text('not an image')
    return str(folder)


@pytest.fixture
def texture_dir(tmp_path):
    folder = tmp_path / 'texture'
    write_rgb(folder / 'noise.png', np.random.default_rng(0).integers(0, 200, (48, 48, 3), dtype=np.uint8))
    return str(folder)


# Rain needs a patch of realistic size: at the lightest drawn density a 16-px patch can miss every streak.
@pytest.mark.parametrize('kind, ps', [('deblur', PS), ('derain', 64), ('denoise', PS)])
def test_training_pairs_shape_range_and_degraded(photo_dir, kind, ps):
    data = get_synthetic_training_data(photo_dir, kind, ps, seed=1)
    assert len(data) == 2  # both photos found, the subfolder included, the text file not
    for index in range(len(data)):
        target, inp, name = data[index]
        for t in (target, inp):
            assert t.shape == (3, ps, ps) and t.dtype == torch.float32
            assert 0.0 <= t.min() and t.max() <= 1.0
        assert not torch.equal(target, inp), f'{kind}: the input was not degraded'
        assert name in ('big', 'sub__small')


def test_training_target_is_a_clean_crop_of_the_photo(photo_dir):
    data = get_synthetic_training_data(photo_dir, 'denoise', PS, seed=1)
    photo = coordinate_photo(40, 56).astype(np.float32) / 255
    assert data.photo_name(0) == 'big'
    for _ in range(10):
        target = to_hwc(data[0][0])
        top, left = round(target[..., 0].min() * 255), round(target[..., 1].min() * 255)
        assert 0 <= top <= 40 - PS and 0 <= left <= 56 - PS
        crop = photo[top:top + PS, left:left + PS]
        assert any(np.array_equal(target, view) for view in dihedral(crop))


def test_small_photo_is_reflect_padded(photo_dir):
    data = get_synthetic_training_data(photo_dir, 'denoise', PS, seed=1)
    small = coordinate_photo(10, 12).astype(np.float32) / 255
    # Padded at the bottom and right to 16x16: the only crop there is.
    padded = np.pad(small, ((0, 6), (0, 4), (0, 0)), mode='reflect')
    target = to_hwc(data[1][0])
    assert any(np.array_equal(target, view) for view in dihedral(padded))


def test_degraded_patch_is_aligned_with_its_target(texture_dir, monkeypatch):
    """Screen-blended rain only brightens, so on a random texture input >= target pixel by pixel
    holds only if both come from the same place and got the same flip/rotation."""
    import utils.data.synthetic
    from utils.data.degradations import degrade
    monkeypatch.setattr(utils.data.synthetic, 'degrade', lambda img, kind, rng: degrade(img, kind, rng, blend='screen'))
    data = get_synthetic_training_data(texture_dir, 'derain', 32, seed=3)
    brightened = 0
    for _ in range(6):
        target, inp, _ = data[0]
        assert (inp >= target - 1e-6).all()
        brightened += int((inp > target + 0.05).sum())
    assert brightened > 0


def test_training_draws_differ_and_follow_pythons_random(photo_dir):
    data = get_synthetic_training_data(photo_dir, 'deblur', PS, seed=1)
    random.seed(5)
    first = data[0]
    second = data[0]
    assert not torch.equal(first[1], second[1])
    random.seed(5)
    again = data[0]
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


def test_decoded_photos_are_cached_and_never_changed(photo_dir, monkeypatch):
    import utils.data.synthetic as synthetic
    data = get_synthetic_training_data(photo_dir, 'deblur', PS, seed=1)
    reads = []
    real_read = synthetic.read_image
    monkeypatch.setattr(synthetic, 'read_image', lambda path: reads.append(path) or real_read(path))
    for i in range(3 * len(data.photos)):
        data[i % len(data.photos)]
    assert len(reads) == len(data.photos)  # each photo decoded once
    for index, photo in data._cache.items():
        assert np.array_equal(photo, real_read(data.photos[index])[0])  # degrading never wrote into it
    # Over the memory budget, photos are read from disk every time instead.
    monkeypatch.setattr(synthetic, 'PHOTO_CACHE_BYTES', 0)
    uncached = get_synthetic_training_data(photo_dir, 'deblur', PS, seed=1)
    reads.clear()
    uncached[0], uncached[0]
    assert len(reads) == 2 and not uncached._cache


def test_crops_per_photo_repeats_the_list(photo_dir):
    data = get_synthetic_training_data(photo_dir, 'denoise', PS, seed=1, crops_per_photo=3)
    assert len(data) == 6
    assert [data[i][2] for i in (0, 2, 3, 5)] == ['big', 'big', 'sub__small', 'sub__small']


def test_validation_is_the_centre_crop_and_fixed(photo_dir):
    first = get_synthetic_validation_data(photo_dir, 'derain', PS, seed=1)
    second = get_synthetic_validation_data(photo_dir, 'derain', PS, seed=1)
    photo = coordinate_photo(40, 56).astype(np.float32) / 255
    target, inp, name = first[0]
    assert name == 'big'
    # Centre of 40x56 for a 16x16 crop: rows (40-16)/2 = 12.., columns (56-16)/2 = 20..
    np.testing.assert_array_equal(to_hwc(target), photo[12:28, 20:36])
    for index in range(len(first)):
        a, b, c = first[index], first[index], second[index]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])
    noisy = [get_synthetic_validation_data(photo_dir, 'denoise', PS, seed=s)[0][1] for s in (1, 1, 2)]
    assert torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0], noisy[2])


def test_validation_whole_photos(photo_dir):
    data = get_synthetic_validation_data(photo_dir, 'denoise', None, seed=1)
    target, inp, _ = data[0]
    assert target.shape == inp.shape == (3, 40, 56)
    np.testing.assert_array_equal(to_hwc(target), coordinate_photo(40, 56).astype(np.float32) / 255)
    assert data[1][0].shape == (3, 10, 12)


def test_batches_through_a_dataloader(photo_dir):
    loader = DataLoader(get_synthetic_training_data(photo_dir, 'denoise', PS, seed=1), batch_size=2)
    target, inp, names = next(iter(loader))
    assert target.shape == inp.shape == (2, 3, PS, PS)
    assert list(names) == ['big', 'sub__small']


def test_empty_or_missing_folder_and_bad_options(tmp_path, photo_dir):
    empty = tmp_path / 'empty'
    (empty / 'nested').mkdir(parents=True)
    (empty / 'readme.txt').write_text('no photos here')
    with pytest.raises(ValueError, match='no photos in .*empty.*prepare_photos'):
        get_synthetic_training_data(str(empty), 'deblur', PS, seed=1)
    with pytest.raises(FileNotFoundError, match='missing'):
        get_synthetic_validation_data(str(tmp_path / 'missing'), 'deblur', PS, seed=1)
    with pytest.raises(ValueError, match="unknown synthetic degradation 'sharpen'"):
        get_synthetic_training_data(photo_dir, 'sharpen', PS, seed=1)
    with pytest.raises(ValueError, match='patch size'):
        get_synthetic_training_data(photo_dir, 'deblur', None, seed=1)
    with pytest.raises(ValueError, match='seed'):
        get_synthetic_validation_data(photo_dir, 'deblur', PS, seed=-1)


# ----------------------------------------------------------------------------- prepare_photos

def test_held_out_and_test_split():
    names = [f'pkg__photo_{i}' for i in range(2000)]
    # The demo samples' sources are test photos whatever the fractions.
    assert all(photos.split_of(name, 0.5, 0.0) == 'test' for name in photos.HELD_OUT)
    split = [photos.split_of(n, 0.1, 0.1) for n in names]
    assert abs(split.count('test') / len(names) - 0.1) < 0.02
    # Adding a test share only takes photos out of training; validation stays as it was.
    without = [photos.split_of(n, 0.1) for n in names]
    assert all(a == b for a, b in zip(split, without) if b == 'val')
    assert all(b == 'train' for a, b in zip(split, without) if a == 'test')
    with pytest.raises(ValueError, match='at most 1'):
        photos.split_of('x', 0.6, 0.6)


def test_split_is_deterministic_nested_and_about_the_fraction():
    split_of = photos.split_of
    names = [f'pkg__photo_{i}' for i in range(2000)]
    first = [split_of(n, 0.1) for n in names]
    assert first == [split_of(n, 0.1) for n in names]
    assert set(first) == {'train', 'val'}
    # Binomial(2000, 0.1): standard deviation 0.67%, so 3 deviations is 2%.
    assert abs(first.count('val') / len(names) - 0.1) < 0.02
    # A photo set aside at 10% stays aside at 20%: the split only grows.
    wider = [split_of(n, 0.2) for n in names]
    assert all(w == 'val' for f, w in zip(first, wider) if f == 'val')
    assert all(split_of(n, 0.0) == 'train' for n in names[:50])
    assert all(split_of(n, 1.0) == 'val' for n in names[:50])
    with pytest.raises(ValueError):
        split_of('x', 1.5)


def test_photos_are_shrunk_by_area_averaging():
    from utils.files.image_io import shrink_to_fit as downscale  # what scripts/prepare_photos.py shrinks with
    checker = (np.indices((201, 300)).sum(axis=0) % 2).astype(np.float32)
    img = np.repeat(checker[:, :, None], 3, axis=2)
    small = downscale(img, 100)
    # Factor exactly 3: every output pixel averages a 3x3 block holding 4 or 5 ones.
    assert small.shape == (67, 100, 3)
    assert np.all(np.isclose(small, 4 / 9, atol=1e-5) | np.isclose(small, 5 / 9, atol=1e-5))
    assert downscale(img, 400) is img


def test_prepare_writes_a_fixed_disjoint_split(tmp_path):
    src = tmp_path / 'src'
    rng = np.random.default_rng(0)
    pictures = []
    for i in range(8):
        path = src / f'texture{i}.png'
        write_rgb(path, rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
        pictures.append((f'test__texture{i}', str(path)))
    # The first texture again at twice the size: the same picture, kept once.
    big = cv2.resize(cv2.imread(pictures[0][1]), (240, 180), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(src / 'texture0_big.png'), big)
    pictures.append(('test__texture0_zbig', str(src / 'texture0_big.png')))
    write_rgb(src / 'flat.png', np.full((50, 50, 3), 128, np.uint8))
    pictures.append(('test__flat', str(src / 'flat.png')))
    # A white overlay whose picture is in its alpha channel: composited over black.
    alpha = np.tile(np.linspace(0, 255, 60).astype(np.uint8), (40, 1))
    cv2.imwrite(str(src / 'overlay.png'), np.dstack([np.full((40, 60, 3), 255, np.uint8), alpha]))
    pictures.append(('test__overlay', str(src / 'overlay.png')))
    license_file = src / 'copyright'
    license_file.write_text('CC0')

    source = photos.Source('test', pictures=pictures, licenses=[('test.copyright', str(license_file))])
    out = tmp_path / 'out'
    summary = photos.prepare([source], str(out), max_side=64, val_fraction=0.3)
    files = {split: sorted(os.listdir(out / split)) for split in photos.SPLITS}
    written = [f[:-4] for split in photos.SPLITS for f in files[split]]
    expected = sorted([f'test__texture{i}' for i in range(8)] + ['test__overlay'])
    assert sorted(written) == expected and len(set(written)) == len(written)
    for split in photos.SPLITS:
        for f in files[split]:
            assert photos.split_of(f[:-4], 0.3) == split
            assert max(cv2.imread(str(out / split / f)).shape[:2]) <= 64
    assert [d.split(' ')[0] for d in summary.duplicates] == ['test__texture0_zbig']
    assert [d.split(' ')[0] for d in summary.no_photo] == ['test__flat']
    overlay_split = photos.split_of('test__overlay', 0.3)
    overlay = cv2.imread(str(out / overlay_split / 'test__overlay.png'))
    np.testing.assert_allclose(overlay[:, :, 0].astype(float), alpha.astype(float), atol=1)
    assert (out / 'LICENSES' / 'test.copyright').read_text() == 'CC0'

    # Running again keeps what is there and writes nothing.
    again = photos.prepare([source], str(out), max_side=64, val_fraction=0.3)
    assert len(again.kept) == len(expected) and not any(again.written.values())
    # Another fraction moves photos between the folders; they never sit in both.
    photos.prepare([source], str(out), max_side=64, val_fraction=0.9)
    train, val = set(os.listdir(out / 'train')), set(os.listdir(out / 'val'))
    assert not train & val and len(train | val) == len(expected)


def test_a_rerun_with_other_tiles_leaves_no_picture_in_two_splits(tmp_path):
    rng = np.random.default_rng(2)
    pictures = []
    for i in range(6):
        path = tmp_path / 'src' / f'p{i}.png'
        write_rgb(path, rng.integers(0, 256, (180, 240, 3), dtype=np.uint8))
        pictures.append((f'test__p{i}', str(path)))
    source = photos.Source('test', pictures=pictures)
    out = tmp_path / 'out'
    (out / 'train').mkdir(parents=True)
    write_rgb(out / 'train' / 'mine.png', np.zeros((8, 8, 3), np.uint8))  # not a picture of the run: kept

    def where(picture):
        return {split for split in photos.SPLITS for f in os.listdir(out / split) if f.startswith(picture + '__')}

    # 180x240 in 64-px tiles: 180 // 64 = 2 rows, 240 // 64 = 3 columns, six tiles of each picture.
    photos.prepare([source], str(out), max_side=240, val_fraction=0.0, test_fraction=0.0, tile=64)
    assert all(where(name) == {'train'} for name, _ in pictures)
    assert len(os.listdir(out / 'train')) == 6 * 6 + 1
    # Again in 120-px tiles (1 row, 2 columns) with half the pictures held out for testing.
    summary = photos.prepare([source], str(out), max_side=240, val_fraction=0.0, test_fraction=0.5, tile=120)
    for name, _ in pictures:
        split = photos.split_of(name, 0.0, 0.5)
        assert where(name) == {split}, name
        assert sorted(f for f in os.listdir(out / split) if f.startswith(name + '__')) == \
            [f'{name}__t0.png', f'{name}__t1.png']
    assert len(summary.removed) == 6 * 4  # t2..t5 of every picture
    assert (out / 'train' / 'mine.png').exists()


def test_reserved_packages_are_never_a_source():
    pp = load_prepare_photos()
    assert set(pp.RESERVED_PACKAGES) == {'opencv-doc', 'plasma-workspace-wallpapers'}
    assert not set(pp.RESERVED_PACKAGES) & set(pp.DEBIAN_PACKAGES)
    for package in pp.RESERVED_PACKAGES:
        # Refused before anything is downloaded: the work folder stays empty.
        with pytest.raises(pp.ReservedPackageError, match=f'{package} is reserved'):
            pp.debian_source(package, os.devnull)
        with pytest.raises(SystemExit):
            pp.parse_args(['--packages', 'mate-backgrounds', package])


def test_held_out_source_goes_whole_to_its_own_split(tmp_path):
    pp = load_prepare_photos()
    assert pp.HELD_OUT_SOURCES and set(pp.HELD_OUT_SOURCES) <= set(pp.DEBIAN_PACKAGES)
    rng = np.random.default_rng(1)
    sources = []
    for origin, held_out in (('seen', False), ('unseen', True)):
        pictures = []
        for i in range(30):
            path = tmp_path / origin / f'{i}.png'
            write_rgb(path, rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
            pictures.append((f'{origin}__{i}', str(path)))
        sources.append(photos.Source(origin, pictures=pictures, held_out=held_out))
    out = tmp_path / 'out'
    photos.prepare(sources, str(out), max_side=64, val_fraction=0.2, test_fraction=0.2)
    by_split = {split: {f.split('__')[0] for f in os.listdir(out / split)} for split in photos.SPLITS}
    assert by_split['test_source'] == {'unseen'} and len(os.listdir(out / 'test_source')) == 30
    for split in ('train', 'val', 'test'):
        assert by_split[split] == {'seen'}, split


def test_tiles_cover_the_picture_exactly_once():
    # 1000 = 2 runs of 500 at tile 384; 383 < 384 stays whole; 1152 = 3 runs of exactly 384.
    assert photos.tile_grid(1000, 384) == [(0, 500), (500, 1000)]
    assert photos.tile_grid(383, 384) == [(0, 383)]
    assert photos.tile_grid(1152, 384) == [(0, 384), (384, 768), (768, 1152)]
    img = np.arange(700 * 1000 * 1, dtype=np.float32).reshape(700, 1000, 1)
    tiles = photos.tiles_of(img, 300)  # 700 -> 2 rows of 350, 1000 -> 3 columns of 333/334/333
    assert len(tiles) == 6 and [t.shape[:2] for t in tiles[:3]] == [(350, 333), (350, 334), (350, 333)]
    values = np.concatenate([t.ravel() for t in tiles])
    assert values.size == img.size and np.array_equal(np.sort(values), img.ravel())


def test_drawing_test_tells_flat_art_from_a_photo():
    # A cartoon: three flat colours. A photo stand-in: a smooth gradient plus grain, hundreds of colours.
    cartoon = np.zeros((64, 64, 3), np.float32)
    cartoon[:, :20] = (0.9, 0.5, 0.1)
    cartoon[:, 20:40] = (0.1, 0.1, 0.1)
    assert photos.looks_drawn(cartoon)
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, 64, dtype=np.float32)
    photo = np.clip(np.stack([ramp[None, :] * np.ones((64, 1)), ramp[:, None] * np.ones((1, 64)),
                              np.full((64, 64), 0.5)], axis=2) + rng.normal(0, 0.03, (64, 64, 3)), 0, 1)
    assert not photos.looks_drawn(photo.astype(np.float32))
    # Only visible pixels count: the photo cut out over a transparent background is still a photo.
    alpha = np.zeros((64, 64), np.float32)
    alpha[16:48, 16:48] = 1
    assert not photos.looks_drawn(photo * alpha[:, :, None], alpha)
    assert photos.looks_drawn(photo * alpha[:, :, None])  # with its black surround counted, it looks drawn


def test_photo_folders_and_exclusions_of_a_package():
    pp = load_prepare_photos()
    spec = pp.PackageSpec('p', folders=('usr/share/p/photos',), exclude=('illum', '/sky/'))
    assert pp.in_photo_folders('usr/share/p/photos/a.png', spec)
    assert pp.in_photo_folders('./usr/share/p/photos/deep/b.jpg', spec)
    assert not pp.in_photo_folders('usr/share/p/photosets/a.png', spec)  # a prefix of a name is no folder
    assert not pp.in_photo_folders('usr/share/doc/p/a.png', spec)
    assert not pp.in_photo_folders('usr/share/p/photos/trees_illum.png', spec)
    assert not pp.in_photo_folders('usr/share/p/photos/sky/blue.png', spec)
    assert pp.in_photo_folders('anything/at/all.png', pp.PackageSpec('q'))  # no folders named: all of it
    # The held-out panoramas leave out Stellarium's light and fog overlays.
    stellarium = pp.package_spec('stellarium-data')
    assert pp.in_photo_folders('usr/share/stellarium/landscapes/garching/garching-gl1.png', stellarium)
    for layer in ('trees/trees_illum_512.png', 'ocean/fog.png', 'guereins/guereins8-lgt.png', 'sun/sun-256.png'):
        assert not pp.in_photo_folders(f'usr/share/stellarium/landscapes/{layer}', stellarium), layer


def test_prepare_photos_options_that_name_no_folder_or_no_package(tmp_path, capsys):
    pp = load_prepare_photos()
    a_file = tmp_path / 'notes.txt'
    a_file.write_text('x')
    for argv, message in ((['--out', str(a_file)], f'--out {a_file} is a file; name a folder'),
                          (['--deb_dir', str(a_file)], f'--deb_dir {a_file} is a file; name a folder'),
                          (['--packages', '../../etc'], '--packages: ../../etc is not a Debian package name')):
        with pytest.raises(SystemExit) as stopped:
            pp.parse_args(argv)
        assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_the_newest_cached_package_is_used(tmp_path):
    pp = load_prepare_photos()
    for name in ('mate-backgrounds_1.9-1_all.deb', 'mate-backgrounds_1.10-1_all.deb',
                 'mate-backgrounds_1.10~rc1-1_all.deb', 'mate-backgrounds-extra_9.0_all.deb'):
        (tmp_path / name).write_bytes(b'')
    # 1.10-1 is newer than 1.9-1 (not by the characters) and than its release candidate 1.10~rc1.
    assert pp._cached_deb('mate-backgrounds', str(tmp_path)) == str(tmp_path / 'mate-backgrounds_1.10-1_all.deb')


@pytest.mark.slow
def test_every_source_failing_is_exit_1(tmp_path, monkeypatch):
    import subprocess
    import sys
    # No apt-get on PATH: every Debian package fails; scikit-image's photos are still written.
    env = dict(os.environ, PATH=str(tmp_path / 'empty'), OMP_NUM_THREADS='1')
    run = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'prepare_photos.py'), '--out',
                          str(tmp_path / 'out'), '--packages', 'mate-backgrounds', '--max_side', '64'],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr[-2000:]
    assert 'packages skipped: mate-backgrounds' in run.stdout


def test_degradation_params_reach_the_rain(photo_dir):
    # The training and validation pairs pass `params` to the degradation: the same draws with a
    # range of one heavy value put far more rain on the patch than the default ranges.
    heavy = dict(density_range=(0.05, 0.05), intensity_range=(1.0, 1.0))

    def rain_amount(**params):
        data = get_synthetic_validation_data(photo_dir, 'derain', PS, seed=3, **params)
        target, degraded, _ = data[0]
        return (degraded - target).abs().mean().item()

    assert rain_amount(params=heavy) > 3 * rain_amount()
    train = get_synthetic_training_data(photo_dir, 'derain', PS, seed=3, params=heavy)
    assert train.params == heavy
