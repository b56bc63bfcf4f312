"""Paired datasets, augmentation and MixUp on small images generated in tmp_path."""
import os
import random

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torch.utils.data import DataLoader

from dataset_RGB import MixUp, adjust_saturation, get_training_data, get_validation_data
from utils.files.image_io import image_to_tensor, list_images, read_image
from utils.data.image_pairs import flip_rotate, images_by_stem, pair_by_stem

TARGET_OFFSET = 30000  # target pixels hold index + offset, inputs the index itself


# ---------------------------------------------------------------- helpers

def write_rgb(path, rgb):
    """Write an (H, W, 3) uint8 or uint16 RGB array with OpenCV (which expects BGR)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))


def index_image(height, width, offset=0):
    """16-bit RGB whose pixel (r, c) holds r * width + c + offset in every channel."""
    idx = np.arange(height * width, dtype=np.uint16).reshape(height, width) + offset
    return np.repeat(idx[:, :, None], 3, axis=2).astype(np.uint16)


def decode_index(t, offset=0):
    """(3, H, W) tensor of an index image -> (H, W) int array of indices."""
    values = np.rint(t.numpy() * 65535).astype(np.int64) - offset
    assert np.all(values == values[0:1]), 'the three channels should be equal'
    return values[0]


def read_folder(folder):
    """[(image (3, H, W), stem)] of every image in `folder`, each at its own size, in stem order."""
    return [(image_to_tensor(read_image(path)[0]), name) for name, path in images_by_stem(folder).items()]


def make_index_pair(root, name, height, width):
    write_rgb(os.path.join(root, 'input', name + '.png'), index_image(height, width))
    write_rgb(os.path.join(root, 'target', name + '.png'), index_image(height, width, TARGET_OFFSET))


# The 8 elements of the square's symmetry group, written with numpy (independently of
# flip_rotate): identity, two flips, three rotations, transpose and anti-transpose.
DIHEDRAL = {
    'identity': lambda a: a,
    'flip_rows': lambda a: a[::-1],
    'flip_cols': lambda a: a[:, ::-1],
    'rot90': lambda a: np.rot90(a, 1),
    'rot180': lambda a: np.rot90(a, 2),
    'rot270': lambda a: np.rot90(a, 3),
    'transpose': lambda a: a.T,
    'anti_transpose': lambda a: np.rot90(a, 2).T,
}


def which_transform(patch_idx, width, ps):
    """(name, top, left) such that DIHEDRAL[name](index_image[top:top+ps, left:left+ps]) == patch.

    Indices grow along rows and columns, so the window's smallest index is its top-left corner.
    """
    top, left = divmod(int(patch_idx.min()), width)
    window = np.arange(top, top + ps)[:, None] * width + np.arange(left, left + ps)[None, :]
    found = [name for name, transform in DIHEDRAL.items() if np.array_equal(transform(window), patch_idx)]
    assert len(found) == 1, f'patch is not one transformed crop: {found}'
    return found[0], top, left


# ---------------------------------------------------------------- training patches

@pytest.mark.slow
def test_pair_gets_the_same_crop_and_transform_and_all_8_modes_occur(tmp_path):
    h, w, ps = 20, 26, 8
    make_index_pair(tmp_path, 'scene', h, w)
    data = get_training_data(str(tmp_path), {'patch_size': ps})
    seen, corners = {}, set()
    random.seed(1)
    for _ in range(900):
        target, inp, name = data[0]
        assert name == 'scene'
        assert target.shape == inp.shape == (3, ps, ps) and target.dtype == torch.float32
        inp_idx, tar_idx = decode_index(inp), decode_index(target, TARGET_OFFSET)
        assert np.array_equal(inp_idx, tar_idx)
        mode, top, left = which_transform(inp_idx, w, ps)
        seen[mode] = seen.get(mode, 0) + 1
        corners.add((top, left))
    assert set(seen) == set(DIHEDRAL)
    # The published draw randint(0, 8) leaves the pair unchanged for 2 of its 9 outcomes:
    # expected 900 * 2/9 = 200 +- 12.5 identities (a uniform draw of 8 would give 112),
    # 900/9 = 100 +- 9.4 of every other mode.
    assert 160 < seen['identity'] < 240
    assert all(65 < n < 135 for mode, n in seen.items() if mode != 'identity')
    # Crops start anywhere: 13 x 19 = 247 possible corners, most of them hit.
    assert len(corners) > 200
    assert all(0 <= t <= h - ps and 0 <= l <= w - ps for t, l in corners)


def test_flip_rotate_modes_match_their_definitions():
    x = torch.arange(12.0).view(1, 3, 4)[:, :3, :3].expand(2, 3, 3).contiguous()
    a = x[0].numpy()
    expected = [a, a[::-1], a[:, ::-1], np.rot90(a, 1), np.rot90(a, 2), np.rot90(a, 3),
                np.rot90(a[::-1], 1), np.rot90(a[:, ::-1], 1), a]
    for mode, want in enumerate(expected):
        out = flip_rotate(x, mode)
        assert np.array_equal(out[0].numpy(), want) and torch.equal(out[0], out[1]), mode
    with pytest.raises(ValueError, match='mode'):
        flip_rotate(x, 9)


def test_small_image_is_reflect_padded_to_the_patch_size(tmp_path):
    h, w, ps = 60, 100, 128  # a 100x60 image, patch 128
    make_index_pair(tmp_path, 'small', h, w)
    data = get_training_data(str(tmp_path), {'patch_size': ps})
    # numpy's reflect padding (mirror without repeating the edge, again and again when
    # the pad is longer than the side) is an independent reference.
    padded = np.pad(np.arange(h * w).reshape(h, w), ((0, ps - h), (0, ps - w)), mode='reflect')
    for _ in range(5):
        target, inp, _ = data[0]
        assert target.shape == inp.shape == (3, ps, ps)
        inp_idx = decode_index(inp)
        assert np.array_equal(inp_idx, decode_index(target, TARGET_OFFSET))
        assert any(np.array_equal(t(padded), inp_idx) for t in DIHEDRAL.values())


def test_collates_into_batches(tmp_path):
    for name in ('a', 'b', 'c'):
        make_index_pair(tmp_path, name, 24, 24)
    loader = DataLoader(get_training_data(str(tmp_path), {'patch_size': 16}), batch_size=2, num_workers=0)
    target, inp, names = next(iter(loader))
    assert target.shape == inp.shape == (2, 3, 16, 16)
    assert list(names) == ['a', 'b']


def test_bad_patch_size_is_an_error(tmp_path):
    make_index_pair(tmp_path, 'a', 8, 8)
    for options in ({}, {'patch_size': 0}, {'patch_size': None}, {'patch_size': 12.5}):
        with pytest.raises(ValueError, match='patch'):
            get_training_data(str(tmp_path), options)


# ---------------------------------------------------------------- saturation jitter

def test_adjust_saturation_matches_torchvision():
    from torchvision.transforms.functional import adjust_saturation as tv_adjust_saturation
    img = torch.rand(3, 9, 7)
    for factor in (0.0, 0.8, 1.0, 1.2, 2.0):
        # torchvision's tensor path weighs red 0.2989, PIL (and we) 0.299.
        torch.testing.assert_close(adjust_saturation(img.clone(), factor), tv_adjust_saturation(img, factor),
                                   atol=1e-4, rtol=0)
    # By hand: gray of (0.8, 0.2, 0.4) = .299 * .8 + .587 * .2 + .114 * .4 = 0.4022.
    pixel = torch.tensor([0.8, 0.2, 0.4]).view(3, 1, 1)
    torch.testing.assert_close(adjust_saturation(pixel, 0.5).flatten(),
                               torch.tensor([0.6011, 0.3011, 0.4011]))


def saturation_factor(out, colour):
    """Recover f from gray + f (colour - gray) for a flat patch; 1.0 when unchanged."""
    gray = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    pixel = out[:, 0, 0].double().numpy()
    assert torch.all(out == out[:, :1, :1]), 'a flat image stays flat'
    factors = (pixel - gray) / (np.asarray(colour) - gray)
    assert np.allclose(factors, factors[0], atol=1e-5)
    return factors[0]


def test_saturation_jitter_uses_one_factor_for_the_pair(tmp_path):
    inp_colour, tar_colour = np.array([204, 51, 102]), np.array([30, 180, 90])
    write_rgb(tmp_path / 'input' / 'flat.png', np.broadcast_to(inp_colour, (12, 12, 3)).astype(np.uint8))
    write_rgb(tmp_path / 'target' / 'flat.png', np.broadcast_to(tar_colour, (12, 12, 3)).astype(np.uint8))
    data = get_training_data(str(tmp_path), {'patch_size': 8, 'saturation_jitter': True})
    changed = []
    for _ in range(300):
        target, inp, _ = data[0]
        f_in, f_tar = saturation_factor(inp, inp_colour / 255), saturation_factor(target, tar_colour / 255)
        assert f_in == pytest.approx(f_tar, abs=1e-5)
        assert 0.8 - 1e-5 <= f_in <= 1.2 + 1e-5
        if abs(f_in - 1) > 1e-6:
            changed.append(f_in)
    assert 70 < len(changed) < 130  # probability 1/3: 100 expected of 300
    assert min(changed) < 0.9 and max(changed) > 1.1
    plain = get_training_data(str(tmp_path), {'patch_size': 8})
    for _ in range(20):
        assert saturation_factor(plain[0][1], inp_colour / 255) == pytest.approx(1.0)


# ---------------------------------------------------------------- pairing and file handling

def test_pairs_by_stem_across_extensions(tmp_path):
    rng = np.random.default_rng(0)
    for stem, in_ext, tar_ext in (('b', '.png', '.png'), ('a', '.png', '.bmp'), ('c', '.tif', '.png')):
        img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        write_rgb(tmp_path / 'input' / (stem + in_ext), img)
        write_rgb(tmp_path / 'target' / (stem + tar_ext), 255 - img)
    data = get_validation_data(str(tmp_path), {'patch_size': None})
    assert len(data) == 3
    for i, stem in enumerate('abc'):
        target, inp, name = data[i]
        assert name == stem
        torch.testing.assert_close(target, 1 - inp)  # the right partner, whatever the extension


def test_unmatched_names_are_listed(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    for name in ('a', 'b', 'only_in'):
        write_rgb(tmp_path / 'input' / f'{name}.png', img)
    for name in ('a', 'b', 'only_tar'):
        write_rgb(tmp_path / 'target' / f'{name}.jpg', img)
    with pytest.raises(ValueError) as err:
        get_training_data(str(tmp_path), {'patch_size': 8})
    message = str(err.value)
    assert 'only_in' in message and 'only_tar' in message
    assert "'a'" not in message and ' a,' not in message


def test_unmatched_names_are_introduced_by_the_given_phrases(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    write_rgb(tmp_path / 'res' / 'a.png', img)
    write_rgb(tmp_path / 'res' / 'only_result.png', img)
    write_rgb(tmp_path / 'gt' / 'a.png', img)
    write_rgb(tmp_path / 'gt' / 'only_target.png', img)
    with pytest.raises(ValueError, match=r'(?s)result\(s\) without target: only_result\n'
                                         r'.*target\(s\) without result: only_target$'):
        pair_by_stem(str(tmp_path / 'res'), str(tmp_path / 'gt'),
                     unmatched=('result(s) without target', 'target(s) without result'))


def test_pairs_and_listings_are_in_natural_order(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    for name in ('img10', 'img2', 'img1'):
        write_rgb(tmp_path / 'input' / f'{name}.png', img)
        write_rgb(tmp_path / 'target' / f'{name}.jpg', img)
    names = [os.path.basename(p) for p in list_images(str(tmp_path / 'input'))]
    assert names == ['img1.png', 'img2.png', 'img10.png']  # plain sorting puts img10 before img2
    data = get_validation_data(str(tmp_path), {'patch_size': None})
    assert [data[i][2] for i in range(len(data))] == ['img1', 'img2', 'img10']


def test_missing_and_empty_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere'):
        get_training_data(str(tmp_path / 'nowhere'), {'patch_size': 8})
    os.makedirs(tmp_path / 'input')
    os.makedirs(tmp_path / 'target')
    with pytest.raises(ValueError, match='no images in .*input'):
        get_validation_data(str(tmp_path), {'patch_size': 8})
    os.makedirs(tmp_path / 'empty')
    with pytest.raises(ValueError, match='no images in .*empty'):
        images_by_stem(str(tmp_path / 'empty'))


def test_same_stem_twice_is_an_error(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    write_rgb(tmp_path / 'a.png', img)
    write_rgb(tmp_path / 'a.jpg', img)
    with pytest.raises(ValueError, match=r'a\.jpg'):
        images_by_stem(str(tmp_path))


def test_16_bit_png_keeps_values_finer_than_8_bits(tmp_path):
    values = np.array([1000, 1001, 40000, 65535], np.uint16)
    img = np.repeat(np.tile(values, (4, 1))[:, :, None], 3, axis=2)
    write_rgb(tmp_path / 'input' / 'deep.png', img)
    write_rgb(tmp_path / 'target' / 'deep.png', img)
    target, inp, _ = get_validation_data(str(tmp_path), {'patch_size': None})[0]
    row = inp[0, 0].double()
    torch.testing.assert_close(row, torch.tensor(values / 65535.0), rtol=0, atol=1e-7)
    assert 0 < (row[1] - row[0]).item() < 1 / 255  # one 16-bit step survives
    assert torch.equal(target, inp)


def test_grayscale_palette_and_rgba_become_rgb(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    palette_colours = [(255, 0, 0), (0, 128, 255), (10, 20, 30)]
    labels = rng.integers(0, 3, (6, 5), dtype=np.uint8)
    palette = Image.new('P', (5, 6))
    palette.putdata(labels.flatten().tolist())
    palette.putpalette([v for colour in palette_colours for v in colour] + [0] * (768 - 9))
    palette.save(tmp_path / 'palette.png')
    Image.fromarray(gray).save(tmp_path / 'gray.png')  # mode L
    Image.fromarray(np.dstack([rgb, np.full((6, 5), 7, np.uint8)])).save(tmp_path / 'rgba.png')  # mode RGBA
    items = {name: img for img, name in read_folder(str(tmp_path))}
    assert set(items) == {'gray', 'palette', 'rgba'}
    torch.testing.assert_close(items['gray'], torch.from_numpy(gray / 255.0).float().expand(3, 6, 5))
    expected_palette = np.asarray(palette_colours)[labels] / 255.0  # (6, 5, 3)
    torch.testing.assert_close(items['palette'], torch.from_numpy(expected_palette.transpose(2, 0, 1)).float())
    torch.testing.assert_close(items['rgba'], torch.from_numpy(rgb.transpose(2, 0, 1) / 255.0).float())


def test_non_image_files_are_skipped(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    for side in ('input', 'target'):
        write_rgb(tmp_path / side / 'a.png', img)
        write_rgb(tmp_path / side / 'b.jpeg', img)
        (tmp_path / side / 'notes.txt').write_text('not an image')
        (tmp_path / side / '.DS_Store').write_bytes(b'\0')
        os.makedirs(tmp_path / side / 'subfolder.png')
    with pytest.warns(UserWarning, match='notes.txt'):
        data = get_validation_data(str(tmp_path), {'patch_size': 8})
    assert [data[i][2] for i in range(len(data))] == ['a', 'b']


def test_undecodable_png_names_the_file(tmp_path):
    write_rgb(tmp_path / 'input' / 'good.png', np.zeros((8, 8, 3), np.uint8))
    write_rgb(tmp_path / 'target' / 'good.png', np.zeros((8, 8, 3), np.uint8))
    (tmp_path / 'input' / 'broken.png').write_bytes(b'\x89PNG this is not really a png')
    write_rgb(tmp_path / 'target' / 'broken.png', np.zeros((8, 8, 3), np.uint8))
    data = get_training_data(str(tmp_path), {'patch_size': 8})
    with pytest.raises(ValueError, match=r'broken\.png'):
        data[0]  # pairs are sorted by name: 'broken' first


def test_pair_of_different_sizes_names_both_files(tmp_path):
    write_rgb(tmp_path / 'input' / 'x.png', np.zeros((8, 8, 3), np.uint8))
    write_rgb(tmp_path / 'target' / 'x.png', np.zeros((8, 10, 3), np.uint8))
    with pytest.raises(ValueError, match=r'input.x\.png.*target.x\.png'):
        get_validation_data(str(tmp_path), {'patch_size': None})[0]


# ---------------------------------------------------------------- validation sets and single folders

def test_validation_centre_crop_matches_torchvision(tmp_path):
    from torchvision.transforms.functional import center_crop
    h, w, ps = 41, 50, 16  # an odd margin: (41 - 16) / 2 = 12.5
    make_index_pair(tmp_path, 'v', h, w)
    target, inp, name = get_validation_data(str(tmp_path), {'patch_size': ps})[0]
    source = torch.arange(h * w).view(1, h, w)
    assert np.array_equal(decode_index(inp), center_crop(source, [ps, ps])[0].numpy())
    assert np.array_equal(decode_index(target, TARGET_OFFSET), decode_index(inp))
    # By hand for the even case: top (40 - 16) / 2 = 12, left (50 - 16) / 2 = 17.
    make_index_pair(tmp_path / 'even', 'v', 40, 50)
    _, inp, _ = get_validation_data(str(tmp_path / 'even'), {'patch_size': ps})[0]
    assert decode_index(inp)[0, 0] == 12 * 50 + 17


def test_validation_without_patch_size_gives_whole_images(tmp_path):
    make_index_pair(tmp_path, 'whole', 13, 21)
    target, inp, name = get_validation_data(str(tmp_path), {'patch_size': None})[0]
    assert inp.shape == (3, 13, 21)
    assert np.array_equal(decode_index(inp), np.arange(13 * 21).reshape(13, 21))


def test_one_folder_reads_by_stem_at_each_image_size(tmp_path):
    write_rgb(tmp_path / 'one.png', index_image(9, 11))
    write_rgb(tmp_path / 'two.jpg', np.zeros((5, 7, 3), np.uint8))
    data = read_folder(str(tmp_path))
    assert len(data) == 2
    img, name = data[0]
    assert name == 'one' and img.shape == (3, 9, 11)
    assert np.array_equal(decode_index(img), np.arange(99).reshape(9, 11))
    assert data[1][0].shape == (3, 5, 7) and data[1][1] == 'two'


# ---------------------------------------------------------------- MixUp

def mix_partner(mixed_t, target, mixed_i, inp, i):
    """(j, lam) with mixed[i] = lam x[i] + (1 - lam) x[j] for both target and input.

    None when sample i came back unchanged in both (j = i, or lam = 1), which is
    consistent with a mix but does not reveal j.
    """
    if torch.allclose(mixed_t[i], target[i], atol=1e-6) and torch.allclose(mixed_i[i], inp[i], atol=1e-6):
        return None
    fits = []
    for j in range(len(target)):
        if j == i:
            continue
        # Least-squares lam from the target pair, then check it on the target and the input.
        d = (target[i] - target[j]).flatten()
        lam = (torch.dot(mixed_t[i].flatten() - target[j].flatten(), d) / torch.dot(d, d)).item()
        if (torch.allclose(mixed_t[i], lam * target[i] + (1 - lam) * target[j], atol=1e-5)
                and torch.allclose(mixed_i[i], lam * inp[i] + (1 - lam) * inp[j], atol=1e-5)):
            fits.append((j, lam))
    assert len(fits) == 1, f'sample {i} is not one mix shared by target and input: {fits}'
    return fits[0]


def test_mixup_is_one_convex_combination_for_target_and_input():
    n = 8
    target, inp = torch.rand(n, 3, 4, 4), torch.rand(n, 3, 4, 4)
    mixed_t, mixed_i = MixUp(alpha=0.6, generator=torch.Generator().manual_seed(3))(target, inp)
    assert mixed_t.shape == target.shape and mixed_i.shape == inp.shape and mixed_i.device == inp.device
    partners = [mix_partner(mixed_t, target, mixed_i, inp, i) for i in range(n)]
    known = [p for p in partners if p is not None]
    assert len(known) >= n // 2  # Beta(0.6, 0.6) rarely gives lam = 1, a random permutation few fixed points
    assert len({j for j, _ in known}) == len(known)  # j = perm[i]: no sample is the partner of two
    assert all(0 <= lam <= 1 for _, lam in known)


def test_mixup_is_reproducible_with_a_generator():
    target, inp = torch.rand(4, 3, 4, 4), torch.rand(4, 3, 4, 4)
    first = MixUp(generator=torch.Generator().manual_seed(7))(target, inp)
    second = MixUp(generator=torch.Generator().manual_seed(7))(target, inp)
    other = MixUp(generator=torch.Generator().manual_seed(8))(target, inp)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not torch.equal(first[0], other[0])


def test_mixup_with_a_generator_leaves_the_global_rng_alone():
    target, inp = torch.rand(4, 3, 4, 4), torch.rand(4, 3, 4, 4)
    state = torch.get_rng_state()
    MixUp(generator=torch.Generator().manual_seed(7))(target, inp)
    assert torch.equal(torch.get_rng_state(), state)


def test_mixup_lambda_follows_beta_06_06():
    lam = MixUp(alpha=0.6, generator=torch.Generator().manual_seed(0)).sample_lambda(20000, torch.device('cpu'))
    assert lam.shape == (20000,) and lam.min() >= 0 and lam.max() <= 1
    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)) = 1 / 8.8.
    assert lam.mean().item() == pytest.approx(0.5, abs=0.01)
    assert lam.var().item() == pytest.approx(1 / 8.8, abs=0.005)
    assert stats.kstest(lam.double().numpy(), stats.beta(0.6, 0.6).cdf).pvalue > 1e-3
