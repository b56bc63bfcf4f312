"""app.py: the restore function without a browser, then the page itself in headless Chromium.

The browser test starts ``python app.py`` on a free loopback port with tiny
weights made here, uploads a bundled sample, restores it, downloads the PNG
and saves a screenshot (to MPRNET_APP_SCREENSHOT if set, else a temporary
folder). MPRNET_APP_WEIGHTS_ROOT=. runs it with the repository's own weights
instead, e.g. for the screenshot in docs/INTEGRATIONS.md:

    MPRNET_APP_WEIGHTS_ROOT=. MPRNET_APP_SCREENSHOT=docs/images/app.png MPRNET_APP_SAMPLE=rain_astronaut \\
        python -m pytest -q tests/test_app.py -k browser
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import app
from utils.inference import uploads
from helpers import TINY, png_header_only, rgb8, save_weights, write_test_image
from MPRNet import PRESETS, MPRNet
from utils.files.image_io import read_image
from utils.files.weights import bundled_path

pytestmark = pytest.mark.usefixtures('one_torch_thread')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_root(folder, tasks=tuple(PRESETS)):
    """A weights root holding tiny 'bundled' checkpoints for `tasks`; returns its path."""
    for seed, task in enumerate(tasks):
        torch.manual_seed(seed)
        model = MPRNet(**dict(TINY, num_cab=1))
        path = bundled_path(task, str(folder))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_weights(path, model)
    return str(folder)


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    return make_root(tmp_path_factory.mktemp('weights'))


@pytest.fixture(scope='module')
def models(root):
    return uploads.Models.from_settings(device='cpu', root=root)


# ---------------------------------------------------------------------------- restore(), no browser


def test_restores_an_image_and_says_how(tmp_path, models):
    src = write_test_image(tmp_path / 'photo.png', rgb8(37, 45))
    result = uploads.restore(src, 'deblurring', models, str(tmp_path / 'out'))
    assert os.path.basename(result.png) == 'photo_deblurring.png'
    out, bit_depth = read_image(result.png)
    assert out.shape == (37, 45, 3) and bit_depth == 8
    assert result.before.shape == result.after.shape == (37, 45, 3) and result.after.dtype == np.uint8
    assert not np.array_equal(result.before, result.after)
    assert result.kind == 'bundled'
    assert 'Deblurring' in result.info and 'bundled weights' in result.info
    assert f'{result.seconds:.2f} s' in result.info and '37' in result.info


def test_16_bit_in_gives_16_bit_out(tmp_path, models):
    src = write_test_image(tmp_path / 'deep.png', rgb8(24, 16).astype(np.uint16) * 257)
    result = uploads.restore(src, 'Denoising', models, str(tmp_path / 'out'))
    assert cv2.imread(result.png, cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert result.bit_depth == 16 and '16-bit PNG out' in result.info


def test_gray_palette_and_alpha_are_converted_with_a_note(tmp_path, models):
    gray = write_test_image(tmp_path / 'gray.png', rgb8(16, 16)[:, :, 0])
    alpha = write_test_image(tmp_path / 'alpha.png', np.dstack([rgb8(16, 24), np.full((16, 24), 9, np.uint8)]))
    palette = str(tmp_path / 'palette.png')
    Image.fromarray(rgb8(12, 20)).convert('P').save(palette)
    notes = {'gray': 'grayscale', 'alpha': 'alpha channel was dropped', 'palette': 'palette image'}
    for path in (gray, alpha, palette):
        result = uploads.restore(path, 'Deraining', models, str(tmp_path / 'out'))
        assert notes[os.path.basename(path)[:-4]] in result.info
        assert cv2.imread(result.png, cv2.IMREAD_UNCHANGED).shape[2] == 3


@pytest.mark.parametrize('name, content, message', [
    ('notes.png', b'not an image', 'cannot decode image notes.png: the file is damaged or not an image'),
    ('notes.txt', b'not an image', 'notes.txt is not a supported image; use one of: .png'),
])
def test_bad_files_get_the_demos_message(tmp_path, models, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(uploads.AppError) as err:
        uploads.restore(str(path), 'Deblurring', models, str(tmp_path / 'out'))
    assert message in str(err.value) and str(tmp_path) not in str(err.value)


def test_no_file_huge_image_and_unknown_task(tmp_path, models):
    with pytest.raises(uploads.AppError, match='no image yet'):
        uploads.restore(None, 'Deblurring', models, str(tmp_path))
    src = write_test_image(tmp_path / 'big.png', rgb8(40, 50))
    with pytest.raises(uploads.AppError, match=r'big.png is 50x40 \(0.0 megapixels\); this page restores up to '
                                           r'0.001 \(app.py --max_megapixels\)'):
        uploads.restore(src, 'Deblurring', models, str(tmp_path), max_megapixels=0.001)
    with pytest.raises(uploads.AppError, match='unknown task'):
        uploads.restore(src, 'Dehazing', models, str(tmp_path))
    # A 200-megapixel PNG is refused from its header: its pixel data is a truncated stub that
    # would fail to decode, so the message proves nothing was decoded.
    huge = tmp_path / 'huge.png'
    huge.write_bytes(png_header_only(20000, 10000))
    with pytest.raises(uploads.AppError, match=r'huge.png is 20000x10000 \(200.0 megapixels\)'):
        uploads.restore(str(huge), 'Deblurring', models, str(tmp_path))


def test_missing_weights_name_the_file_to_get(tmp_path):
    models = uploads.Models.from_settings(device='cpu', root=make_root(tmp_path / 'root', tasks=('Deblurring',)))
    src = write_test_image(tmp_path / 'x.png', rgb8(16, 16))
    with pytest.raises(uploads.AppError, match='no official weights for Denoising'):
        uploads.restore(src, 'Denoising', models, str(tmp_path / 'out'))
    status = models.status()
    assert status[0].startswith('Deblurring: bundled weights') and 'unavailable' in status[2]


@pytest.mark.slow
def test_tiles_report_progress(tmp_path, root):
    models = uploads.Models.from_settings(device='cpu', root=root, tile=16, tile_overlap=8)
    src = write_test_image(tmp_path / 'wide.png', rgb8(30, 50))
    calls = []
    result = uploads.restore(src, 'Deblurring', models, str(tmp_path / 'out'), progress=lambda *a: calls.append(a))
    # The 30x50 image pads to 32x56; 16-px tiles overlapping by 8 start every 8 px: 3 rows x 6 columns.
    total = 3 * 6
    assert total > 1 and calls == [(k, total) for k in range(1, total + 1)]
    assert 'overlapping 16-px tiles' in result.info


@pytest.mark.slow
def test_exact_and_max_memory_reach_the_model(tmp_path, root):
    exact = uploads.Models.from_settings(device='cpu', root=root, precision='exact').get('Deblurring')
    assert exact.mode == 'exact' and exact.restorer.dtype is None and not exact.restorer.fast
    # 200x120 RGB needs more than the smallest budget the options take (1 MiB) of activations: it goes in tiles.
    small_budget = uploads.Models.from_settings(device='cpu', root=root, max_memory_gb=2 ** -10)
    result = uploads.restore(write_test_image(tmp_path / 'a.png', rgb8(120, 200)), 'Deblurring', small_budget,
                             str(tmp_path / 'o'))
    assert 'tiles' in result.info
    whole = uploads.restore(write_test_image(tmp_path / 'b.png', rgb8(30, 50)), 'Deblurring',
                            uploads.Models.from_settings(device='cpu', root=root), str(tmp_path / 'o'))
    assert 'tiles' not in whole.info


def test_bad_options_are_one_line_errors(capsys, monkeypatch):
    args = app.parse_args([])
    assert (args.host, args.port, args.share, args.weights) == ('127.0.0.1', app.DEFAULT_PORT, False, 'auto')
    with pytest.raises(uploads.AppError, match='tile size must be a positive multiple of 8'):
        uploads.Models.from_settings(device='cpu', tile=12)
    assert app.main(['--device', 'cpu', '--exact', '--precision', 'bf16']) == 2
    assert '--exact means fp32 without --fast' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        app.parse_args(['--weights', 'some.pth'])  # the page looks up weights per task: auto, official, bundled
    monkeypatch.setitem(sys.modules, 'gradio', None)  # import now raises ImportError
    assert app.main(['--device', 'cpu']) == 2
    assert "pip install -e '.[app]'" in capsys.readouterr().err


def test_samples_are_offered_with_their_task():
    examples = uploads.sample_examples()
    assert examples and all(task in PRESETS for _, task in examples)
    assert all(os.path.isfile(path) for path, _ in examples)


# ---------------------------------------------------------------------------- the page in a browser


def find_chromium():
    """(chromium, chromedriver) paths, or a reason to skip."""
    browser = shutil.which('chromium') or shutil.which('chromium-browser')
    driver = shutil.which('chromedriver')
    missing = [name for name, path in (('chromium', browser), ('chromedriver', driver)) if not path]
    for module in ('gradio', 'selenium'):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"{module} (pip install -e '.[app]')")
    return browser, driver, missing


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_for_page(url, proc, log, timeout=90):
    """Wait until the app answers on `url`; fail with its log if it exits or never answers."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f'app.py exited with {proc.returncode}:\n{open(log).read()[-3000:]}')
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f'app.py did not answer on {url} within {timeout} s:\n{open(log).read()[-3000:]}')


