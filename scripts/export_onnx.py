"""Export MPRNet to ONNX, with dynamic height and width, and check it against PyTorch.

    pip install -e '.[onnx]'
    python scripts/export_onnx.py --task Deblurring --out mprnet_deblurring.onnx

The graph takes ``input``: float32 RGB (N, 3, H, W) in [0, 1] and gives
``restored`` (and with ``--all_stages`` also ``stage2`` and ``stage1``), the
same size, clamped to [0, 1]: the demo's ``Restorer`` in fp32, in one graph.

Exporters (``--exporter``):

- ``torchscript`` (default): the graph reflect-pads H and W to multiples of 8
  and crops back, so any H and W of 8 pixels or more work. A few seconds.
  PyTorch has deprecated this exporter since 2.9 (it is still in 2.14).
- ``dynamo``: the torch.export-based exporter (needs onnxscript). Its graph
  takes H and W that are multiples of 8 only (the input's dimensions are named
  ``8*h8`` and ``8*w8`` and the model's description says so): pad before and
  crop after (``utils.padding``). Takes minutes on a CPU.

Every export is verified: ONNX Runtime's output against PyTorch's on two
sizes (``--check_sizes``); the largest absolute difference is printed and
must be below ``--tolerance`` (1e-4), otherwise nothing is written and the
exit code is 1. The graph is written and checked under a temporary name
beside ``--out`` and renamed only once it passes (utils.files.atomic), so a failed
or interrupted export never leaves a file, nor touches one that was there.
An existing ``--out`` is refused unless ``--overwrite``; the ``--weights``
file itself always is. Exit code 2: nothing exported (a bad option, missing
packages or weights, an output that exists).
"""
import argparse
import math
import os
import sys
import time
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils.files.atomic import OutputRefusedError, atomic_output, check_output_file  # noqa: E402
from utils.files.checkpoint import build_model  # noqa: E402
from utils.inference.cli import TASK_METAVAR, size_type, task_type  # noqa: E402
from utils.inference.restorer import Restorer  # noqa: E402
from utils.padding import MULTIPLE  # noqa: E402
from utils.files.weights import WeightsNotFoundError, resolve_weights  # noqa: E402

DEFAULT_OPSET = 18
DEFAULT_TOLERANCE = 1e-4
DEFAULT_CHECK_SIZES = ('128x128', '100x156')
EXPORT_SIZE = (64, 64)
INSTALL_HINT = "pip install -e '.[onnx]'"


class ExportError(Exception):
    """Something that stops the export; the message says what to do."""


class PaddedMPRNet(torch.nn.Module):
    """MPRNet as one graph: reflect-pad to multiples of 8, run, crop back, clamp to [0, 1].

    Returns the final image, or (final, stage 2, stage 1) with `all_stages`.
    With `pad` off the input must already have sides that are multiples of 8.
    """

    def __init__(self, model: torch.nn.Module, all_stages: bool = False, pad: bool = True):
        super().__init__()
        self.model, self.all_stages, self.pad = model, all_stages, pad

    def forward(self, x: torch.Tensor):
        height, width = x.shape[-2], x.shape[-1]
        if self.pad:
            pad_h = (MULTIPLE - height % MULTIPLE) % MULTIPLE
            pad_w = (MULTIPLE - width % MULTIPLE) % MULTIPLE
            x = F.pad(x, (0, pad_w, 0, pad_h), mode='reflect')
        outs = [o[..., :height, :width].clamp(0, 1) for o in self.model(x)]
        return tuple(outs) if self.all_stages else outs[0]


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export MPRNet to ONNX (dynamic height and width) and verify it with ONNX Runtime.',
        epilog=f'Needs onnx, onnxscript and onnxruntime: {INSTALL_HINT}. Exit code 0: exported and '
               'verified; 1: the check failed (nothing written); 2: nothing exported.')
    parser.add_argument('--task', required=True, type=task_type, metavar=TASK_METAVAR,
                        help='which model to export (any capitalisation)')
    parser.add_argument('--weights', default='auto',
                        help="'auto' (official if present, else bundled; default), 'official', 'bundled', "
                             'or the path of a checkpoint')
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace --out if it exists (once the new graph has passed its check)')
    stages = parser.add_mutually_exclusive_group()
    stages.add_argument('--final_only', dest='final_only', action='store_true', default=True,
                        help='one output, the final (stage-3) image (default)')
    stages.add_argument('--all_stages', dest='final_only', action='store_false',
                        help='three outputs: restored (stage 3), stage2 and stage1 images')
    parser.add_argument('--exporter', default='torchscript', choices=('torchscript', 'dynamo'),
                        help='torchscript (default; the graph pads to multiples of 8 itself, seconds) or '
                             'dynamo (torch.export; the graph needs multiples of 8, minutes)')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET,
                        help=f'ONNX opset version (default {DEFAULT_OPSET}; dynamo needs 18 or newer)')
    parser.add_argument('--check_sizes', type=size_type, nargs=2, metavar='HxW',
                        default=[size_type(s) for s in DEFAULT_CHECK_SIZES],
                        help='the two sizes ONNX Runtime is compared with PyTorch on (default '
                             f"{' '.join(DEFAULT_CHECK_SIZES)}; dynamo rounds them down to multiples of 8)")
    parser.add_argument('--tolerance', type=float, default=DEFAULT_TOLERANCE,
                        help=f'largest allowed absolute difference, 0-1 scale (default {DEFAULT_TOLERANCE:g})')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads for PyTorch and ONNX Runtime (default: their own choice)')
    return parser.parse_args(argv)


