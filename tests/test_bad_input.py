"""The inference side: bad input files, bad options and faults, each reproduced by hand.

Every file here is made by the test (tifffile, OpenCV, or bytes written with
struct/zlib), and every expected value is worked out from what was written.
"""
import os
import signal
import struct
import sys
import time
import types
import warnings

import cv2
import numpy as np
import pytest
import tifffile
import torch

import app
from utils.inference import uploads
import hubconf
from helpers import TINY, png_header_only, rgb8, run_demo, write_test_image
from MPRNet import MPRNet
from utils import allocator
from utils.inference.folder_restore import restore_folder
from utils.files.image_io import DEFAULT_MAX_MEGAPIXELS, ImageTooLargeError, check_pixel_limit, read_image
from utils.inference.restorer import Restorer
from utils.evaluation.visualize import BACKGROUND, LABEL_HEIGHT, drawable, labelled_panel

pytestmark = pytest.mark.usefixtures('one_torch_thread')


@pytest.fixture
def one_input(tmp_path):
    folder = tmp_path / 'in'
    folder.mkdir()
    write_test_image(folder / 'x.png', rgb8(16, 16))
    return folder


# ---------------------------------------------------------------- 1: --compare


def test_compare_never_replaces_a_result_of_the_run(one_input, tmp_path, tiny_weights, capsys):
    out = tmp_path / 'o'
    assert run_demo('--task', 'Deblurring', '--input_dir', one_input, '--result_dir', out, '--weights', tiny_weights,
                    '--compare', out / 'x.png') == 2
    assert 'is the result' in capsys.readouterr().err
    assert not (out / 'x.png').exists()  # refused before any work


def test_compare_never_replaces_an_input_even_with_overwrite(one_input, tmp_path, tiny_weights, capsys):
    before = (one_input / 'x.png').read_bytes()
    assert run_demo('--task', 'Deblurring', '--input_dir', one_input, '--result_dir', tmp_path / 'o',
                    '--weights', tiny_weights, '--compare', one_input / 'x.png', '--overwrite') == 2
    assert 'is the input' in capsys.readouterr().err
    assert (one_input / 'x.png').read_bytes() == before
    # The same file through a symbolic link is still the input.
    os.symlink(one_input / 'x.png', tmp_path / 'link.png')
    assert run_demo('--task', 'Deblurring', '--input_dir', one_input, '--result_dir', tmp_path / 'o',
                    '--weights', tiny_weights, '--compare', tmp_path / 'link.png', '--overwrite') == 2
    assert (one_input / 'x.png').read_bytes() == before


def test_compare_is_checked_before_any_work(one_input, tmp_path, tiny_weights, capsys):
    out = tmp_path / 'o'
    assert run_demo('--task', 'Deblurring', '--input_dir', one_input, '--result_dir', out, '--weights', tiny_weights,
                    '--compare', tmp_path / 'x.txt') == 2
    err = capsys.readouterr().err
    assert '--compare' in err and 'image name' in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    a_file = tmp_path / 'file'
    a_file.write_text('x')
    assert run_demo('--task', 'Deblurring', '--input_dir', one_input, '--result_dir', out, '--weights', tiny_weights,
                    '--compare', a_file / 'c.png') == 2
    err = capsys.readouterr().err
    assert 'cannot write the comparison picture' in err and '--compare' in err
    assert not (out / 'x.png').exists()  # nothing was restored


# ---------------------------------------------------------------- 6: pixel types


def tiff(path, array, **kwargs):
    tifffile.imwrite(str(path), array, **kwargs)
    return str(path)