def start_browser(browser, driver, downloads):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu',
                '--window-size=1280,1000', '--hide-scrollbars'):
        options.add_argument(arg)
    options.add_experimental_option('prefs', {'download.default_directory': downloads,
                                              'download.prompt_for_download': False})
    return webdriver.Chrome(service=Service(driver), options=options)


def wait_for_download(folder, timeout=30):
    """The one finished file in `folder`. Chromium first writes a hidden .org.chromium.* file, then
    <name>.crdownload, then renames it: only a visible file with neither in progress is finished."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        names = os.listdir(folder)
        in_progress = [f for f in names if f.startswith('.') or f.endswith(('.crdownload', '.tmp'))]
        done = [f for f in names if f not in in_progress]
        if done and not in_progress:
            return os.path.join(folder, done[0])
        time.sleep(0.2)
    pytest.fail(f'no download in {folder} after {timeout} s')


def test_browser_restores_and_downloads_a_sample(tmp_path):
    browser, driver_path, missing = find_chromium()
    if missing:
        pytest.skip('no browser test: missing ' + ', '.join(missing) + ' (Debian: apt-get install chromium '
                    'chromium-driver; or bash scripts/ci_extras.sh)')
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    os.environ.setdefault('SE_OFFLINE', 'true')  # Selenium Manager must not fetch drivers
    root = os.environ.get('MPRNET_APP_WEIGHTS_ROOT') or make_root(tmp_path / 'root')
    shot = os.environ.get('MPRNET_APP_SCREENSHOT') or str(tmp_path / 'app.png')
    examples = uploads.sample_examples()
    wanted = os.environ.get('MPRNET_APP_SAMPLE', '')  # e.g. rain_astronaut, for the screenshot in the docs
    sample, task = next((e for e in examples if os.path.basename(e[0]).startswith(wanted)), examples[0])
    port, log, downloads = free_port(), str(tmp_path / 'app.log'), str(tmp_path / 'downloads')
    os.makedirs(downloads)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    with open(log, 'w') as out:
        proc = subprocess.Popen([sys.executable, 'app.py', '--port', str(port), '--device', 'cpu',
                                 '--weights_root', os.path.abspath(root)],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    driver = None
    try:
        url = f'http://127.0.0.1:{port}/'
        wait_for_page(url, proc, log)
        driver = start_browser(browser, driver_path, downloads)
        wait = WebDriverWait(driver, 90)
        driver.get(url)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, '#input-file input[type=file]')))
        driver.find_element(By.CSS_SELECTOR, '#input-file input[type=file]').send_keys(sample)
        wait.until(ec.text_to_be_present_in_element((By.ID, 'info'), 'Ready'))
        driver.find_element(By.XPATH, f"//*[@id='task']//label[contains(., '{task}')]").click()
        driver.find_element(By.ID, 'restore').click()
        link = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, '#result-file a[download]')))
        assert 'restored in' in driver.find_element(By.ID, 'info').text
        os.makedirs(os.path.dirname(os.path.abspath(shot)), exist_ok=True)
        driver.save_screenshot(shot)
        link.click()
        downloaded = wait_for_download(downloads)
        assert os.path.basename(downloaded) == uploads.output_name(sample, task)
        (before, _), (after, _) = read_image(sample), read_image(downloaded)
        assert after.shape == before.shape and not np.array_equal(after, before)
        assert os.path.getsize(shot) > 10_000

        # A file that is not an image gets the demo's message on the page, not a stack trace.
        bad = tmp_path / 'broken.png'
        bad.write_bytes(b'not an image')
        driver.find_element(By.CSS_SELECTOR, '#input-file button[aria-label=Clear]').click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, '#input-file input[type=file]')))
        driver.find_element(By.CSS_SELECTOR, '#input-file input[type=file]').send_keys(str(bad))
        wait.until(ec.text_to_be_present_in_element((By.ID, 'info'), 'broken.png'))
        driver.find_element(By.ID, 'restore').click()
        wait.until(ec.text_to_be_present_in_element((By.ID, 'info'), 'Could not restore'))
        text = driver.find_element(By.ID, 'info').text
        assert 'cannot decode image broken.png' in text and 'Traceback' not in driver.page_source
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