def require_packages(exporter: str) -> None:
    """Raise ExportError naming the missing optional packages and how to install them."""
    needed = ['onnx', 'onnxruntime'] + (['onnxscript'] if exporter == 'dynamo' else [])
    missing = []
    for name in needed:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(f"{', '.join(missing)} not installed; ONNX export needs onnx, onnxscript and "
                          f'onnxruntime: {INSTALL_HINT}')


def output_names(final_only: bool) -> List[str]:
    """Names of the graph's outputs."""
    return ['restored'] if final_only else ['restored', 'stage2', 'stage1']


def export_graph(wrapper: PaddedMPRNet, out: str, exporter: str, opset: int, names: Sequence[str]) -> None:
    """Write `wrapper` to `out` as ONNX with dynamic batch, height and width."""
    example = (torch.rand(1, 3, *EXPORT_SIZE),)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the exporters' deprecation and tracer notes
        if exporter == 'torchscript':
            axes = {name: {0: 'batch', 2: 'height', 3: 'width'} for name in ['input', *names]}
            torch.onnx.export(wrapper, example, out, dynamo=False, opset_version=opset, input_names=['input'],
                              output_names=list(names), dynamic_axes=axes)
            return
        h8 = torch.export.Dim('h8', min=1, max=2048)
        w8 = torch.export.Dim('w8', min=1, max=2048)
        batch = torch.export.Dim('batch', min=1, max=1024)
        torch.onnx.export(wrapper, example, out, dynamo=True, opset_version=opset, input_names=['input'],
                          output_names=list(names), external_data=False, verbose=False,
                          dynamic_shapes={'x': {0: batch, 2: MULTIPLE * h8, 3: MULTIPLE * w8}})


def describe(path: str, task: str, weights: str, kind: str, model: torch.nn.Module, args) -> None:
    """Write what the graph expects and where its weights came from into the ONNX file's metadata."""
    import onnx  # lazy: the optional onnx extra, checked by require_packages first
    graph = onnx.load(path)
    sizes = ('any height and width of 8 px or more (reflect-padded to multiples of 8 inside the graph)'
             if args.exporter == 'torchscript' else
             'height and width must be multiples of 8: reflect-pad before and crop after')
    graph.doc_string = (f'MPRNet {task}. input: float32 RGB (N, 3, H, W) in [0, 1], {sizes}. '
                        f"outputs: {', '.join(output_names(args.final_only))}, the same size, in [0, 1].")
    meta = {'task': task, 'weights': os.path.basename(weights), 'weights_kind': kind,
            'model_config': repr(dict(model.config)), 'opset': str(args.opset), 'exporter': args.exporter,
            'multiple_of': '1' if args.exporter == 'torchscript' else str(MULTIPLE)}
    del graph.metadata_props[:]
    for key, value in meta.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(graph)
    onnx.save(graph, path)


