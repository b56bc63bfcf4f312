"""The bundled compact weights: they load strictly, the demo finds them, and they restore.

Margins: on the bundled samples' clean sources (scikit-image photographs,
held out of training), a 128x128 centre crop degraded as samples/make_samples.py
degrades it. The asserted gains are about half of those measured when the
weights were bundled (listed at MARGINS), so the test fails when the weights
stop restoring, not on small numerical changes.
"""
import importlib.util
import math
import os

import numpy as np
import pytest
import torch

from MPRNet import PRESETS
from utils.files.checkpoint import build_model, load_checkpoint_file
from utils.inference.restorer import Restorer
from utils.files.weights import REPO_ROOT, bundled_path, official_paths, resolve_weights

pytestmark = pytest.mark.usefixtures('one_torch_thread')
CROP = 128
# (sample name, smallest PSNR gain in dB over the degraded crop): about half of the gains measured
# when the weights were bundled (Deblurring 0.83 dB, Deraining 1.67 dB, Denoising 9.07 dB).
MARGINS = {'Deblurring': ('blur_coffee', 0.4), 'Deraining': ('rain_astronaut', 0.8),
           'Denoising': ('noise_coffee', 4.5)}


def load_make_samples():
    spec = importlib.util.spec_from_file_location('make_samples', os.path.join(REPO_ROOT, 'samples', 'make_samples.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(1.0 / float(np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.mark.parametrize('task', list(PRESETS))
def test_bundled_file_is_small_fp16_and_loads_strictly(task):
    path = bundled_path(task)
    assert os.path.isfile(path), f'{path} is missing: the demo has no fallback weights'
    assert os.path.getsize(path) < 5 * 2 ** 20
    release = load_checkpoint_file(path)  # weights_only=True
    assert release['task'] == task
    assert {v.dtype for v in release['state_dict'].values()} == {torch.float16}
    model = build_model(task, path)  # strict key and shape match
    assert model.config == release['model_config'] and model.preset_name() is None
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize('task', list(PRESETS))
def test_demo_lookup_uses_the_official_file_when_present_else_the_bundled_one(task):
    official = [p for p in official_paths(task) if os.path.isfile(p)]
    expected = (official[0], 'official') if official else (bundled_path(task), 'bundled')
    assert resolve_weights(task, 'auto') == expected
    assert resolve_weights(task, 'bundled') == (bundled_path(task), 'bundled')


@pytest.mark.parametrize('task', list(PRESETS))
@pytest.mark.slow
def test_bundled_model_restores_its_sample(task):
    make_samples = load_make_samples()
    name, margin = MARGINS[task]
    _, _, photo, kind, params = next(s for s in make_samples.SAMPLES if s[1] == name)
    clean = make_samples.resize_long_side(make_samples.load_photo(photo), make_samples.LONG_SIDE)
    degraded = make_samples.degrade(clean, kind, make_samples.sample_rng(0, name), **params)
    top, left = (clean.shape[0] - CROP) // 2, (clean.shape[1] - CROP) // 2
    clean, degraded = (img[top:top + CROP, left:left + CROP] for img in (clean, degraded))
    restorer = Restorer(build_model(task, bundled_path(task)))
    x = torch.from_numpy(np.ascontiguousarray(degraded.transpose(2, 0, 1)))[None]
    restored = restorer(x)[0].permute(1, 2, 0).numpy()
    gain = psnr(restored, clean) - psnr(degraded, clean)
    assert gain > margin, f'{task}: {gain:.2f} dB gain on {name}, expected more than {margin} dB'
