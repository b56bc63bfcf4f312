"""scripts/export_onnx.py on a tiny configuration: export, ONNX Runtime against PyTorch, metadata."""
import os
import sys

import numpy as np
import pytest
import torch

from MPRNet import MPRNet
from helpers import TINY, save_weights

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'scripts'))
import export_onnx  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def need(module):
    """Skip with the install hint when an optional ONNX package is missing."""
    return pytest.importorskip(module, reason=f'{module} not installed ({export_onnx.INSTALL_HINT})')


TINY_ONE_CAB = dict(TINY, num_cab=1)  # the exported model: one CAB per block keeps the export quick


@pytest.fixture
def weights(tmp_path):
    return save_weights(tmp_path / 'tiny.pth', MPRNet(**TINY_ONE_CAB).eval())


def export(tmp_path, weights, *extra):
    out = str(tmp_path / 'model.onnx')
    code = export_onnx.main(['--task', 'Deraining', '--weights', weights, '--out', out, '--threads', '1',
                             '--check_sizes', '24x32', '19x45', *extra])
    return code, out


def test_export_matches_pytorch_at_any_size(tmp_path, weights, capsys):
    onnx, onnxruntime = need('onnx'), need('onnxruntime')
    code, out = export(tmp_path, weights)
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert 'opset 18' in printed and 'outputs: restored' in printed
    diffs = [float(line.split('= ')[1].split()[0]) for line in printed.splitlines() if 'max |' in line]
    assert len(diffs) == 2 and max(diffs) < 1e-4
    graph = onnx.load(out)
    meta = {p.key: p.value for p in graph.metadata_props}
    assert meta['task'] == 'Deraining' and meta['weights_kind'] == 'file' and meta['opset'] == '18'
    assert 'reflect-padded' in graph.doc_string
    # A third size, odd and wider than tall, with a batch of two.
    session = onnxruntime.InferenceSession(out, providers=['CPUExecutionProvider'])
    assert [o.name for o in session.get_outputs()] == ['restored']
    x = torch.rand(2, 3, 13, 30)
    got = session.run(None, {'input': x.numpy()})[0]
    model = MPRNet(**TINY_ONE_CAB)
    model.load_state_dict(torch.load(weights, weights_only=True)['state_dict'])
    with torch.no_grad():
        expected = export_onnx.PaddedMPRNet(model.eval())(x).numpy()
    assert got.shape == (2, 3, 13, 30) and np.abs(got - expected).max() < 1e-4


def test_all_stages_gives_three_outputs(tmp_path, weights, capsys):
    need('onnx')
    onnxruntime = need('onnxruntime')
    code, out = export(tmp_path, weights, '--all_stages')
    assert code == 0, capsys.readouterr().out
    session = onnxruntime.InferenceSession(out, providers=['CPUExecutionProvider'])
    assert [o.name for o in session.get_outputs()] == ['restored', 'stage2', 'stage1']


def test_a_failed_check_removes_the_file(tmp_path, weights, capsys, monkeypatch):
    need('onnx'), need('onnxruntime')
    monkeypatch.setattr(export_onnx, 'verify', lambda *a, **k: [((24, 32), 0.5), ((19, 45), 0.0)])
    code, out = export(tmp_path, weights)
    assert code == 1 and not os.path.exists(out)
    assert 'FAILED' in capsys.readouterr().out


def test_missing_packages_say_how_to_install(tmp_path, weights, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # import now raises ImportError
    code, out = export(tmp_path, weights)
    err = capsys.readouterr().err
    assert code == 2 and not os.path.exists(out)
    assert 'onnxruntime not installed' in err and "pip install -e '.[onnx]'" in err


def test_missing_weights_and_bad_sizes_are_clear(tmp_path, capsys):
    code = export_onnx.main(['--task', 'Denoising', '--weights', str(tmp_path / 'none.pth'),
                             '--out', str(tmp_path / 'x.onnx')])
    assert code == 2 and 'none.pth' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_onnx.parse_args(['--task', 'Denoising', '--out', 'x.onnx', '--check_sizes', '4x4', '8x8'])
    assert 'at least 8 px' in capsys.readouterr().err


# ---------------------------------------------------------------------- the output file is never destroyed

def fake_export(monkeypatch, diffs):
    """Export without onnx: the graph is the bytes b'new graph', the check reports `diffs`."""
    def write_graph(wrapper, out, *args):
        with open(out, 'wb') as f:
            f.write(b'new graph')

    monkeypatch.setattr(export_onnx, 'require_packages', lambda exporter: None)
    monkeypatch.setattr(export_onnx, 'export_graph', write_graph)
    monkeypatch.setattr(export_onnx, 'describe', lambda *args: None)
    monkeypatch.setattr(export_onnx, 'verify', lambda *a, **k: [((24, 32), d) for d in diffs])


def test_threads_below_one_is_one_line_exit_2(tmp_path, weights, capsys):
    code, out = export(tmp_path, weights, '--threads', '-1')  # the later --threads wins
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == 'error: --threads must be at least 1, got -1 (leave it out for the default)'
    assert not os.path.exists(out)


@pytest.mark.parametrize('value', ['nan', '-1', '0'])
def test_a_tolerance_no_difference_can_meet_is_one_line_exit_2(tmp_path, weights, capsys, value):
    code, out = export(tmp_path, weights, '--tolerance', value)
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == f'error: --tolerance must be a positive number, got {float(value):g}'
    assert not os.path.exists(out)


def test_an_existing_out_is_refused_without_overwrite(tmp_path, weights, capsys, monkeypatch):
    fake_export(monkeypatch, [0.0])
    (tmp_path / 'model.onnx').write_bytes(b'old graph')
    code, out = export(tmp_path, weights)
    assert code == 2 and f'--out {out} exists; pass --overwrite' in capsys.readouterr().err
    assert (tmp_path / 'model.onnx').read_bytes() == b'old graph'
    code, out = export(tmp_path, weights, '--overwrite')
    assert code == 0 and (tmp_path / 'model.onnx').read_bytes() == b'new graph'
    assert sorted(os.listdir(tmp_path)) == ['model.onnx', 'tiny.pth']  # no temporary left


def test_out_is_never_the_weights_file(tmp_path, weights, capsys, monkeypatch):
    fake_export(monkeypatch, [0.0])
    before = open(weights, 'rb').read()
    code = export_onnx.main(['--task', 'Deraining', '--weights', weights, '--out', weights, '--overwrite'])
    assert code == 2 and f'--out {weights} is the --weights file' in capsys.readouterr().err
    assert open(weights, 'rb').read() == before


def test_a_failed_check_keeps_the_file_that_was_there(tmp_path, weights, capsys, monkeypatch):
    fake_export(monkeypatch, [0.5, 0.0])
    (tmp_path / 'model.onnx').write_bytes(b'old graph')
    code, out = export(tmp_path, weights, '--overwrite')
    captured = capsys.readouterr()
    assert code == 1 and 'FAILED' in captured.out
    assert f'the existing {out} is unchanged' in captured.err
    assert (tmp_path / 'model.onnx').read_bytes() == b'old graph'
    assert sorted(os.listdir(tmp_path)) == ['model.onnx', 'tiny.pth']
