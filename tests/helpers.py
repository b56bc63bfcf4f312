"""What many test files share: the tiny model configuration, saving it, writing images, running demo.py.

conftest.py turns these into fixtures; test files import them by name (``from helpers import TINY``).
"""
import os
import struct
import zlib
from typing import List, Optional

import cv2
import numpy as np
import torch

# Same structure as the presets, narrow widths: every code path, little compute.
TINY = dict(n_feat=8, scale_unetfeats=4, scale_orsnetfeats=4, num_cab=2)


def tiny_keys(**changes) -> List[str]:
    """TINY (with `changes`, e.g. num_cab=1) as train.py's KEY VALUE overrides: ['MODEL.N_FEAT', '8', ...]."""
    return [item for key, value in dict(TINY, **changes).items() for item in (f'MODEL.{key.upper()}', str(value))]


def save_weights(path, model: torch.nn.Module, prefix: str = '') -> str:
    """`model` saved with its configuration (what build_model reads); `prefix` 'module.' gives
    DataParallel's keys. Returns the path as a string."""
    state = {prefix + k: v for k, v in model.state_dict().items()}
    torch.save({'state_dict': state, 'model_config': dict(model.config)}, path)
    return str(path)


def rgb8(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A random 8-bit h x w x 3 image, the same for the same seed."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_test_image(path, array: np.ndarray) -> str:
    """`array` (OpenCV's channel order) encoded by OpenCV as `path`'s extension says, written by
    Python: cv2.imwrite crashes on names that are not UTF-8. Returns the path as a string."""
    ok, encoded = cv2.imencode(os.path.splitext(str(path))[1], array)
    assert ok, path
    with open(path, 'wb') as f:
        f.write(encoded.tobytes())
    return str(path)


def run_demo(*argv) -> int:
    """demo.py's main in this process with `argv` (any objects, passed as strings); its exit code."""
    import demo
    return demo.main([str(a) for a in argv])


def png_header_only(width: int, height: int, chunks_after_idat: bytes = b'') -> bytes:
    """A PNG of width x height whose one IDAT holds a few bytes instead of the pixels: decoding it
    fails, so code that gets its size or orientation from it did not decode it."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'\0' * 64)) + chunks_after_idat + chunk(b'IEND', b''))


def torch_device(name: Optional[str] = None) -> torch.device:
    """The device of the model, restorer and fast-path tests: TORCH_DEVICE (default cpu)."""
    return torch.device(name or os.environ.get('TORCH_DEVICE') or 'cpu')


def interrupt_training_in_epoch(monkeypatch, epoch: int) -> None:
    """Make Trainer.train_step raise KeyboardInterrupt at the first step of `epoch` (a run
    stopped by Ctrl-C part-way through it); monkeypatch.undo() restores the real step."""
    from utils.training.trainer import Trainer
    real_step = Trainer.train_step

    def interrupted(self, target, input_, at_epoch, step):
        if at_epoch == epoch:
            raise KeyboardInterrupt
        return real_step(self, target, input_, at_epoch, step)

    monkeypatch.setattr(Trainer, 'train_step', interrupted)
