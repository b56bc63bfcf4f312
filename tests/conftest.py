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
def one_torch_thread():
    """One intra-op thread for tiny models: they gain nothing from threads, and on a shared,
    busy 2-core machine OpenMP threads waiting for each other cost up to ten-fold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_config():
    return dict(TINY)


@pytest.fixture
def tiny_model():
    from MPRNet import MPRNet
    return MPRNet(**TINY).eval()
