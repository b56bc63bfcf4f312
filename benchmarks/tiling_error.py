"""How far tiled inference is from whole-image inference, for a preset with random weights.

Prints, for one smooth test image: the max and mean |tiled - whole|, the same
for the whole image framed 8 px larger (MPRNet's own sensitivity to framing,
the yardstick for the tiling error), and the peak tensor memory of both runs.
The figures in docs/USAGE.md (large images) come from:

    python benchmarks/tiling_error.py --task Deblurring --size 256 --tile 128
    python benchmarks/tiling_error.py --task Deraining --size 256 --tile 128
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.tiling_measure import LiveTensorPeak, smooth_image  # noqa: E402  (shared with tests/test_tiling.py)
from MPRNet import MPRNet  # noqa: E402
from utils.inference.cli import task_type  # noqa: E402
from utils.inference.restorer import Restorer, TilePlan  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--task', type=task_type, default='Deblurring', help='preset (default: %(default)s)')
    p.add_argument('--size', type=int, default=256, help='side of the square test image (default: %(default)s)')
    p.add_argument('--tile', type=int, default=128, help='tile size, a multiple of 8 (default: %(default)s)')
    p.add_argument('--tile_overlap', type=int, default=32, help='tile overlap in pixels (default: %(default)s)')
    p.add_argument('--seed', type=int, default=0, help='seed of the random weights (default: %(default)s)')
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    model = MPRNet.for_task(args.task).eval()
    x = smooth_image(args.size)
    with LiveTensorPeak() as whole_mem:
        whole = Restorer(model)(x)
    with LiveTensorPeak() as tiled_mem:
        tiled = Restorer(model, tiles=TilePlan(args.tile, args.tile_overlap))(x)
    framed = Restorer(model)(F.pad(x, (8, 8, 8, 8), mode='reflect'))[..., 8:-8, 8:-8]
    d, f = (tiled - whole).abs(), (framed - whole).abs()
    print(f'{args.task} {args.size}x{args.size}, tiles {args.tile} overlap {args.tile_overlap}: '
          f'tiled vs whole max {d.max():.4f} mean {d.mean():.4f}; framed 8 px larger max {f.max():.4f} '
          f'mean {f.mean():.4f}; peak MB whole {whole_mem.peak / 2**20:.0f} tiled {tiled_mem.peak / 2**20:.0f}')


if __name__ == '__main__':
    main()
