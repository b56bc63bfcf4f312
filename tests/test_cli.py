"""utils.inference.cli and the demo's run options: exit codes, skipping, comparison pictures, precision choice."""
import argparse
import io
import os
import stat

import cv2
import numpy as np
import pytest
import torch

from utils import device as device_probe
from utils.inference.cli import (EXIT_INTERRUPTED, EXIT_NOTHING_RUN, EXIT_OK, EXIT_SOME_FAILED, UsageError, run_main,
                                 size_type)
from utils.files.image_io import write_image
from utils.inference.restorer import Restorer, TilePlan, choose_precision
from helpers import png_header_only, run_demo

pytestmark = pytest.mark.usefixtures('one_torch_thread')


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / 'in'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {'a': (20, 28), 'b': (16, 16), 'c': (24, 12)}.items():
        assert cv2.imwrite(str(folder / f'{name}.png'), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return folder


def test_size_parsing():
    """The one size parser of the scripts' options (the benchmarks' WIDTHxHEIGHT, export's HxW)."""
    assert size_type('1280x720') == (1280, 720)
    for bad in ('1280', '12x4', 'axb'):
        with pytest.raises(argparse.ArgumentTypeError):
            size_type(bad)


def test_run_main_exit_codes(capsys):
    assert run_main(lambda argv: None) == EXIT_OK
    assert run_main(lambda argv: {'results': []}) == EXIT_OK
    assert run_main(lambda argv: 2) == EXIT_SOME_FAILED  # two items failed

    def refuse(argv):
        raise UsageError('bad --thing')

    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_main(refuse) == EXIT_NOTHING_RUN
    assert capsys.readouterr().err.strip() == 'error: bad --thing'
    assert run_main(interrupted) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert 'interrupted' in err and '--skip_existing' in err and 'Traceback' not in err


def test_skip_existing_keeps_finished_results_and_restores_the_rest(inputs, tmp_path, tiny_weights, capsys):
    out = tmp_path / 'out'
    out.mkdir()
    assert cv2.imwrite(str(out / 'b.png'), np.zeros((3, 3, 3), np.uint8))
    assert run_demo('--task', 'Deraining', '--input_dir', inputs, '--result_dir', out, '--weights', tiny_weights,
                    '--skip_existing') == EXIT_OK
    assert cv2.imread(str(out / 'b.png')).shape == (3, 3, 3)  # kept as it was
    assert cv2.imread(str(out / 'a.png')).shape == (20, 28, 3) and (out / 'c.png').exists()
    assert '1 results already in' in capsys.readouterr().out
    assert run_demo('--task', 'Deraining', '--input_dir', inputs, '--result_dir', out, '--weights', tiny_weights,
                    '--skip_existing', '--overwrite') == EXIT_NOTHING_RUN
    assert 'contradict' in capsys.readouterr().err


def test_compare_writes_every_input_beside_its_result(inputs, tmp_path, tiny_weights):
    picture = tmp_path / 'cmp' / 'comparison.png'
    assert run_demo('--task', 'Deraining', '--input_dir', inputs, '--result_dir', tmp_path / 'out', '--weights',
                    tiny_weights, '--compare', picture) == EXIT_OK
    img = cv2.imread(str(picture))
    # Three rows (one per image), each an input panel and a result panel side by side with a label band.
    from utils.evaluation.visualize import GAP, LABEL_HEIGHT
    title = LABEL_HEIGHT + 8
    rows = (20 + LABEL_HEIGHT) + (16 + LABEL_HEIGHT) + (24 + LABEL_HEIGHT) + 3 * GAP
    assert img.shape[0] == title + rows
    assert img.shape[1] == 2 * 28 + GAP + 2 * GAP  # the widest row: two 28-px panels
    # A second run refuses to replace the picture unless told to.
    assert run_demo('--task', 'Deraining', '--input_dir', inputs, '--result_dir', tmp_path / 'out2', '--weights',
                    tiny_weights, '--compare', picture) == EXIT_NOTHING_RUN


def test_a_comparison_of_many_photos_stays_within_its_pixel_budget(tmp_path, monkeypatch):
    from utils.evaluation import visualize
    from utils.evaluation.visualize import GAP, LABEL_HEIGHT, comparison_picture, panel_side
    # 150 photos at the 480-px default would be 150 x 516 x 984 = 76 megapixels.
    side = panel_side(150)
    assert side % 8 == 0 and 150 * (side + LABEL_HEIGHT + GAP) * (2 * side + 3 * GAP) <= 40e6 < \
        150 * (side + 8 + LABEL_HEIGHT + GAP) * (2 * side + 16 + 3 * GAP)
    assert panel_side(3) == 480 and panel_side(10 ** 6) == visualize.MIN_PANEL_SIDE
    # On real files, with the budget made small: 12 pairs of 96x96 photos shrink to 48-px panels.
    monkeypatch.setattr(visualize, 'COMPARE_MEGAPIXELS', 12 * (48 + LABEL_HEIGHT + GAP) * (2 * 48 + 3 * GAP) / 1e6)
    pairs = []
    for i in range(12):
        for kind in ('in', 'out'):
            write_image(str(tmp_path / f'{kind}{i}.png'), np.full((96, 96, 3), i / 12, np.float32))
        pairs.append((str(tmp_path / f'in{i}.png'), str(tmp_path / f'out{i}.png')))
    picture = comparison_picture(pairs)
    assert picture.dtype == np.uint8 and picture.shape[1] == 2 * 48 + 3 * GAP
    assert picture.shape[0] == 12 * (48 + LABEL_HEIGHT + GAP)


def test_unusable_result_folder_is_refused_before_any_image(inputs, tmp_path, tiny_weights, capsys):
    a_file = tmp_path / 'file.txt'
    a_file.write_text('x')
    assert run_demo('--task', 'Deraining', '--input_dir', inputs, '--result_dir', a_file,
                    '--weights', tiny_weights) == EXIT_NOTHING_RUN
    assert 'is a file' in capsys.readouterr().err
    assert run_demo('--task', 'Deraining', '--input_dir', inputs, '--result_dir', a_file / 'sub', '--weights',
                    tiny_weights) == EXIT_NOTHING_RUN
    assert 'cannot write results into' in capsys.readouterr().err


def test_every_image_failing_is_exit_2(tmp_path, tiny_weights, capsys):
    folder = tmp_path / 'broken'
    folder.mkdir()
    (folder / 'x.png').write_bytes(b'not a png')
    (folder / 'y.jpg').write_bytes(b'')
    assert run_demo('--task', 'Deraining', '--input_dir', folder, '--result_dir', tmp_path / 'out',
                    '--weights', tiny_weights) == EXIT_NOTHING_RUN
    err = capsys.readouterr().err
    assert 'x.png' in err and 'y.jpg' in err and 'none of the 2 images' in err


def test_auto_precision_follows_the_cpu_and_fp16_on_cpu_is_refused(monkeypatch):
    cpu = torch.device('cpu')
    monkeypatch.setattr(device_probe, 'cpu_has_native_bf16', lambda: True)
    assert choose_precision('auto', False, cpu)[:2] == ('bf16', True)
    monkeypatch.setattr(device_probe, 'cpu_has_native_bf16', lambda: False)
    assert choose_precision('auto', False, cpu)[:2] == ('fp32', True)
    assert choose_precision('fp32', False, cpu)[:2] == ('fp32', False)  # the exact path
    with pytest.raises(ValueError, match='fp16 on the CPU'):
        choose_precision('fp16', False, cpu)


def test_memory_budget_tiles_and_reports_progress(tiny_model):
    seen = []
    restorer = Restorer(tiny_model, tiles=TilePlan(auto=True, memory_budget=1),
                        progress=lambda d, t, _: seen.append((d, t)))
    out, tiling = restorer.restore(torch.rand(1, 3, 200, 136))
    assert out.shape == (1, 3, 200, 136)
    assert tiling.tile == 64 and 'memory budget' in tiling.reason
    total = seen[-1][1]
    assert seen == [(d, total) for d in range(1, total + 1)] and total > 1
    whole = Restorer(tiny_model, tiles=TilePlan(auto=True, memory_budget=2 ** 40))
    assert whole.restore(torch.rand(1, 3, 64, 64)).tiling.tile is None


def test_results_are_written_atomically_with_the_usual_permissions(tmp_path):
    path = tmp_path / 'r.png'
    write_image(str(path), np.full((4, 5, 3), 0.5, np.float32))
    assert os.listdir(tmp_path) == ['r.png']  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    with pytest.raises(ValueError):
        write_image(str(tmp_path / 'bad.jpg'), np.zeros((4, 4, 3), np.float32), bit_depth=16)
    assert os.listdir(tmp_path) == ['r.png']


def test_a_result_named_up_to_the_file_systems_limit_is_written(tmp_path):
    from utils.files.atomic import remove_stale_temporaries
    path = tmp_path / ('r' * 251 + '.png')  # 255 bytes, the longest name ext4 and most others take
    write_image(str(path), np.full((4, 5, 3), 0.5, np.float32))
    assert os.listdir(tmp_path) == [path.name]
    # What a killed write leaves is recognised as ours, and nothing else is.
    stale = tmp_path / ('.' + 'r' * 100 + '.abcd_123.tmp')
    stale.write_bytes(b'half')
    (tmp_path / '.notes.tmp').write_bytes(b'the user\'s')
    assert remove_stale_temporaries(str(tmp_path)) == [str(stale)]
    assert sorted(os.listdir(tmp_path)) == ['.notes.tmp', path.name]


@pytest.mark.parametrize('hard_links', [True, False])
def test_a_write_that_must_not_replace_keeps_what_appeared(tmp_path, monkeypatch, hard_links):
    import errno
    from utils.files.atomic import OutputAppearedError
    if not hard_links:  # a file system without hard links: the name is claimed with O_EXCL instead
        def no_link(src, dst):
            raise OSError(errno.EPERM, 'Operation not permitted')
        monkeypatch.setattr(os, 'link', no_link)
    img = np.full((4, 5, 3), 0.5, np.float32)
    kept, empty, fresh = tmp_path / 'kept.png', tmp_path / 'empty.png', tmp_path / 'fresh.png'
    kept.write_bytes(b'another run')
    empty.write_bytes(b'')
    with pytest.raises(OutputAppearedError, match='kept.png appeared while this run was working'):
        write_image(str(kept), img, replace=False)
    write_image(str(empty), img, replace=False)  # 0 bytes is no result
    write_image(str(fresh), img, replace=False)
    assert kept.read_bytes() == b'another run'
    assert (cv2.imread(str(empty)) == 128).all() and (cv2.imread(str(fresh)) == 128).all()
    assert sorted(os.listdir(tmp_path)) == ['empty.png', 'fresh.png', 'kept.png']  # no temporaries


@pytest.mark.parametrize('orientation', range(1, 9))
def test_exif_orientation_is_applied_as_pillow_does(tmp_path, orientation):
    from PIL import Image, ImageOps
    from utils.files.image_io import read_image
    # A 6x4 picture with distinct pixels; PNG carries EXIF too (eXIf chunk) and is lossless, so
    # the pixels can be compared exactly with Pillow's own exif_transpose.
    stored = (np.arange(6 * 4 * 3).reshape(4, 6, 3) * 3).astype(np.uint8)
    pil = Image.fromarray(stored)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f'o{orientation}.png'
    pil.save(path, exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert('RGB'))
    img, _ = read_image(str(path))
    assert np.array_equal(np.round(img * 255).astype(np.uint8), expected)
    assert img.shape[:2] == ((6, 4) if orientation >= 5 else (4, 6))


def blocks_picture():
    """16x24 RGB of six 8x8 blocks of distinct colours: every orientation looks different, and
    JPEG keeps flat 8x8 blocks nearly exact."""
    colours = [(250, 10, 10), (10, 250, 10), (10, 10, 250), (250, 250, 10), (10, 250, 250), (128, 128, 128)]
    return np.kron(np.array(colours, np.uint8).reshape(2, 3, 3), np.ones((8, 8, 1), np.uint8))


def save_oriented(path, stored, orientation):
    from PIL import Image
    pil = Image.fromarray(stored)
    if path.suffix == '.tif':
        pil.save(path, tiffinfo={0x0112: orientation})  # the TIFF's own Orientation tag
        return
    exif = Image.Exif()
    exif[0x0112] = orientation
    extra = {'.jpg': dict(quality=100, subsampling=0), '.webp': dict(lossless=True)}.get(path.suffix, {})
    pil.save(path, exif=exif.tobytes(), **extra)


@pytest.mark.parametrize('decoder', ['installed', 'without TIFF orientation'])
@pytest.mark.parametrize('ext', ['.png', '.jpg', '.webp', '.tif'])
def test_every_orientation_of_every_format_reads_as_a_viewer_shows_it(tmp_path, monkeypatch, ext, decoder):
    from PIL import Image, ImageOps
    from utils.files import image_io
    from utils.files.image_header import read_header
    if decoder != 'installed':
        # OpenCV 4.x: the TIFF decoder returns the pixels as stored. Pillow turns TIFFs upright as
        # it loads them, so its result is turned back by the inverse orientation (6 and 8 swap).
        def stored_pixels(data, flags):
            with Image.open(io.BytesIO(data.tobytes())) as pil:
                tiff, shown = pil.format == 'TIFF', np.asarray(pil.convert('RGB'))
            o = read_header(io.BytesIO(data.tobytes())).orientation if tiff else 1
            return np.ascontiguousarray(image_io.apply_orientation(shown, {6: 8, 8: 6}.get(o, o))[:, :, ::-1])
        monkeypatch.setattr(image_io.cv2, 'imdecode', stored_pixels)
    image_io.decoder_applies_tiff_orientation.cache_clear()
    try:
        for orientation in range(1, 9):
            path = tmp_path / f'o{orientation}{ext}'
            save_oriented(path, blocks_picture(), orientation)
            with Image.open(path) as pil:
                expected = np.asarray(ImageOps.exif_transpose(pil).convert('RGB')).astype(int)
            img, _ = image_io.read_image(str(path))
            assert img.shape == expected.shape, (orientation, img.shape, expected.shape)
            assert np.abs(np.round(img * 255) - expected).max() <= 4, orientation
        if decoder != 'installed':
            assert not image_io.decoder_applies_tiff_orientation()  # the probe saw the stored pixels
    finally:
        image_io.decoder_applies_tiff_orientation.cache_clear()


def test_png_size_and_orientation_come_from_the_header_without_decoding(tmp_path):
    import struct
    import zlib
    from PIL import Image
    from utils.files.image_header import image_size
    from utils.files.image_header import exif_orientation
    exif = Image.Exif()
    exif[0x0112] = 6
    raw = exif.tobytes()[6:]  # without the 'Exif\0\0' prefix: a PNG eXIf chunk holds the TIFF data
    after = struct.pack('>I', len(raw)) + b'eXIf' + raw + struct.pack('>I', zlib.crc32(b'eXIf' + raw))
    path = tmp_path / 'huge.png'
    path.write_bytes(png_header_only(20000, 10000, after))  # 200 megapixels, above Pillow's bomb limit
    assert image_size(str(path)) == (10000, 20000), 'orientation 6 behind IDAT: stored wide, shown tall'
    assert exif_orientation(np.frombuffer(path.read_bytes(), np.uint8)) == 6
    plain = tmp_path / 'plain.png'
    plain.write_bytes(png_header_only(30, 20))
    assert image_size(str(plain)) == (30, 20)
    assert Image.MAX_IMAGE_PIXELS is not None, 'the bomb limit is restored afterwards'


def test_rotated_jpeg_from_a_camera_is_restored_upright(tmp_path, tiny_weights):
    from PIL import Image
    # Stored 96 wide x 64 tall with orientation 6: viewers show it 64 wide x 96 tall.
    exif = Image.Exif()
    exif[0x0112] = 6
    folder = tmp_path / 'cam'
    folder.mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(
        folder / 'photo.jpg', exif=exif.tobytes())
    assert run_demo('--task', 'Deraining', '--input_dir', folder, '--result_dir', tmp_path / 'out',
                    '--weights', tiny_weights) == EXIT_OK
    assert cv2.imread(str(tmp_path / 'out' / 'photo.png')).shape == (96, 64, 3)


def test_float_tiff_outside_0_1_warns(tmp_path):
    from utils.files.image_io import read_image
    path = tmp_path / 'hdr.tiff'
    assert cv2.imwrite(str(path), np.full((4, 4, 3), 2.5, np.float32))
    with pytest.warns(UserWarning, match=r'clipped to \[0, 1\]'):
        img, depth = read_image(str(path))
    assert depth == 32 and img.max() == 1.0
