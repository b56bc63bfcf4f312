"""Several tasks in one run (demo.py --task Denoising,Deblurring and the web page): one read, the
models in turn in memory, one write; the same as running the tasks one after the other through files,
to 8-bit rounding, on tiny models."""
import cv2
import numpy as np
import pytest
import torch

import demo
from MPRNet import MPRNet
from utils.files.weights import bundled_path
from utils.inference import uploads
from utils.inference.chain import ChainRestorer, parse_task_chain
from helpers import TINY

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def tiny_checkpoint(path, task, seed):
    torch.manual_seed(seed)
    model = MPRNet(**TINY)
    torch.save({'state_dict': model.state_dict(), 'model_config': model.config, 'task': task}, path)
    return str(path)


@pytest.fixture
def weights(tmp_path):
    return {task: tiny_checkpoint(tmp_path / f'{task}.pth', task, seed)
            for seed, task in enumerate(('Denoising', 'Deblurring', 'Deraining'), 1)}


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / 'in'
    folder.mkdir()
    rng = np.random.default_rng(3)
    for name, (h, w) in (('a.png', (24, 32)), ('odd.png', (21, 30))):
        assert cv2.imwrite(str(folder / name), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return folder


def read8(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.int32)


def test_task_chains_are_parsed_in_order_each_task_once():
    assert parse_task_chain('denoising, Deblurring') == ('Denoising', 'Deblurring')
    assert parse_task_chain('Deraining') == ('Deraining',)
    with pytest.raises(ValueError, match='names Denoising twice'):
        parse_task_chain('Denoising,deblurring,DENOISING')
    with pytest.raises(ValueError, match='empty name'):
        parse_task_chain('Denoising,,Deblurring')
    with pytest.raises(ValueError, match='unknown task'):
        parse_task_chain('Denoising,Dehazing')


@pytest.mark.parametrize('tile', [None, 16])
@pytest.mark.slow
def test_a_chain_equals_the_tasks_run_one_after_the_other_through_files(tmp_path, photos, weights, tile, capsys):
    common = ['--device', 'cpu', '--exact'] + (['--tile', str(tile), '--tile_overlap', '8'] if tile else [])
    first, second, chained = tmp_path / 'denoised', tmp_path / 'then_deblurred', tmp_path / 'chained'
    assert demo.main(['--task', 'Denoising', '--input_dir', str(photos), '--result_dir', str(first),
                      '--weights', weights['Denoising'], *common]) == 0
    assert demo.main(['--task', 'Deblurring', '--input_dir', str(first), '--result_dir', str(second),
                      '--weights', weights['Deblurring'], *common]) == 0
    capsys.readouterr()
    assert demo.main(['--task', 'denoising,deblurring', '--input_dir', str(photos), '--result_dir', str(chained),
                      '--weights', f"{weights['Denoising']},{weights['Deblurring']}", '--compare',
                      str(tmp_path / 'compare.png'), *common]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith('chain Denoising -> Deblurring:')
    assert out[1].startswith('Denoising model') and out[2].startswith('Deblurring model')
    for name in ('a.png', 'odd.png'):
        files, memory = read8(second / name), read8(chained / name)
        assert files.shape == memory.shape
        # The file route rounds the denoised image to 8 bits; the chain keeps it in float.
        assert np.abs(files - memory).max() <= 1, name
        assert np.abs(read8(first / name) - memory).max() > 1, 'the second model changed nothing'
    assert (tmp_path / 'compare.png').is_file()


def test_chain_options_that_cannot_serve_are_refused_before_any_work(tmp_path, photos, weights, capsys):
    out = tmp_path / 'out'
    assert demo.main(['--task', 'Denoising,Deblurring', '--input_dir', str(photos), '--result_dir', str(out),
                      '--weights', weights['Denoising'], '--device', 'cpu']) == 2
    assert 'needs 2 files, one per task' in capsys.readouterr().err
    # Files in the wrong order: the first is refused for the task it was not trained for.
    assert demo.main(['--task', 'Denoising,Deblurring', '--input_dir', str(photos), '--result_dir', str(out),
                      '--weights', f"{weights['Deblurring']},{weights['Denoising']}", '--device', 'cpu']) == 2
    assert 'was trained for Deblurring' in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit) as stop:
        demo.main(['--task', 'Denoising,Denoising', '--input_dir', str(photos)])
    assert stop.value.code == 2 and 'names Denoising twice' in capsys.readouterr().err


def test_the_web_page_runs_a_chain_as_its_stages_in_turn(tmp_path, photos, weights):
    root = tmp_path / 'root'
    for task, path in weights.items():
        target = bundled_path(task, str(root))
        (root / 'pretrained_models' / 'synthetic').mkdir(parents=True, exist_ok=True)
        with open(path, 'rb') as src, open(target, 'wb') as dst:
            dst.write(src.read())
    models = uploads.Models.from_settings(device='cpu', precision='fp32', root=str(root))
    src = str(photos / 'a.png')
    result = uploads.restore(src, 'Deraining, denoising', models, str(tmp_path / 'out'))
    assert result.png.endswith('a_deraining_denoising.png')
    assert result.info.startswith('**Deraining -> Denoising**') and '**Denoising** with the bundled' in result.info
    # The same two Restorers called one after the other on the decoded image.
    x = torch.from_numpy(cv2.cvtColor(cv2.imread(src), cv2.COLOR_BGR2RGB)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        stages = [models.get(t).restorer for t in ('Deraining', 'Denoising')]
        expected = stages[1](stages[0](x))
        assert torch.equal(ChainRestorer(stages)(x), expected)
    expected8 = (expected[0].permute(1, 2, 0).numpy() * 255).round().astype(np.int32)
    assert np.abs(result.after.astype(np.int32) - expected8).max() <= 1
