"""Shared fixtures: a tiny MPRNet that runs in milliseconds on CPU, the device of the model tests.

TORCH_DEVICE=cuda runs the model, restorer and fast-path tests (those taking the ``device``
fixture) on a GPU with the same assertions; the default is cpu.
"""
import random

import numpy as np
import pytest
import torch

from helpers import TINY, save_weights, torch_device


def pytest_configure(config):
    device = torch_device()
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise pytest.UsageError(f'TORCH_DEVICE={device} but CUDA is not available')
        # The fp32 bounds (1e-5) are those of true fp32: TF32 convolutions round inputs to 10 bits,
        # and cuDNN may pick another algorithm from one call to the next without determinism.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.deterministic = True
    elif device.type != 'cpu':
        raise pytest.UsageError(f'TORCH_DEVICE must be cpu or cuda[:N], got {device}')


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
def device() -> torch.device:
    """Where the model, restorer and fast-path tests compute: TORCH_DEVICE, default cpu."""
    return torch_device()


@pytest.fixture
def tiny_config():
    return dict(TINY)


@pytest.fixture
def tiny_model():
    from MPRNet import MPRNet
    return MPRNet(**TINY).eval()


@pytest.fixture
def tiny_weights(tmp_path, tiny_model):
    """The tiny model saved with its configuration (what build_model reads), as a path."""
    return save_weights(tmp_path / 'tiny.pth', tiny_model)

