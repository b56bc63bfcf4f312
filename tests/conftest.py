"""Shared fixtures: a tiny MPRNet configuration that runs in milliseconds on CPU."""
import random

import numpy as np
import pytest
import torch

# Same structure as the presets, narrow widths: every code path, little compute.
TINY = dict(n_feat=8, scale_unetfeats=4, scale_orsnetfeats=4, num_cab=2)


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture
def tiny_config():
    return dict(TINY)


@pytest.fixture
def tiny_model():
    from MPRNet import MPRNet
    return MPRNet(**TINY).eval()
