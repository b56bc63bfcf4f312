"""chaiNNer's model loader, spandrel (its MPRNet lives in spandrel-extra-arches), loads the bundled
weights as they are and restores exactly what our model restores.

spandrel's MPRNet is its own copy of the published architecture: it reads the widths from the
tensors' shapes (not our ``model_config``) and unwraps our file's ``state_dict``. Equal outputs
therefore show that the layout of our release files is the published one and that the exact path
computes the published function. Both run the same float32 convolutions on the same CPU in the
same order, so the expected difference is 0, not a tolerance.
"""
import pytest
import torch

from utils.files.checkpoint import build_model
from utils.inference.restorer import Restorer
from utils.files.weights import bundled_path

spandrel = pytest.importorskip('spandrel', reason='spandrel not installed (pip install -e .[dev])')
spandrel_extra_arches = pytest.importorskip(
    'spandrel_extra_arches', reason='spandrel-extra-arches not installed (pip install -e .[dev])')

TASKS = ('Deblurring', 'Deraining', 'Denoising')


@pytest.fixture(scope='module')
def loader():
    """spandrel's loader as a chaiNNer user gets it: the main registry plus the extra architectures."""
    spandrel_extra_arches.install(ignore_duplicates=True)
    return spandrel.ModelLoader(device='cpu')


@pytest.mark.parametrize('task', TASKS)
@pytest.mark.slow
def test_spandrel_loads_the_bundled_file_and_gives_our_output(task, loader, one_torch_thread):
    path = bundled_path(task)
    descriptor = loader.load_from_file(path)
    assert descriptor.architecture.id == 'MPRNet'
    assert (descriptor.purpose, descriptor.scale, descriptor.input_channels) == ('Restoration', 1, 3)
    ours = build_model(task, path).eval()
    theirs = descriptor.model.eval()
    # the compact width our file records, read back by spandrel from the tensor shapes alone
    assert theirs.shallow_feat1[0].out_channels == ours.shallow_feat1[0].out_channels
    assert next(theirs.parameters()).dtype == torch.float32  # fp16 file, float32 model, like ours

    generator = torch.Generator().manual_seed(22)
    x = torch.rand(1, 3, 96, 128, generator=generator)
    with torch.no_grad():
        ours_stage3 = ours(x)[0]
        theirs_stage3 = theirs(x)[0]
        ours_restored = Restorer(ours)(x)
    theirs_restored = descriptor(x)  # spandrel's own call: pads to a multiple of 8 (none here), clamps
    assert (ours_restored - x).abs().max() > 0.01, 'the model changed nothing: the comparison proves nothing'
    assert (ours_stage3 - theirs_stage3).abs().max().item() == 0.0
    assert (ours_restored - theirs_restored).abs().max().item() == 0.0


@pytest.mark.slow
def test_spandrel_pads_an_odd_size_as_we_do(loader, one_torch_thread):
    """93x122 is no multiple of 8: both reflect-pad at the bottom and right (to 96x128), run, crop
    back and clamp, so the restored images are equal there too, not only on the network's sizes."""
    path = bundled_path('Deraining')
    descriptor = loader.load_from_file(path)
    x = torch.rand(1, 3, 93, 122, generator=torch.Generator().manual_seed(93))
    with torch.no_grad():
        ours = Restorer(build_model('Deraining', path).eval())(x)
    theirs = descriptor(x)
    assert ours.shape == theirs.shape == (1, 3, 93, 122)
    assert (ours - theirs).abs().max().item() == 0.0


@pytest.mark.slow
def test_spandrel_loads_our_safetensors_file_and_gives_our_output(loader, tmp_path, one_torch_thread):
    """The bundled Deraining weights written by bundle_checkpoint as .safetensors: spandrel reads the
    file by its own safetensors path and restores exactly what our loader's model restores."""
    from utils.files.weights import bundle_checkpoint
    path = str(tmp_path / 'model_deraining_synthetic.safetensors')
    bundle_checkpoint(bundled_path('Deraining'), path, 'Deraining', fmt='safetensors')
    descriptor = loader.load_from_file(path)
    assert descriptor.architecture.id == 'MPRNet'
    x = torch.rand(1, 3, 64, 72, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours = Restorer(build_model('Deraining', path).eval())(x)
        from_pth = Restorer(build_model('Deraining', bundled_path('Deraining')).eval())(x)
    assert (ours - x).abs().max() > 0.01, 'the model changed nothing: the comparison proves nothing'
    assert (ours - descriptor(x)).abs().max().item() == 0.0
    assert (ours - from_pth).abs().max().item() == 0.0  # fp16 in both files: the same weights