@pytest.mark.parametrize('dtype, stored, expected, bits, clipped', [
    # signed: divided by the positive maximum, negatives clipped to 0 (with a warning)
    ('int16', [32767, 16384, -5], [1.0, 16384 / 32767, 0.0], 16, True),
    ('int32', [2 ** 31 - 1, 2 ** 30, -1], [1.0, 2 ** 30 / (2 ** 31 - 1), 0.0], 32, True),
    # unsigned: divided by the type's maximum
    ('uint32', [2 ** 32 - 1, 2 ** 31, 0], [1.0, 2 ** 31 / (2 ** 32 - 1), 0.0], 32, False),
    # floats: taken as [0, 1], clipped (with a warning)
    ('float64', [0.25, 1.5, -0.5], [0.25, 1.0, 0.0], 64, True),
    ('float64', [0.25, 0.125, 1.0], [0.25, 0.125, 1.0], 64, False),
])
def test_every_rgb_tiff_pixel_type_is_scaled_by_its_range(tmp_path, dtype, stored, expected, bits, clipped):
    pixels = np.array([[stored, stored[::-1]]], dtype=dtype)  # 1x2: the second pixel reversed (channel order)
    path = tiff(tmp_path / f'{dtype}.tif', pixels, photometric='rgb')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        img, depth = read_image(path)
    assert bool(caught) == clipped and all(path in str(w.message) for w in caught)
    assert img.dtype == np.float32 and img.shape == (1, 2, 3) and depth == bits
    np.testing.assert_allclose(img[0, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(img[0, 1], expected[::-1], rtol=1e-6)


@pytest.mark.parametrize('make, message', [
    (lambda p: tiff(p, np.full((4, 4, 3), 0.5, np.float16), photometric='rgb'), 'float16'),
    (lambda p: tiff(p, np.zeros((4, 4, 5), np.uint8), photometric='minisblack', planarconfig='contig',
                    extrasamples=[0, 0, 0, 0]), 'has 5 channels'),
    (lambda p: tiff(p, np.full((4, 4, 2), 40000, np.uint16), photometric='minisblack', extrasamples=[2]),
     '16-bit gray + alpha'),
    (lambda p: tiff(p, np.array([[[0.5, np.nan, 0.5]]], np.float32), photometric='rgb'), 'NaN or infinite'),
])
def test_valid_tiffs_the_decoder_cannot_keep_are_refused_by_what_they_are(tmp_path, make, message):
    path = make(tmp_path / 'odd.tif')
    with pytest.raises(ValueError) as err:
        read_image(path)
    assert message in str(err.value) and path in str(err.value) and 'damaged' not in str(err.value)


def png_gray_alpha_16(width, height, gray, alpha):
    """A 16-bit gray + alpha PNG (colour type 4) written by hand, every pixel (gray, alpha)."""
    import zlib

    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

    row = b'\0' + struct.pack('>HH', gray, alpha) * width
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 16, 4, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(row * height)) + chunk(b'IEND', b''))


def test_16_bit_gray_alpha_png_is_read_at_16_bits(tmp_path):
    path = tmp_path / 'la.png'
    path.write_bytes(png_gray_alpha_16(3, 2, gray=1000, alpha=7))
    img, depth = read_image(str(path))
    assert depth == 16 and img.shape == (2, 3, 3)
    np.testing.assert_allclose(img, 1000 / 65535, rtol=1e-6)  # 1000 is no multiple of 257: not 8-bit


def test_a_bad_tiff_never_stops_the_others(tmp_path, tiny_weights, capsys):
    folder = tmp_path / 'in'
    folder.mkdir()
    write_test_image(folder / 'a.png', rgb8(8, 8))
    tiff(folder / 'b.tif', np.full((8, 8, 3), 0.5, np.float16), photometric='rgb')
    tiff(folder / 'c.tif', np.full((8, 8, 3), 1000, np.int16), photometric='rgb')
    tiff(folder / 'd.tif', np.full((8, 8, 3), 0.5, np.float64), photometric='rgb')
    out = tmp_path / 'o'
    assert run_demo('--task', 'Deblurring', '--input_dir', folder, '--result_dir', out, '--weights', tiny_weights) == 1
    captured = capsys.readouterr()
    assert 'b.tif' in captured.err and 'float16' in captured.err and '3 of 4 images restored' in captured.out
    assert sorted(os.listdir(out)) == ['a.png', 'c.png', 'd.png']
    assert cv2.imread(str(out / 'c.png'), cv2.IMREAD_UNCHANGED).dtype == np.uint16  # 16-bit in, 16-bit out


# ---------------------------------------------------------------- 7: labels


