"""Train MPRNet for denoising on SIDD-Medium patches,
with the published recipe of Denoising/training.yml.

Paths in the config are relative to the current directory; the bundled
training.yml expects to be run from this folder, as published (cd Denoising):

    python train.py                                   # one GPU, or the CPU
    torchrun --nproc_per_node 4 train.py              # 4 GPUs; OPTIM.BATCH_SIZE stays the global batch
    python train.py --device cpu OPTIM.NUM_EPOCHS 10  # KEY VALUE overrides come last
    python train.py TRAINING.RESUME True              # continue the session's model_latest.pth
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repository root: MPRNet.py, dataset_RGB.py, utils/

from utils.engine import train_main  # noqa: E402



def main(argv=None):
    """Parse the command line (or `argv`) and train; returns fit's summary."""
    return train_main(os.path.join(HERE, 'training.yml'), __doc__, argv)


if __name__ == '__main__':
    main()
