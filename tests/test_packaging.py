"""pyproject.toml is the one list of dependencies: it must name what the code imports, and only that.

Each Python file of the repository is read with ``ast`` (imports inside functions too) and every
third-party top-level name it imports is mapped to its distribution; that distribution must be
declared where the file may take it from: the runtime dependencies for the library and the
scripts, plus the ``app`` extra for app.py, the ``onnx`` extra for the ONNX exporter, and every
extra and the build backend for the tests. The other way round, every declared distribution must be imported somewhere
(or be listed below with the reason it is not). The last test installs nothing: it checks that
the build configuration names the modules docs/USAGE.md promises.
"""
import ast
import os
import re
import sys
from typing import Dict, Iterable, List, Set, Tuple

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the dev extra installs tomli for it
    tomllib = pytest.importorskip('tomli', reason='Python 3.10 without tomli (pip install -e .[dev])')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Import name -> distribution, where they differ (from each project's install instructions).
DISTRIBUTION_OF = {
    'cv2': 'opencv-python-headless',
    'yaml': 'PyYAML',
    'skimage': 'scikit-image',
    'PIL': 'Pillow',
    'warmup_scheduler': 'warmup-scheduler',
    'spandrel_extra_arches': 'spandrel-extra-arches',
}
# Submodules of a dependency that need a distribution of their own.
SUBMODULE_DISTRIBUTION = {'torch.utils.tensorboard': 'tensorboard'}
# Imported only after importlib.util.find_spec says it is there, and never declared on purpose.
UNDECLARED_OPTIONAL = {'bm3d': 'scripts/evaluate_synthetic.py adds a CBM3D row only when it is installed'}
# Declared, but never imported by name.
NOT_IMPORTED = {'onnxscript': "torch.onnx's exporter imports it, the project does not"}
# Folders that hold no source of the project: environments, builds, data and outputs.
SKIPPED_DIRS = {'__pycache__', 'build', 'Datasets', 'checkpoints', 'results', 'runs', 'output'}


def normalise(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): case and -_. runs do not matter."""
    return re.sub(r'[-_.]+', '-', name).lower()


def requirement_name(requirement: str) -> str:
    """The distribution of a PEP 508 requirement string: 'torch>=2.3' -> 'torch'."""
    match = re.match(r'\s*([A-Za-z0-9][A-Za-z0-9._-]*)', requirement)
    assert match, f'not a requirement: {requirement!r}'
    return normalise(match.group(1))


def python_files(root: str) -> List[str]:
    """Every .py file under `root`, relative to it, outside hidden and output folders."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith('.') and d not in SKIPPED_DIRS
                   and not d.endswith('.egg-info')]
        found += [os.path.relpath(os.path.join(folder, f), root) for f in files if f.endswith('.py')]
    return sorted(found)


def imported_names(source: str) -> Set[str]:
    """Dotted module names `source` imports absolutely, at any depth (relative imports are local)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            # `from torch.utils import tensorboard` imports a submodule too
            names.update(f'{node.module}.{alias.name}' for alias in node.names)
        elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
              and getattr(node.func, 'attr', getattr(node.func, 'id', None)) in ('importorskip', 'import_module')
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)  # pytest.importorskip('tomli'), importlib.import_module('x')
    return names


def distributions_needed(names: Iterable[str], local: Set[str]) -> Set[str]:
    """The normalised distributions that importing `names` needs, beyond the standard library
    and the project's own modules (`local`)."""
    needed = set()
    for name in names:
        top = name.split('.')[0]
        if top in sys.stdlib_module_names or top in local or top == '__future__':
            continue
        for prefix, distribution in SUBMODULE_DISTRIBUTION.items():
            if name == prefix or name.startswith(prefix + '.'):
                needed.add(normalise(distribution))
        if top not in UNDECLARED_OPTIONAL:
            needed.add(normalise(DISTRIBUTION_OF.get(top, top)))
    return needed


def allowed_extras(path: str) -> Tuple[str, ...]:
    """Which extras the file at `path` (relative to the repository) may import from."""
    if path.startswith('tests' + os.sep):  # 'build': the build backend, which a test reads
        return ('dev', 'app', 'onnx', 'fetch', 'build')
    return {'app.py': ('app',), os.path.join('scripts', 'export_onnx.py'): ('onnx',),
            os.path.join('scripts', 'fetch_weights.py'): ('fetch',)}.get(path, ())


def load_project() -> Dict:
    with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
        return tomllib.load(f)


def declared(project: Dict) -> Dict[str, Set[str]]:
    """'runtime', 'build' (build-system.requires) and each extra -> the normalised distributions
    it declares."""
    table = project['project']
    groups = {'runtime': {requirement_name(r) for r in table['dependencies']},
              'build': {requirement_name(r) for r in project['build-system']['requires']}}
    for extra, requirements in table.get('optional-dependencies', {}).items():
        groups[extra] = {requirement_name(r) for r in requirements}
    return groups


def local_modules(files: Iterable[str]) -> Set[str]:
    """Names the project's own files can be imported as: each file's stem (scripts put their
    folder on sys.path) and each top-level folder (utils, benchmarks, tests)."""
    names = set()
    for path in files:
        parts = path.split(os.sep)
        names.add(os.path.splitext(parts[-1])[0])
        if len(parts) > 1:
            names.add(parts[0])
    return names