def test_labels_of_names_that_are_not_utf8_are_drawn_as_ascii():
    name = os.fsdecode(b'caf\xe9.png')  # a Latin-1 name: the byte is kept as a lone surrogate
    assert drawable(f'input: {name}') == 'input: caf?.png'
    assert drawable('input: café\n.png') == 'input: caf??.png'
    panel = labelled_panel(np.zeros((8, 8, 3), np.float32), f'input: {name}')
    expected = labelled_panel(np.zeros((8, 8, 3), np.float32), 'input: caf?.png')
    assert np.array_equal(panel, expected) and panel[:LABEL_HEIGHT].max() > BACKGROUND  # drawn


def test_demo_compares_a_file_whose_name_is_not_utf8(tmp_path, tiny_weights):
    folder = tmp_path / 'in'
    folder.mkdir()
    name = os.fsdecode(b'caf\xe9.png')
    write_test_image(os.path.join(str(folder), name), rgb8(8, 8))
    assert run_demo('--task', 'Deblurring', '--input_dir', folder, '--result_dir', tmp_path / 'o',
                    '--weights', tiny_weights, '--compare', tmp_path / 'compare.png') == 0
    assert cv2.imread(str(tmp_path / 'compare.png')) is not None


# ---------------------------------------------------------------- 8: non-finite output


class InfWhereBright(MPRNet):
    """Gives +infinity for images brighter than mid-grey and NaN for very dark ones, else its input."""

    def forward(self, x):
        mean = float(x.mean())
        if mean > 0.5:
            return [torch.full_like(x, float('inf'))]
        if mean < 0.1:
            return [torch.full_like(x, float('nan'))]
        return [x]


def test_non_finite_output_fails_that_image_only(tmp_path):
    folder = tmp_path / 'in'
    folder.mkdir()
    for name, level in (('bright', 200), ('dark', 10), ('mid', 77)):
        write_test_image(folder / f'{name}.png', np.full((8, 8, 3), level, np.uint8))
    plan = [(str(folder / f'{n}.png'), str(tmp_path / f'{n}.png')) for n in ('bright', 'dark', 'mid')]
    restorer = Restorer(InfWhereBright(**TINY), refuse_non_finite=True)
    failed = restore_folder(restorer, plan, keep_going=True)
    assert failed == [plan[0][0], plan[1][0]]
    assert not os.path.exists(plan[0][1]) and not os.path.exists(plan[1][1])
    assert (cv2.imread(plan[2][1]) == 77).all()
    # Without the refusal (training's validation), the published clamp: infinity becomes white.
    assert Restorer(InfWhereBright(**TINY))(torch.full((1, 3, 8, 8), 0.9)).min() == 1.0


def test_demo_exits_1_naming_the_image_with_non_finite_output(tmp_path, tiny_weights, monkeypatch, capsys):
    folder = tmp_path / 'in'
    folder.mkdir()
    write_test_image(folder / 'bright.png', np.full((8, 8, 3), 200, np.uint8))
    write_test_image(folder / 'mid.png', np.full((8, 8, 3), 77, np.uint8))
    monkeypatch.setattr('utils.inference.loading.build_model', lambda task, path: InfWhereBright(**TINY).eval())
    assert run_demo('--task', 'Deblurring', '--input_dir', folder, '--result_dir', tmp_path / 'o', '--weights',
                    tiny_weights) == 1
    err = capsys.readouterr().err
    assert 'bright.png' in err and 'NaN or infinite' in err
    assert os.listdir(tmp_path / 'o') == ['mid.png']


# ---------------------------------------------------------------- 11: one pixel limit


@pytest.mark.slow
def test_the_demo_refuses_a_huge_header_before_decoding(tmp_path, tiny_weights, capsys):
    folder = tmp_path / 'in'
    folder.mkdir()
    write_test_image(folder / 'a.png', rgb8(8, 8))
    (folder / 'huge.png').write_bytes(png_header_only(20000, 20000))  # 400 MP claimed, a few bytes of data
    out = tmp_path / 'o'
    assert run_demo('--task', 'Deblurring', '--input_dir', folder, '--result_dir', out, '--weights', tiny_weights) == 1
    err = capsys.readouterr().err
    assert 'huge.png is 20000x20000 (400.0 megapixels)' in err and '--max_megapixels' in err
    assert os.listdir(out) == ['a.png']
    # Raised above it, the file reaches the decoder, which finds the stub.
    assert run_demo('--task', 'Deblurring', '--input_dir', folder / 'huge.png', '--result_dir', tmp_path / 'o2',
                    '--weights', tiny_weights, '--max_megapixels', 400) == 2
    assert 'cannot decode image' in capsys.readouterr().err


