"""Turn a training checkpoint into a bundled release file: fp16 tensors, the task, the model configuration.

    python scripts/bundle_weights.py --task Denoising \\
        --checkpoint checkpoints/Denoising/models/compact_synthetic/model_latest.pth
    # -> pretrained_models/synthetic/model_denoising_synthetic.pth

The file loads with torch.load(weights_only=True) and utils.files.checkpoint.build_model,
which builds the recorded configuration and casts the tensors back to float32. With
--format safetensors it is a .safetensors file (chaiNNer, traiNNer-redux), the task and the
model configuration in its metadata; every loader of this project reads it the same way.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from MPRNet import PRESETS  # noqa: E402
from utils.files.checkpoint import build_model  # noqa: E402
from utils.inference.cli import run_main, task_type  # noqa: E402
from utils.files.weights import WEIGHT_FORMATS, bundle_checkpoint, bundled_path  # noqa: E402


def bundle(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--task', required=True, type=task_type, metavar='|'.join(PRESETS),
                        help='the task the checkpoint was trained for')
    parser.add_argument('--checkpoint', required=True, help="a training checkpoint of this project's train.py")
    parser.add_argument('--out', default=None,
                        help='file to write (default: pretrained_models/synthetic/model_<task>_synthetic.pth, '
                             'or .safetensors with --format safetensors)')
    parser.add_argument('--format', default='pth', choices=WEIGHT_FORMATS,
                        help='pth (torch.save, the default) or safetensors (cannot run code on load; chaiNNer)')
    parser.add_argument('--overwrite', action='store_true', help='replace the output file if it exists')
    args = parser.parse_args(argv)
    out = args.out or os.path.splitext(bundled_path(args.task))[0] + '.' + args.format
    if os.path.exists(out) and not args.overwrite:
        raise FileExistsError(f'{out} exists; pass --overwrite to replace it')
    release = bundle_checkpoint(args.checkpoint, out, args.task, fmt=args.format)
    count = sum(p.numel() for p in build_model(args.task, out).parameters())  # the shared PReLU counted once
    print(f'{out}: {args.task}, epoch {release["epoch"]}, {count:,} parameters, '
          f'{os.path.getsize(out) / 2 ** 20:.2f} MiB')


if __name__ == '__main__':
    sys.exit(run_main(bundle))