def undeclared_imports(root: str, groups: Dict[str, Set[str]]) -> List[str]:
    """'path: distribution (extras allowed)' for each import `groups` does not cover."""
    files = python_files(root)
    local = local_modules(files)
    problems = []
    for path in files:
        with open(os.path.join(root, path), encoding='utf-8') as f:
            needed = distributions_needed(imported_names(f.read()), local)
        extras = allowed_extras(path)
        allowed = set(groups['runtime']).union(*(groups.get(e, set()) for e in extras))
        problems += [f'{path}: {d} (declare it in {", ".join(("dependencies",) + extras)})'
                     for d in sorted(needed - allowed)]
    return problems


def unused_declarations(root: str, groups: Dict[str, Set[str]]) -> List[str]:
    """Each declared distribution no file imports (and NOT_IMPORTED does not explain)."""
    files = python_files(root)
    local = local_modules(files)
    used = set()
    for path in files:
        with open(os.path.join(root, path), encoding='utf-8') as f:
            used |= distributions_needed(imported_names(f.read()), local)
    exempt = {normalise(d) for d in NOT_IMPORTED}
    return sorted(f'{group}: {d}' for group, names in groups.items() for d in names - used - exempt)


def test_the_import_scanner_reads_what_a_file_needs():
    source = ('import os, numpy as np\nimport yaml\nfrom PIL import Image\nfrom utils import tiling\n'
              'from . import sibling\nfrom torch.utils import tensorboard\n'
              'def f():\n    import cv2\n    import bm3d\n    pytest.importorskip("tomli")\n')
    needed = distributions_needed(imported_names(source), local={'utils'})
    # os: standard library; utils: local; .sibling: relative; bm3d: optional by design
    assert needed == {'numpy', 'pyyaml', 'pillow', 'torch', 'tensorboard', 'opencv-python-headless', 'tomli'}


def test_the_check_catches_an_undeclared_and_a_misplaced_import(tmp_path):
    (tmp_path / 'lib.py').write_text('import requests\nimport gradio\n')
    (tmp_path / 'app.py').write_text('import gradio\n')
    (tmp_path / 'tests').mkdir()
    (tmp_path / 'tests' / 'test_x.py').write_text('import lib\nimport pytest\n')
    groups = {'runtime': {'numpy'}, 'app': {'gradio'}, 'dev': {'pytest'}}
    problems = undeclared_imports(str(tmp_path), groups)
    # gradio is fine in app.py (the app extra) but not in a library module; requests is nowhere
    assert problems == ['lib.py: gradio (declare it in dependencies)', 'lib.py: requests (declare it in dependencies)']
    assert unused_declarations(str(tmp_path), groups) == ['runtime: numpy']


def test_pyproject_declares_every_third_party_import():
    assert undeclared_imports(ROOT, declared(load_project())) == []


@pytest.mark.slow
def test_pyproject_declares_nothing_the_code_does_not_import():
    assert unused_declarations(ROOT, declared(load_project())) == []


def requirement_lines(path: str) -> List[str]:
    """The lines of a pip requirements file that pip acts on: no comments, no blank lines."""
    with open(path, encoding='utf-8') as f:
        return [line.split('#')[0].strip() for line in f if line.split('#')[0].strip()]


def test_requirements_are_listed_once():
    """requirements.txt, the file researchers install first, only installs the project itself, so
    pyproject.toml stays the one list of dependencies; no other requirements*.txt drifts from it."""
    assert [f for f in os.listdir(ROOT) if f.startswith('requirements') and f.endswith('.txt')] == ['requirements.txt']
    assert requirement_lines(os.path.join(ROOT, 'requirements.txt')) == ['-e .']


def test_requirement_lines_skip_comments(tmp_path):
    (tmp_path / 'r.txt').write_text('# a comment\n\n-e .  # the project\n')
    assert requirement_lines(str(tmp_path / 'r.txt')) == ['-e .']


def test_the_build_ships_the_modules_the_readme_names():
    """The wheel's top-level modules and packages as setuptools will find them: MPRNet, losses,
    dataset_RGB and utils with any sub-package (the include pattern), and no test or script."""
    setuptools = pytest.importorskip('setuptools')
    tool = load_project()['tool']['setuptools']
    assert set(tool['py-modules']) == {'MPRNet', 'losses', 'dataset_RGB'}
    find = tool['packages']['find']
    packages = setuptools.find_packages(ROOT, include=find['include'])
    assert 'utils' in packages
    assert all(p == 'utils' or p.startswith('utils.') for p in packages), packages
    assert all(os.path.isfile(os.path.join(ROOT, f'{m}.py')) for m in tool['py-modules'])
    # torch stays a lower bound that an installed CPU or CUDA torch satisfies: no pin, no index
    torch_requirement = [r for r in load_project()['project']['dependencies'] if requirement_name(r) == 'torch']
    assert torch_requirement == ['torch>=2.3']


def test_each_utils_package_docstring_names_its_modules():
    """The docstring of utils (and of any sub-package it gets) is its table of contents: every
    module beside an __init__.py is named there as a word, so that a new one cannot go unlisted."""
    for folder, dirs, files in os.walk(os.path.join(ROOT, 'utils')):
        dirs[:] = [d for d in dirs if d != '__pycache__']
        if '__init__.py' not in files:
            continue
        with open(os.path.join(folder, '__init__.py'), encoding='utf-8') as f:
            doc = ast.get_docstring(ast.parse(f.read())) or ''
        named = set(re.findall(r'\w+', doc))
        modules = {os.path.splitext(f)[0] for f in files if f.endswith('.py') and f != '__init__.py'}
        modules |= {d for d in dirs if os.path.isfile(os.path.join(folder, d, '__init__.py'))}
        assert sorted(modules - named) == [], os.path.relpath(folder, ROOT)
