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


@pytest.fixture
def tiny_weights(tmp_path, tiny_model):
    """The tiny model saved with its configuration (what build_model reads), as a path."""
    path = tmp_path / 'tiny.pth'
    torch.save({'state_dict': tiny_model.state_dict(), 'model_config': tiny_model.config}, path)
    return str(path)


def png_header_only(width: int, height: int, chunks_after_idat: bytes = b'') -> bytes:
    """A PNG of width x height whose one IDAT holds a few bytes instead of the pixels: decoding it
    fails, so code that gets its size or orientation from it did not decode it."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'\0' * 64)) + chunks_after_idat + chunk(b'IEND', b''))
