"""MPRNet architecture: layout of the released checkpoints, shared PReLU, shapes, loading."""
import math

import pytest
import torch

from MPRNet import MPRNet, PRESETS
from utils.tasks import canonical_task
from utils.files.checkpoint import CheckpointMismatchError, build_model, load_weights, save_atomic
from utils.padding import crop_to, pad_to_multiple


def expected_layout(n_feat, scale_unetfeats, scale_orsnetfeats, num_cab=8, k=3, reduction=4):
    """Key -> shape of the released state dicts, written out from the architecture description
    (PUBLISHED_RECIPE.md and the paper), independently of MPRNet.py."""
    shapes = {}

    def conv(name, cin, cout, size):
        shapes[f'{name}.weight'] = (cout, cin, size, size)

    def cab(name, c):
        conv(f'{name}.body.0', c, c, k)
        shapes[f'{name}.body.1.weight'] = (1,)  # the shared PReLU's single slope
        conv(f'{name}.body.2', c, c, k)
        conv(f'{name}.CA.conv_du.0', c, c // reduction, 1)
        conv(f'{name}.CA.conv_du.2', c // reduction, c, 1)

    C, su = n_feat, scale_unetfeats
    widths = [C, C + su, C + 2 * su]
    for i in (1, 2, 3):
        conv(f'shallow_feat{i}.0', 3, C, k)
        cab(f'shallow_feat{i}.1', C)
    for stage in (1, 2):
        enc, dec = f'stage{stage}_encoder', f'stage{stage}_decoder'
        for level, w in enumerate(widths, 1):
            for j in (0, 1):
                cab(f'{enc}.encoder_level{level}.{j}', w)
                cab(f'{dec}.decoder_level{level}.{j}', w)
            if stage == 2:
                conv(f'{enc}.csff_enc{level}', w, w, 1)
                conv(f'{enc}.csff_dec{level}', w, w, 1)
        conv(f'{enc}.down12.down.1', widths[0], widths[1], 1)
        conv(f'{enc}.down23.down.1', widths[1], widths[2], 1)
        cab(f'{dec}.skip_attn1', widths[0])
        cab(f'{dec}.skip_attn2', widths[1])
        conv(f'{dec}.up21.up.1', widths[1], widths[0], 1)
        conv(f'{dec}.up32.up.1', widths[2], widths[1], 1)
    W = C + scale_orsnetfeats
    ors = 'stage3_orsnet'
    for orb in (1, 2, 3):
        for j in range(num_cab):
            cab(f'{ors}.orb{orb}.body.{j}', W)
        conv(f'{ors}.orb{orb}.body.{num_cab}', W, W, k)
    for kind in ('enc', 'dec'):
        conv(f'{ors}.up_{kind}1.up.1', widths[1], C, 1)
        conv(f'{ors}.up_{kind}2.0.up.1', widths[2], widths[1], 1)
        conv(f'{ors}.up_{kind}2.1.up.1', widths[1], C, 1)
        for i in (1, 2, 3):
            conv(f'{ors}.conv_{kind}{i}', C, W, 1)
    for sam in ('sam12', 'sam23'):
        conv(f'{sam}.conv1', C, C, 1)
        conv(f'{sam}.conv2', C, 3, 1)
        conv(f'{sam}.conv3', 3, C, 1)
    conv('concat12', 2 * C, C, k)
    conv('concat23', 2 * C, W, k)
    conv('tail', W, 3, k)
    return shapes


def unique_parameter_count(layout):
    """Parameters counted once: the PReLU slope is one shared parameter however many keys show it."""
    return sum(math.prod(s) for key, s in layout.items() if not key.endswith('body.1.weight')) + 1


PUBLISHED_COUNTS = {'Deblurring': 20_127_073, 'Deraining': 3_637_249, 'Denoising': 15_741_025}


@pytest.mark.parametrize('task', list(PRESETS))
def test_preset_layout_matches_released_checkpoints(task):
    layout = expected_layout(**PRESETS[task])
    assert len(layout) == 316
    assert unique_parameter_count(layout) == PUBLISHED_COUNTS[task]
    with torch.device('meta'):
        model = MPRNet.for_task(task)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == layout
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_COUNTS[task]


def test_task_names_are_case_insensitive_and_checked():
    assert canonical_task('deblurring') == 'Deblurring'
    with pytest.raises(ValueError, match='Deraining'):
        canonical_task('dehazing')


def test_one_prelu_shared_by_every_block():
    model = MPRNet.for_task('Deraining')
    prelus = {id(m) for m in model.modules() if isinstance(m, torch.nn.PReLU)}
    assert len(prelus) == 1
    keys = [k for k in model.state_dict() if k.endswith('body.1.weight')]
    # 3 shallow + 2 stages x (6 encoder + 6 decoder + 2 skip) + 3 x 8 ORB blocks
    assert len(keys) == 3 + 2 * 14 + 24
    with torch.no_grad():
        next(m for m in model.modules() if isinstance(m, torch.nn.PReLU)).weight.fill_(0.5)
    state = model.state_dict()
    assert all(state[k].item() == 0.5 for k in keys)


def test_released_format_round_trip(tmp_path, tiny_config):
    src = MPRNet(**tiny_config).eval()
    path = tmp_path / 'model_released.pth'
    torch.save({'state_dict': {'module.' + k: v for k, v in src.state_dict().items()}}, path)
    dst = load_weights(MPRNet(**tiny_config), str(path)).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(src(x), dst(x)):
            assert torch.equal(a, b)


def test_bare_state_dict_and_own_checkpoint_load(tmp_path, tiny_config):
    src = MPRNet(**tiny_config)
    bare = tmp_path / 'bare.pth'
    torch.save(src.state_dict(), bare)
    ours = tmp_path / 'ours.pth'
    save_atomic({'epoch': 3, 'state_dict': src.state_dict(), 'optimizer': {}, 'model_config': src.config}, str(ours))
    for path in (bare, ours):
        dst = load_weights(MPRNet(**tiny_config), str(path))
        for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
            assert torch.equal(a, b), k
    # a checkpoint that records its configuration builds that model, whatever the task preset says
    model = build_model('Deblurring', str(ours))
    assert model.config == src.config


def test_wrong_preset_is_named(tmp_path):
    with torch.device('meta'):
        shapes = MPRNet.for_task('Deraining').state_dict()
    path = tmp_path / 'model_deraining.pth'
    torch.save({'state_dict': {k: torch.zeros(v.shape) for k, v in shapes.items()}}, path)
    with torch.device('meta'):
        model = MPRNet.for_task('Deblurring')
    with pytest.raises(CheckpointMismatchError) as err:
        load_weights(model, str(path))
    text = str(err.value)
    assert 'this looks like the Deraining model (n_feat=40); you asked for Deblurring' in text
    assert 'shape mismatches' in text and str(path) in text


def test_missing_and_unexpected_keys_are_listed(tmp_path, tiny_config):
    state = MPRNet(**tiny_config).state_dict()
    state.pop('tail.weight')
    state['extra.weight'] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r'1 missing keys: tail\.weight[\s\S]*1 unexpected keys: extra\.weight'):
        load_weights(MPRNet(**tiny_config), state)


def test_unreadable_and_missing_files(tmp_path, tiny_config):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_weights(MPRNet(**tiny_config), str(tmp_path / 'nope.pth'))
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint')
    with pytest.raises(RuntimeError, match='bad.pth'):
        load_weights(MPRNet(**tiny_config), str(bad))


@pytest.mark.parametrize('h,w', [(8, 8), (32, 48), (64, 24)])
def test_output_shapes(tiny_model, device, h, w):
    with torch.no_grad():
        outs = tiny_model.to(device)(torch.rand(2, 3, h, w, device=device))
    assert len(outs) == 3 and all(o.shape == (2, 3, h, w) for o in outs)


def test_sizes_not_divisible_by_8_are_refused(tiny_model, device):
    with pytest.raises(ValueError, match='divisible by 8'):
        tiny_model.to(device)(torch.rand(1, 3, 30, 32, device=device))


@pytest.mark.parametrize('h,w', [(1, 1), (7, 13), (333, 517), (2, 9)])
def test_pad_helper_restores_size(h, w):
    x = torch.rand(1, 3, h, w)
    padded, size = pad_to_multiple(x)
    assert padded.shape[-2] % 8 == 0 and padded.shape[-1] % 8 == 0
    assert padded.shape[-2] - h < 8 and padded.shape[-1] - w < 8
    assert torch.equal(crop_to(padded, size), x)


def test_pad_helper_reflects():
    x = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 3, 5)
    padded, _ = pad_to_multiple(x)
    # reflection about the last column: 0 1 2 3 4 | 3 2 1
    assert padded[0, 0, 0].tolist() == [0, 1, 2, 3, 4, 3, 2, 1]
    # rows 3..7 mirror the 3 rows, then mirror again: 0 1 2 | 1 0 1 2 1
    rows = torch.arange(3.0).view(1, 1, 3, 1)
    assert pad_to_multiple(rows)[0][0, 0, :, 0].tolist() == [0, 1, 2, 1, 0, 1, 2, 1]


def test_padded_model_returns_input_size(tiny_model, device):
    x = torch.rand(1, 3, 21, 35, device=device)
    padded, size = pad_to_multiple(x)
    with torch.no_grad():
        out = crop_to(tiny_model.to(device)(padded)[0], size)
    assert out.shape == x.shape


def test_batch_independence(tiny_model, device):
    x = torch.rand(2, 3, 32, 40, device=device)
    tiny_model.to(device)
    with torch.no_grad():
        both = tiny_model(x)
        alone = [tiny_model(x[i:i + 1]) for i in range(2)]
    for stage in range(3):
        for i in range(2):
            torch.testing.assert_close(both[stage][i], alone[i][stage][0], rtol=0, atol=1e-5)


def test_full_preset_forward_on_64x64(device):
    model = MPRNet.for_task('Deraining').eval().to(device)
    x = torch.rand(1, 3, 64, 64, device=device)
    with torch.no_grad():
        outs = model(x)
    assert [o.shape for o in outs] == [x.shape] * 3 and all(torch.isfinite(o).all() for o in outs)
