"""InferenceOptions: building it is the one check of the inference options (one test per check,
the limits worked out by hand), the command line read into it, the precision names shared with
OPTIM.AMP, and a Restorer that leaves its model and global settings alone."""
import argparse
import dataclasses

import pytest
import torch

from utils.inference.cli import add_model_arguments, add_tiling_arguments
from utils.inference.options import InferenceOptions, UsageError
from utils.inference.restorer import Restorer, choose_precision
from utils.training.trainer import resolve_amp


def test_the_defaults_are_the_exact_path_of_the_official_lookup():
    options = InferenceOptions()
    assert (options.weights, options.device, options.precision, options.fast) == ('auto', 'auto', 'fp32', False)
    assert (options.tile, options.tile_overlap, options.auto_tile) == (None, 32, False)
    assert choose_precision(options.precision, options.fast, torch.device('cpu')) == ('fp32', False, 'fp32 exact path')


def test_options_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        InferenceOptions().tile = 64
    # dataclasses.replace builds a new value, checked again.
    with pytest.raises(UsageError, match='tile size'):
        dataclasses.replace(InferenceOptions(), tile=60)


def test_device_must_be_a_device_name():
    assert InferenceOptions(device='cuda:1').device == 'cuda:1'  # parsed, not looked for: that is loading's part
    with pytest.raises(UsageError, match="--device must be auto, cpu, cuda or a device name such as cuda:1, got 'gpu'"):
        InferenceOptions(device='gpu')


def test_precision_must_be_one_of_the_names():
    for name in ('auto', 'fp32', 'fp16', 'bf16', 'exact'):
        assert InferenceOptions(precision=name).precision == name
    with pytest.raises(UsageError, match="precision must be one of auto, fp32, fp16, bf16, exact, got 'off'"):
        InferenceOptions(precision='off')  # training's name for fp32 is not an inference precision


def test_exact_refuses_the_fast_path():
    assert InferenceOptions(precision='fp32', fast=True).fast
    with pytest.raises(UsageError, match='--precision exact means fp32 without --fast'):
        InferenceOptions(precision='exact', fast=True)
    assert choose_precision('exact', False, torch.device('cpu')) == ('fp32', False, 'exact')


def test_tile_must_be_a_multiple_of_8():
    assert InferenceOptions(tile=8, tile_overlap=0).tile == 8
    with pytest.raises(UsageError, match=r'--tile 12 --tile_overlap 32: tile size must be a positive multiple of 8 '
                                         r'\(got 12\)'):
        InferenceOptions(tile=12)
    with pytest.raises(UsageError, match='--tile 0 '):
        InferenceOptions(tile=0, tile_overlap=0)


def test_tile_overlap_must_leave_a_stride_of_8():
    # A 64-px tile advances by 64 - overlap: 8 at least, so the overlap is 56 at most.
    assert InferenceOptions(tile=64, tile_overlap=56).tile_overlap == 56
    with pytest.raises(UsageError, match=r'tile overlap must be between 0 and tile - 8 = 56 \(got 57 for tile 64\)'):
        InferenceOptions(tile=64, tile_overlap=57)
    with pytest.raises(UsageError, match='got -1 for tile 64'):
        InferenceOptions(tile=64, tile_overlap=-1)


def test_overlap_without_tiles_must_not_be_negative():
    assert InferenceOptions(tile_overlap=0).tile_overlap == 0
    with pytest.raises(UsageError, match='--tile_overlap -1: tile overlap must be at least 0, got -1'):
        InferenceOptions(tile_overlap=-1)


def test_memory_budget_is_at_least_1_mib():
    # 1 MiB = 2**-10 GB = 0.0009765625 GB.
    assert InferenceOptions(max_memory_gb=0.0009765625).max_memory_gb == 2 ** -10
    with pytest.raises(UsageError, match=r'--max_memory must be a finite number of GB, at least 0.000976562 \(1 MiB\), '
                                         'got 0.0009'):
        InferenceOptions(max_memory_gb=0.0009)
    for bad in (float('inf'), float('nan'), 0.0, -1.0):
        with pytest.raises(UsageError, match='--max_memory'):
            InferenceOptions(max_memory_gb=bad)