def check_sizes(sizes: Sequence[Tuple[int, int]], exporter: str) -> List[Tuple[int, int]]:
    """The sizes to verify on: as given, or rounded down to multiples of 8 for a graph that needs them."""
    if exporter == 'torchscript':
        return list(sizes)
    return [(h // MULTIPLE * MULTIPLE, w // MULTIPLE * MULTIPLE) for h, w in sizes]


def verify(path: str, model: torch.nn.Module, sizes: Sequence[Tuple[int, int]], final_only: bool,
           threads: Optional[int] = None) -> List[Tuple[Tuple[int, int], float]]:
    """Largest absolute difference between ONNX Runtime and PyTorch (the demo's Restorer for the
    final image, the model's padded pass for the stages) on a random image of each size."""
    import onnxruntime  # lazy: the optional onnx extra
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    restorer = Restorer(model, torch.device('cpu'))
    reference = PaddedMPRNet(model, all_stages=True).eval()
    generator = torch.Generator().manual_seed(0)
    results = []
    for height, width in sizes:
        x = torch.rand(1, 3, height, width, generator=generator)
        got = session.run(None, {'input': x.numpy()})
        with torch.inference_mode():
            expected = [restorer(x)] + ([] if final_only else list(reference(x)[1:]))
        diff = max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected))
        results.append(((height, width), diff))
    return results


def check_options(args: argparse.Namespace) -> None:
    """ExportError naming the option, for values that would fail (or destroy a file) later."""
    if args.threads is not None and args.threads < 1:
        raise ExportError(f'--threads must be at least 1, got {args.threads} (leave it out for the default)')
    if not (math.isfinite(args.tolerance) and args.tolerance > 0):  # nan or below 0 would fail every check
        raise ExportError(f'--tolerance must be a positive number, got {args.tolerance:g}')
    try:
        check_output_file(args.out, '--out', args.overwrite)
    except OutputRefusedError as err:
        raise ExportError(str(err)) from err


def run(args: argparse.Namespace) -> int:
    """Export, describe and verify; returns the exit code."""
    check_options(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        weights, kind = resolve_weights(args.task, args.weights)
        check_output_file(args.out, '--out', args.overwrite, [('the --weights file', weights)])
        model = build_model(args.task, weights).eval()
    except (WeightsNotFoundError, RuntimeError, ValueError) as err:
        raise ExportError(str(err)) from err
    require_packages(args.exporter)  # after the inputs: their errors are the ones to fix first
    names = output_names(args.final_only)
    wrapper = PaddedMPRNet(model, all_stages=not args.final_only, pad=args.exporter == 'torchscript').eval()
    print(f'exporting {args.task} ({kind} weights {weights}, n_feat={model.config["n_feat"]}) with the '
          f'{args.exporter} exporter, opset {args.opset}, outputs: {", ".join(names)}')
    start = time.perf_counter()
    try:
        with atomic_output(args.out, replace=args.overwrite) as graph_path:
            export_and_check(graph_path, wrapper, model, weights, kind, names, args, start)
    except CheckFailed:
        kept = f'the existing {args.out} is unchanged' if os.path.exists(args.out) else 'nothing was written'
        print(f'error: ONNX Runtime does not match PyTorch; {kept}', file=sys.stderr)
        return 1
    print(f'wrote {args.out}')
    return 0


class CheckFailed(Exception):
    """ONNX Runtime's output differs from PyTorch's by more than --tolerance."""


def export_and_check(path: str, wrapper: PaddedMPRNet, model: torch.nn.Module, weights: str, kind: str,
                     names: Sequence[str], args: argparse.Namespace, start: float) -> None:
    """Export to `path` (a temporary file), describe and verify it; CheckFailed if the check fails."""
    try:
        export_graph(wrapper, path, args.exporter, args.opset, names)
    except Exception as err:  # exporter failures are long; one line says which step failed
        raise ExportError(f'the {args.exporter} exporter failed: {str(err).strip().splitlines()[0]}') from err
    describe(path, args.task, weights, kind, model, args)
    seconds = time.perf_counter() - start
    size_mb = os.path.getsize(path) / 1e6
    multiple = 'any H, W >= 8 (padded in the graph)' if args.exporter == 'torchscript' else 'H, W multiples of 8'
    print(f'exported {size_mb:.1f} MB in {seconds:.1f} s; input (N, 3, H, W), {multiple}')
    failed = False
    for (height, width), diff in verify(path, model, check_sizes(args.check_sizes, args.exporter),
                                        args.final_only, args.threads):
        ok = diff < args.tolerance
        failed |= not ok
        print(f'  {height}x{width}: max |onnxruntime - pytorch| = {diff:.2e} '
              f"({'ok' if ok else 'FAILED'}, tolerance {args.tolerance:g})")
    if failed:
        raise CheckFailed()


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (ExportError, OSError) as err:  # OSError: the graph could not be written (a full disk)
        print(f'error: {err}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
