"""Train MPRNet for denoising on SIDD-Medium patches,
with the published recipe of Denoising/training.yml (python train.py --help for the usage)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
from utils.training.cli import script_main  # noqa: E402

main = script_main(__file__, __doc__)  # main(argv=None): train with the training.yml beside this file

if __name__ == '__main__':
    main()