def test_pixel_limit_is_positive_and_finite():
    assert InferenceOptions(max_megapixels=0.25).max_megapixels == 0.25
    for bad in (0.0, -2.0, float('inf'), float('nan')):
        with pytest.raises(UsageError, match='--max_megapixels must be a positive, finite number of megapixels'):
            InferenceOptions(max_megapixels=bad)


def parser(tiling: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_model_arguments(p, 'auto', 'weights')
    if tiling:
        add_tiling_arguments(p)
        p.add_argument('--weights_root', default='/somewhere')
    return p


def test_from_args_reads_the_options_a_parser_has():
    args = parser(tiling=True).parse_args(['--device', 'cpu', '--precision', 'bf16', '--tile', '128',
                                           '--tile_overlap', '16', '--max_memory', '2'])
    options = InferenceOptions.from_args(args, auto_tile=True)
    assert options == InferenceOptions(weights='auto', device='cpu', precision='bf16', tile=128, tile_overlap=16,
                                       max_memory_gb=2.0, auto_tile=True, root='/somewhere')
    # A test script's parser has no tiling options: theirs stay at the defaults, nothing tiles by itself.
    plain = InferenceOptions.from_args(parser(tiling=False).parse_args(['--weights', 'w.pth']))
    assert (plain.weights, plain.tile, plain.tile_overlap, plain.auto_tile) == ('w.pth', None, 32, False)
    assert InferenceOptions.from_args(args, weights='bundled').weights == 'bundled'


def test_from_args_checks_once_with_the_option_names():
    with pytest.raises(UsageError, match='--tile 100 --tile_overlap 32'):
        InferenceOptions.from_args(parser(tiling=True).parse_args(['--tile', '100']))


def test_the_old_exact_flag_is_precision_exact_with_a_note(capsys):
    options = InferenceOptions.from_args(parser(tiling=False).parse_args(['--exact']))
    assert options.precision == 'exact'
    assert capsys.readouterr().err == 'note: --exact is now --precision exact (the old flag still works)\n'
    # With the web page's default precision (auto) too; against another precision or --fast it is refused.
    assert InferenceOptions.from_args(argparse.Namespace(exact=True, precision='auto', fast=False)).precision == 'exact'
    with pytest.raises(UsageError, match='--exact means fp32 without --fast; it cannot be combined with --precision '
                                         'bf16'):
        InferenceOptions.from_args(parser(tiling=False).parse_args(['--exact', '--precision', 'bf16']))
    with pytest.raises(UsageError, match='--precision fp32 --fast'):
        InferenceOptions.from_args(parser(tiling=False).parse_args(['--exact', '--fast']))


def test_optim_amp_takes_the_inference_names():
    cpu = torch.device('cpu')
    assert resolve_amp('fp32', cpu) == resolve_amp('off', cpu) == 'off'
    assert (resolve_amp('bf16', cpu), resolve_amp('fp16', cpu)) == ('bf16', 'fp16')


class Recorder(torch.nn.Module):
    """A model of one 1x1 convolution with the batch_patches switch of MPRNet."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        self.batch_patches = False

    def forward(self, x):
        return [self.conv(x)]


def test_restorer_leaves_the_model_and_cudnn_alone():
    model = Recorder()  # in training mode, as a new module is
    before = {k: v.clone() for k, v in model.state_dict().items()}
    benchmark = torch.backends.cudnn.benchmark
    for fast in (False, True):
        restorer = Restorer(model, precision='fp32', fast=fast)
        restorer(torch.rand(1, 3, 16, 16))
        assert restorer.model is not model and not restorer.model.training
        assert restorer.model.batch_patches is fast
    assert model.training and model.batch_patches is False
    assert model.conv.weight.is_contiguous() and model.conv.weight.requires_grad
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.backends.cudnn.benchmark == benchmark
    # A model already in eval mode on the device is run as it is: no copy of its weights.
    model.eval()
    assert Restorer(model).model is model
