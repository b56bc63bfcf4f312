"""Train MPRNet for deblurring on GoPro,
with the published recipe of Deblurring/training.yml.

Paths in the config are relative to the current directory; the bundled
training.yml expects to be run from the repository root:

    python Deblurring/train.py                                   # one GPU, or the CPU
    torchrun --nproc_per_node 4 Deblurring/train.py              # 4 GPUs; OPTIM.BATCH_SIZE stays the global batch
    python Deblurring/train.py --device cpu OPTIM.NUM_EPOCHS 10  # KEY VALUE overrides come last
    python Deblurring/train.py TRAINING.RESUME True              # continue the session's model_latest.pth
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repository root: MPRNet.py, dataset_RGB.py, utils/

from utils.config import add_config_arguments  # noqa: E402
from utils.engine import add_run_arguments, train_from_args  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, default_config=os.path.join(HERE, 'training.yml'))
    add_run_arguments(parser)
    return train_from_args(parser.parse_args(argv))


if __name__ == '__main__':
    main()