def test_the_default_limit_passes_a_100_megapixel_photo():
    check_pixel_limit('photo.jpg', 11648, 8736, DEFAULT_MAX_MEGAPIXELS)  # a 101.8-MP camera
    with pytest.raises(ImageTooLargeError):
        check_pixel_limit('photo.jpg', 20000, 20000, DEFAULT_MAX_MEGAPIXELS)


def tiff_header_only(width, height):
    """A little-endian TIFF whose one IFD says width x height, 8-bit RGB, and holds no pixels."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (277, 3, 1, 3)]
    ifd = struct.pack('<H', len(entries)) + b''.join(struct.pack('<HHII', *e) for e in entries) + b'\0' * 4
    return b'II*\0' + struct.pack('<I', 8) + ifd


def test_tiff_headers_are_checked_too(tmp_path):
    path = tmp_path / 'huge.tif'
    path.write_bytes(tiff_header_only(30000, 10000))
    with pytest.raises(ImageTooLargeError, match=r'huge.tif is 30000x10000 \(300.0 megapixels\)'):
        read_image(str(path))


def test_a_tiff_that_repeats_its_size_is_refused_before_decoding(tmp_path, monkeypatch):
    # libtiff keeps the first ImageWidth/ImageLength (18000), a reader keeping the last saw 8x8:
    # whichever the decoder takes, the limit must see the same, so the file is refused.
    entries = [(256, 4, 1, 18000), (256, 4, 1, 8), (257, 4, 1, 18000), (257, 4, 1, 8), (258, 3, 1, 16),
               (277, 3, 1, 3)]
    ifd = struct.pack('<H', len(entries)) + b''.join(struct.pack('<HHII', *e) for e in entries) + b'\0' * 4
    path = tmp_path / 'twice.tif'
    path.write_bytes(b'II*\0' + struct.pack('<I', 8) + ifd)

    def never(*args):
        raise AssertionError('decoded')
    monkeypatch.setattr(cv2, 'imdecode', never)
    with pytest.raises(ValueError, match=r'twice.tif.*gives tag 256 \(width\) twice'):
        read_image(str(path), max_megapixels=None)
    models = uploads.Models.from_settings(device='cpu')
    with pytest.raises(uploads.AppError, match='twice.tif'):
        uploads.restore(str(path), 'Deblurring', models, str(tmp_path / 'out'))


def test_a_header_the_checker_cannot_read_is_refused_not_decoded(tmp_path):
    # Radiance HDR, which OpenCV decodes and Pillow cannot read, named .png.
    ok, encoded = cv2.imencode('.hdr', np.full((4, 5, 3), 0.5, np.float32))
    assert ok and cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED).shape == (4, 5, 3)
    path = tmp_path / 'photo.png'
    path.write_bytes(encoded.tobytes())
    with pytest.raises(ValueError, match='header cannot be read'):
        read_image(str(path))
    models = uploads.Models.from_settings(device='cpu')
    with pytest.raises(uploads.AppError, match='photo.png: the file is damaged or not an image'):
        uploads.restore(str(path), 'Deblurring', models, str(tmp_path / 'out'))


# ---------------------------------------------------------------- 12: SIGTERM


def test_the_web_page_keeps_gradios_copies_private_and_removes_them(tmp_path, monkeypatch):
    """Gradio copies every upload and result into GRADIO_TEMP_DIR (/tmp/gradio when unset, readable
    by every user and never emptied): the page points it into its own folder, removed at the end."""
    monkeypatch.setattr('tempfile.tempdir', str(tmp_path))
    monkeypatch.setenv('GRADIO_TEMP_DIR', '/somewhere/the/user/chose')
    seen = {}

    class Page:
        def queue(self, **kwargs):
            pass

        def launch(self, allowed_paths, **kwargs):
            cache = os.environ['GRADIO_TEMP_DIR']
            seen['cache'] = cache
            seen['modes'] = [os.stat(f).st_mode & 0o777 for f in (os.path.dirname(cache), cache)]
            write_test_image(os.path.join(cache, 'upload.png'), rgb8(4, 4))  # what Gradio does with an upload
            raise KeyboardInterrupt  # Ctrl-C

    def import_gradio():
        seen['at_import'] = os.environ['GRADIO_TEMP_DIR']
        return types.SimpleNamespace(themes=types.SimpleNamespace(Default=lambda **kwargs: None))
    monkeypatch.setattr(app, 'import_gradio', import_gradio)
    monkeypatch.setattr(app, 'build_page', lambda *args: Page())
    monkeypatch.setattr(app, 'check_listen_address', lambda host, port: None)
    assert app.main(['--device', 'cpu']) == 0
    assert seen['at_import'] == seen['cache'] and seen['cache'].startswith(str(tmp_path))
    assert seen['modes'] == [0o700, 0o700]  # this user's only
    folder = os.path.dirname(seen['cache'])
    assert not os.path.exists(folder) and os.listdir(tmp_path) == []
    assert os.environ['GRADIO_TEMP_DIR'] == '/somewhere/the/user/chose'


def test_the_web_page_cleans_up_on_sigterm(tmp_path, monkeypatch):
    """main() with a stand-in page whose launch() gets SIGTERM, as `timeout` or `kill` send it."""
    monkeypatch.setattr('tempfile.tempdir', str(tmp_path))
    seen = {}

    class Page:
        def queue(self, **kwargs):
            pass

        def launch(self, allowed_paths, **kwargs):
            seen['out_dir'] = allowed_paths[0]
            write_test_image(os.path.join(allowed_paths[0], 'restored.png'), rgb8(4, 4))
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
            raise AssertionError('SIGTERM did not stop the server')

    fake = types.SimpleNamespace(themes=types.SimpleNamespace(Default=lambda **kwargs: None))
    monkeypatch.setattr(app, 'import_gradio', lambda: fake)
    monkeypatch.setattr(app, 'build_page', lambda *args: Page())
    monkeypatch.setattr(app, 'check_listen_address', lambda host, port: None)
    before = signal.getsignal(signal.SIGTERM)
    assert app.main(['--device', 'cpu']) == 0
    assert seen['out_dir'].startswith(str(tmp_path)) and not os.path.exists(seen['out_dir'])
    assert os.listdir(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) == before


# ---------------------------------------------------------------- smaller ones


@pytest.mark.parametrize('value', ['inf', 'nan', '1e-12'])
def test_bad_max_memory_is_one_line_naming_the_option(one_input, tmp_path, tiny_weights, capsys, value):
    assert run_demo('--task', 'Deblurring', '--input_dir', one_input, '--result_dir', tmp_path / 'o', '--weights',
                    tiny_weights, '--max_memory', value) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: --max_memory') and len(err.strip().splitlines()) == 1


def test_bad_allocator_setting_is_one_line(one_input, tmp_path, tiny_weights, capsys, monkeypatch):
    monkeypatch.setattr(allocator, '_applied', None)  # as at the start of a process
    monkeypatch.setenv(allocator.ENV_SWITCH, 'bogus')
    assert run_demo('--task', 'Deblurring', '--input_dir', one_input, '--result_dir', tmp_path / 'o', '--weights',
                    tiny_weights) == 2
    err = capsys.readouterr().err
    assert 'MPRNET_ALLOCATOR' in err and "'bogus'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize('argv, message', [
    (['--port', '70000'], '--port must be between 1 and 65535, got 70000'),
    (['--host', '256.1.1.1', '--port', '7861'], '--host 256.1.1.1 is not an address'),
    (['--max_megapixels', 'nan'], '--max_megapixels must be a positive, finite number'),
    (['--max_megapixels', '0'], '--max_megapixels must be a positive, finite number'),
    (['--max_upload_mb', '-1'], '--max_upload_mb must be at least 1, got -1'),
    (['--max_upload_mb', '0'], '--max_upload_mb must be at least 1, got 0'),
    (['--max_queue', '-5'], '--max_queue must be at least 1, got -5'),
])
def test_bad_web_page_options_are_one_line(capsys, argv, message):
    assert app.main(['--device', 'cpu'] + argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_taken_port_is_named(capsys):
    import socket
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert app.main(['--device', 'cpu', '--port', str(port)]) == 2
    assert f'port {port} on 127.0.0.1 is taken' in capsys.readouterr().err


def test_hub_entry_names_a_missing_task():
    with pytest.raises(ValueError, match='task must be one of Deblurring, Deraining, Denoising.*got None'):
        hubconf.mprnet(task=None)


@pytest.mark.skipif(sys.platform == 'win32', reason='FIFOs and symbolic links')
def test_links_to_nothing_and_pipes_are_counted_and_named(one_input, tmp_path, tiny_weights, capsys):
    os.symlink(tmp_path / 'nowhere.png', one_input / 'dangling.png')
    os.symlink(one_input / 'loop.png', one_input / 'loop.png')
    os.mkfifo(one_input / 'pipe.png')
    out = tmp_path / 'o'
    assert run_demo('--task', 'Deblurring', '--input_dir', one_input, '--result_dir', out,
                    '--weights', tiny_weights) == 1
    captured = capsys.readouterr()
    assert '1 of 4 images restored' in captured.out
    assert 'dangling.png is a symbolic link to nothing' in captured.err
    assert 'loop.png is a symbolic link to nothing' in captured.err
    assert 'pipe.png is not a regular file' in captured.err
    assert os.listdir(out) == ['x.png']


def test_skip_existing_redoes_an_empty_result(tmp_path, tiny_weights):
    folder = tmp_path / 'in'
    folder.mkdir()
    write_test_image(folder / 'x.png', rgb8(16, 16))
    write_test_image(folder / 'y.png', rgb8(16, 16))
    out = tmp_path / 'o'
    out.mkdir()
    (out / 'x.png').write_bytes(b'')
    write_test_image(out / 'y.png', np.zeros((5, 5, 3), np.uint8))
    assert run_demo('--task', 'Deblurring', '--input_dir', folder, '--result_dir', out, '--weights', tiny_weights,
                    '--skip_existing') == 0
    assert cv2.imread(str(out / 'x.png')).shape == (16, 16, 3)  # redone
    assert cv2.imread(str(out / 'y.png')).shape == (5, 5, 3)    # kept


# ---------------------------------------------------------------- memory of a read, whatever the file's size


def png_with_chunk_after_ihdr(pixels, kind, data):
    import zlib
    ok, encoded = cv2.imencode('.png', pixels)
    raw = encoded.tobytes()
    chunk = struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return raw[:33] + chunk + raw[33:]  # signature (8) + IHDR (25), then the chunk


def test_a_small_image_padded_to_a_large_file_costs_its_pixels_not_its_size(tmp_path, monkeypatch):
    import tracemalloc
    from utils.files import image_io
    monkeypatch.setattr(image_io, 'METADATA_BYTES', 2 ** 20)
    pixels = rgb8(8, 8)
    ok, encoded = cv2.imencode('.png', pixels)
    padded = tmp_path / 'padded.png'
    padded.write_bytes(encoded.tobytes() + b'\0' * (24 * 2 ** 20))  # a valid 8x8 PNG, then 24 MiB
    small = tmp_path / 'small.png'
    small.write_bytes(encoded.tobytes())
    read_image(str(small))  # the decoders' one-off set-up (Pillow's plugins) is not the file's cost
    tracemalloc.start()
    try:
        img, _ = read_image(str(padded))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(np.round(img * 255).astype(np.uint8), pixels[:, :, ::-1])
    # The budget, 2 x 8 x 8 pixels x 4 samples x 2 bytes + 1 MiB, read once (and the decoder's and
    # header reader's own few hundred KiB); before, the whole file was held twice: 48 MiB.
    assert peak < 2 ** 20 + 2 * 8 * 8 * 4 * 2 + 2 ** 20, peak
    # An image whose pixels lie beyond the budget (3 MiB of text before them) is refused by name.
    late = tmp_path / 'late.png'
    late.write_bytes(png_with_chunk_after_ihdr(pixels, b'tEXt', b'comment\0' + b'x' * (3 * 2 ** 20)))
    with pytest.raises(ValueError, match=r'late.png is 3 MiB, more than the pixels its header gives \(8x8\)'):
        read_image(str(late))


def test_running_out_of_memory_on_one_file_fails_only_that_file(tmp_path, tiny_weights, capsys, monkeypatch):
    from utils.inference import folder_restore
    folder = tmp_path / 'in'
    folder.mkdir()
    for name in ('a', 'huge', 'z'):
        write_test_image(folder / f'{name}.png', rgb8(8, 8))
    reader = folder_restore.read_image

    def out_of_memory_on_huge(path, *args):
        if 'huge' in path:
            raise MemoryError('Unable to allocate 2.79 GiB for an array with shape (3000000000,) and data type uint8')
        return reader(path, *args)

    monkeypatch.setattr(folder_restore, 'read_image', out_of_memory_on_huge)
    assert run_demo('--task', 'Deblurring', '--input_dir', folder, '--result_dir', tmp_path / 'out', '--weights',
                    tiny_weights) == 1
    captured = capsys.readouterr()
    assert 'huge.png: not enough memory to read it (Unable to allocate 2.79 GiB' in captured.err
    assert '2 of 3 images restored' in captured.out
    assert sorted(os.listdir(tmp_path / 'out')) == ['a.png', 'z.png']


def test_a_bmp_of_negative_width_is_damaged_not_huge(tmp_path):
    ok, encoded = cv2.imencode('.bmp', rgb8(16, 8))
    data = bytearray(encoded.tobytes())
    assert struct.unpack_from('<ii', data, 18) == (8, 16)  # BITMAPINFOHEADER width, height
    struct.pack_into('<i', data, 18, -8)
    path = tmp_path / 'negative.bmp'
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r'negative.bmp: the file is damaged .*impossible size, -8x16\)'):
        read_image(str(path))


def test_a_pipe_as_the_input_is_named_a_pipe(tmp_path, tiny_weights, capsys):
    os.mkfifo(tmp_path / 'fifo')
    assert run_demo('--task', 'Deblurring', '--input_dir', tmp_path / 'fifo', '--result_dir', tmp_path / 'out',
                    '--weights', tiny_weights) == 2
    err = capsys.readouterr().err
    assert f'{tmp_path / "fifo"} is not a regular file (a pipe' in err and 'does not exist' not in err, err


def test_a_progressive_jpeg_repeating_its_scans_is_refused_before_decoding(tmp_path, monkeypatch):
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(rgb8(64, 64)).save(buf, 'JPEG', progressive=True, quality=90)
    data = buf.getvalue()
    scans = data.count(b'\xff\xda')
    assert 2 <= scans <= 20  # what an encoder writes
    fine = tmp_path / 'fine.jpg'
    fine.write_bytes(data)
    assert read_image(str(fine))[0].shape == (64, 64, 3)
    # The last scan (from its SOS marker to the EOI marker) written 300 times over.
    last = data.rindex(b'\xff\xda')
    repeated = tmp_path / 'repeated.jpg'
    repeated.write_bytes(data[:last] + data[last:-2] * 300 + data[-2:])

    def never(*args):
        raise AssertionError('decoded')
    monkeypatch.setattr(cv2, 'imdecode', never)
    with pytest.raises(ValueError, match=rf'repeated.jpg is a JPEG of {scans - 1 + 300} scans .* more than 256 '
                                         'are refused'):
        read_image(str(repeated))


def test_the_web_page_names_an_upload_it_has_no_memory_for(tmp_path, monkeypatch):
    path = tmp_path / 'big.png'
    write_test_image(path, rgb8(8, 8))

    def out_of_memory(*args):
        raise MemoryError('Unable to allocate 2.79 GiB for an array')
    monkeypatch.setattr(uploads, 'read_image', out_of_memory)
    with pytest.raises(uploads.AppError, match='not enough memory to read big.png; try a smaller image'):
        uploads.restore(str(path), 'Deblurring', uploads.Models.from_settings(device='cpu'), str(tmp_path / 'out'))
