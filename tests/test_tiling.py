"""Tiled inference: tile layout, blending weights, exactness, MPRNet's tiled error, memory-driven tiling."""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from benchmarks.tiling_measure import LiveTensorPeak, smooth_image
from MPRNet import PRESETS
from utils.inference import tiling
from utils.inference.restorer import OutOfMemoryError, Restorer, TilePlan
from utils.inference.tiling import axis_weights, estimate_peak_bytes, tile_starts, tile_windows

pytestmark = pytest.mark.usefixtures('one_torch_thread')


class PerPixel(nn.Module):
    """1x1 convolutions only: each output pixel depends on its input pixel alone, so tiling
    cannot change the result. Records the largest input it was given."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 1), nn.ReLU(), nn.Conv2d(16, 3, 1), nn.Sigmoid())
        self.largest = (0, 0)

    def forward(self, x):
        self.largest = max(self.largest, tuple(x.shape[-2:]))
        return [self.body(x)]


class OutOfMemoryAbove(PerPixel):
    """Per-pixel model that raises an out-of-memory error for inputs of more than `limit` pixels."""

    def __init__(self, limit):
        super().__init__()
        self.limit = limit

    def forward(self, x):
        if x.shape[-2] * x.shape[-1] > self.limit:
            raise OutOfMemoryError(f'pretend out of memory for {tuple(x.shape)}')
        return super().forward(x)


# ----------------------------------------------------------------------------- layout

def test_tile_starts_hand_computed():
    # 200 px, tiles of 64: starts lie in [0, 136]; steps of at most 64 - 32 = 32 need
    # ceil(136 / 32) = 5 steps, spread evenly: 27.2 k rounded down to multiples of 8.
    assert tile_starts(200, 64, 32) == [0, 24, 48, 80, 104, 136]
    assert tile_starts(64, 64, 32) == [0]      # exactly one tile
    assert tile_starts(48, 64, 32) == [0]      # side shorter than a tile: one tile of the side
    assert tile_starts(72, 64, 0) == [0, 8]    # no overlap asked, but the last tile must end at 72


@pytest.mark.parametrize('length,tile,overlap', [(200, 64, 32), (136, 64, 16), (72, 64, 0), (96, 64, 56),
                                                 (1000, 256, 32), (8, 8, 0), (520, 16, 8)])
def test_tile_starts_cover_with_required_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    assert all(s % 8 == 0 for s in starts) and size % 8 == 0
    assert starts[0] == 0 and starts[-1] + size == length
    gaps = np.diff(starts)
    assert all(gaps > 0)
    assert all(size - g >= overlap for g in gaps)  # neighbours overlap at least as asked


@pytest.mark.parametrize('tile,overlap', [(60, 8), (0, 0), (64, 57), (64, -1)])
def test_bad_tile_options_are_refused(tile, overlap):
    with pytest.raises(ValueError, match='tile'):
        tile_starts(128, tile, overlap)
    with pytest.raises(ValueError, match='tile'):
        Restorer(PerPixel(), tiles=TilePlan(tile, overlap))


def test_side_must_be_padded_first():
    with pytest.raises(ValueError, match='multiple of 8'):
        tile_starts(100, 64, 16)


@pytest.mark.parametrize('height,width,tile,overlap', [(200, 136, 64, 32), (72, 48, 64, 0), (96, 96, 64, 56),
                                                       (40, 264, 32, 8), (16, 16, 64, 32)])
def test_weights_sum_to_one_everywhere(height, width, tile, overlap):
    total = torch.zeros(height, width, dtype=torch.float64)
    for rows, cols, weight in tile_windows(height, width, tile, overlap):
        h, w = weight.shape
        assert h % 8 == 0 and w % 8 == 0 and h <= tile and w <= tile
        assert rows.stop <= height and cols.stop <= width
        assert weight.min() >= 0
        total[rows, cols] += weight.double()
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6)


def test_overlap_is_a_linear_cross_fade():
    # Tiles [0, 64) and [32, 96): 32 px overlap. The outer quarter (8 px) of the overlap is
    # left to the other tile and the middle 16 px fade linearly, at pixel centres x + 0.5:
    # the first tile's weight is (56 - (x + 0.5)) / 16, clipped to [0, 1].
    weights = axis_weights(96, [0, 32], 64)
    x = np.arange(64)
    expected_first = np.clip((55.5 - x) / 16, 0, 1)
    assert np.allclose(weights[0], expected_first, atol=1e-5)
    # The second tile's pixel j is the image's pixel 32 + j.
    assert np.allclose(weights[1][:32], 1 - expected_first[32:], atol=1e-5)
    assert np.allclose(weights[1][32:], 1, atol=1e-5)
    # No seam: neighbouring pixels' weights differ by at most one ramp step.
    assert np.abs(np.diff(weights[0])).max() <= 1 / 16 + 1e-6


# ----------------------------------------------------------------------------- results

@pytest.mark.parametrize('size', [(33, 47), (64, 40)])
@pytest.mark.parametrize('tile,overlap', [(8, 0), (16, 8), (24, 16), (32, 0), (32, 24)])
def test_tiled_equals_whole_for_a_per_pixel_model(size, tile, overlap, device):
    model = PerPixel()
    x = torch.rand(2, 3, *size)
    whole = Restorer(model, device)(x)
    model.largest = (0, 0)
    tiled = Restorer(model, device, tiles=TilePlan(tile, overlap))(x)
    assert tiled.shape == x.shape
    assert (tiled - whole).abs().max().item() < 1e-6
    with torch.no_grad():
        assert torch.allclose(tiled, model.body(x.to(device)), atol=1e-6)
    assert model.largest[0] <= tile and model.largest[1] <= tile  # memory follows the tile, not the image


def test_mprnet_tiled_close_to_whole(tiny_model, device):
    """Tiled MPRNet is not exactly the whole-image MPRNet, for two reasons:
    - stage 1 splits its input into quadrants and stage 2 into halves: a tile is split at
      its own midlines instead of the image's, and the U-Net features of each quadrant
      depend on its whole extent (three levels of 3x3 convolutions at 1/4 resolution);
    - the receptive field reaches past the tile edge (zero padding there instead of image),
      and channel attention averages over the tile instead of the image.
    The same causes make MPRNet's output depend on how an image is framed, so the yardstick
    is how much the whole-image output changes when the image is framed 8 px larger.
    Measured with the seeded tiny random-weights model, 96x96, tiles of 64, default overlap:
    tiled vs whole max 0.32, mean 0.021; framing by 8 px: max 0.34, mean 0.010."""
    x = smooth_image(96)
    restorer = Restorer(tiny_model, device)
    whole = restorer(x)
    tiled = Restorer(tiny_model, device, tiles=TilePlan(64))(x)  # default tile_overlap: 32
    reframed = restorer(F.pad(x, (8, 8, 8, 8), mode='reflect'))[..., 8:-8, 8:-8]
    diff, framing = (tiled - whole).abs(), (reframed - whole).abs()
    print(f'tiled vs whole: max {diff.max():.4f} mean {diff.mean():.4f}; '
          f'framing: max {framing.max():.4f} mean {framing.mean():.4f}')
    assert diff.max() < 0.4 and diff.mean() < 0.03
    assert diff.max() < 1.2 * framing.max() and diff.mean() < 3 * framing.mean()


# ----------------------------------------------------------------------------- memory

def test_memory_estimate_matches_a_measured_pass(tiny_model):
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode(), LiveTensorPeak() as meter:
        del tiny_model(x)[0]
    estimate = estimate_peak_bytes(tiny_model, 64, 64)
    assert meter.peak <= estimate <= 1.25 * meter.peak


def test_memory_estimate_explains_the_published_failure():
    # The published demo runs out of memory on a 2048x2048 photo on a 24 GB GPU.
    deblur = nn.Module()
    deblur.config = dict(PRESETS['Deblurring'])
    assert estimate_peak_bytes(deblur, 2048, 2048) > 24e9
    assert estimate_peak_bytes(deblur, 256, 256) < 1e9
    assert estimate_peak_bytes(PerPixel(), 256, 256) is None  # nothing to estimate from


def test_auto_tiles_when_memory_is_short(monkeypatch):
    model = PerPixel()
    model.config = dict(n_feat=8, scale_orsnetfeats=4)  # 12 x 12 channels x 4 bytes = 576 bytes per pixel
    x = torch.rand(1, 3, 128, 128)
    # 0.8 of the free memory holds exactly a 64x64 tile.
    monkeypatch.setattr(tiling, 'free_memory_bytes', lambda device: 576 * 64 * 64 / 0.8)
    restorer = Restorer(model, tiles=TilePlan(auto=True))
    out, how = restorer.restore(x)
    model = restorer.model  # the Restorer runs its own copy in eval mode
    assert how.tile == 64 and model.largest == (64, 64)
    assert 'GiB' in how.reason
    with torch.no_grad():
        assert torch.allclose(out, model.body(x), atol=1e-6)
    # With room to spare the whole image runs at once.
    monkeypatch.setattr(tiling, 'free_memory_bytes', lambda device: 1e12)
    model.largest = (0, 0)
    assert restorer.restore(x).tiling.tile is None and model.largest == (128, 128)


def test_out_of_memory_is_retried_in_tiles():
    model = OutOfMemoryAbove(limit=64 * 64)
    x = torch.rand(1, 3, 128, 120)
    with pytest.raises(OutOfMemoryError):
        Restorer(model)(x)  # the exact path never tiles behind the caller's back
    restorer = Restorer(model, tiles=TilePlan(auto=True))
    out, how = restorer.restore(x)
    assert how.tile == 64 and 'out of memory' in how.reason
    with torch.no_grad():
        assert torch.allclose(out, model.body(x), atol=1e-6)


def test_out_of_memory_gives_up_below_the_smallest_tile():
    restorer = Restorer(OutOfMemoryAbove(limit=8 * 8), tiles=TilePlan(auto=True))
    with pytest.raises(OutOfMemoryError, match='smaller tiles'):
        restorer(torch.rand(1, 3, 128, 128))


def test_a_tile_plan_is_checked_when_it_is_made_and_cannot_change():
    assert TilePlan() == TilePlan(None, 32, False, None)  # whole images: the exact path
    with pytest.raises(ValueError, match='tile overlap must be at least 0, got -1'):
        TilePlan(overlap=-1)
    with pytest.raises(ValueError, match='memory budget must be a positive number of bytes, got 0'):
        TilePlan(auto=True, memory_budget=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        TilePlan().size = 64
