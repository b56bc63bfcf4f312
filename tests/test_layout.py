"""The layout of utils/ (utils/__init__.py's docstring): packages whose imports point one way,
a few leaf modules at the root, no module too long to read, and no comment naming a file that
is not there."""
import ast
import os
import re
import subprocess
from typing import Dict, Iterator, List, Set

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UTILS = os.path.join(ROOT, 'utils')
# The allowed direction: a package imports only from packages earlier in this list.
ORDER = ['files', 'data', 'evaluation', 'inference', 'training']
MAX_ROOT_MODULES = 6
MAX_LINES = 400


def python_files(folder: str) -> Iterator[str]:
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != '__pycache__')
        for name in sorted(files):
            if name.endswith('.py'):
                yield os.path.join(parent, name)


def imported_modules(path: str) -> Set[str]:
    """Every absolute module name a file imports, at any depth (function-level imports too)."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            # `from utils.data import synthetic` imports the module utils.data.synthetic
            names.update(f'{node.module}.{alias.name}' for alias in node.names)
    return names


def package_of(module: str) -> str:
    """'utils.data.blur' -> 'data'; a root leaf module ('utils.padding') -> ''."""
    parts = module.split('.')
    return parts[1] if len(parts) > 1 and parts[1] in ORDER else ''


def test_packages_import_only_earlier_packages():
    wrong: List[str] = []
    for path in python_files(UTILS):
        module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
        own = package_of(module)
        for name in imported_modules(path):
            if not name.startswith('utils.'):
                continue
            other = package_of(name)
            if own == '' and other:
                wrong.append(f'{module} (a root leaf module) imports {name}')
            elif other and ORDER.index(other) > ORDER.index(own):
                wrong.append(f'{module} ({own}) imports {name} ({other}, later in {" <- ".join(ORDER)})')
    assert wrong == []


def test_the_order_check_sees_a_wrong_import():
    # The rule above on a made-up case: data importing training is the wrong way round.
    assert ORDER.index(package_of('utils.training.loop')) > ORDER.index(package_of('utils.data.synthetic'))
    assert package_of('utils.padding') == '' and package_of('utils.inference') == 'inference'


def test_utils_holds_packages_and_a_few_root_modules():
    entries = sorted(e for e in os.listdir(UTILS) if e != '__pycache__')
    packages = [e for e in entries if os.path.isfile(os.path.join(UTILS, e, '__init__.py'))]
    modules = [e for e in entries if e.endswith('.py') and e != '__init__.py']
    assert sorted(packages) == sorted(ORDER)
    assert len(modules) <= MAX_ROOT_MODULES, modules
    assert sorted(packages + modules + ['__init__.py']) == entries, 'only packages and modules in utils/'


def tracked_files() -> List[str]:
    """The files git tracks (the repository's own), else every file below ROOT outside a checkout."""
    try:
        out = subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        return [p for p in out.splitlines() if os.path.isfile(os.path.join(ROOT, p))]
    except (OSError, subprocess.CalledProcessError):
        return [os.path.relpath(os.path.join(parent, name), ROOT) for parent, _, files in os.walk(ROOT)
                for name in files]




def test_no_module_outside_tests_and_benchmarks_is_over_400_lines():
    long: Dict[str, int] = {}
    for path in tracked_files():
        if path.endswith('.py') and not path.startswith(('tests/', 'benchmarks/')):
            with open(os.path.join(ROOT, path), encoding='utf-8') as f:
                count = sum(1 for _ in f)
            if count > MAX_LINES:
                long[path] = count
    assert long == {}


# A repository path: a top-level folder of this repository, then folders, then a file name with an
# extension. Only after a space, a quote, a bracket or a backtick (not inside a URL or another path).
TOP_FOLDERS = ('utils', 'benchmarks', 'scripts', 'docs', 'tests', 'samples', 'pretrained_models', 'Deblurring',
               'Deraining', 'Denoising', '.ci')
PATH = re.compile(r'(?<![\w./:-])((?:' + '|'.join(re.escape(t) for t in TOP_FOLDERS) +
                  r')/(?:[\w.-]+/)*[\w-]+\.(?:py|md|sh|yml|yaml|toml|png|pth|txt|json))(?![\w/])')


def named_paths(text: str, python: bool) -> Iterator[str]:
    """Paths named in the comments and docstrings of Python source, or anywhere in other text."""
    if not python:
        yield from PATH.findall(text)
        return
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield from PATH.findall(node.value)  # docstrings and the strings messages are built of
    for line in text.splitlines():
        if '#' in line:
            yield from PATH.findall(line[line.index('#'):])


def test_every_file_path_named_in_code_and_docs_exists():
    missing = []
    for path in tracked_files():
        if not path.endswith(('.py', '.md', '.sh', '.yml')):
            continue
        with open(os.path.join(ROOT, path), encoding='utf-8') as f:
            text = f.read()
        for named in set(named_paths(text, path.endswith('.py'))):
            # Globs and placeholders (``Deblurring/*.py``, ``<Task>/test.py``) never match PATH.
            if not os.path.exists(os.path.join(ROOT, named)) and not git_ignores(named):
                missing.append(f'{path}: {named}')
    assert missing == []


def git_ignores(path: str) -> bool:
    """Whether git ignores `path`: an output a command writes (samples/output/, benchmarks/results/),
    named as where it goes, not a file of the repository."""
    try:
        return subprocess.run(['git', 'check-ignore', '-q', path], cwd=ROOT).returncode == 0
    except OSError:
        return False


def test_the_path_check_finds_a_stale_path():
    text = 'see utils/padding.py and `utils/inference/cli.py`; https://x.org/utils/a.py is not ours'
    assert list(named_paths(text, python=False)) == ['utils/padding.py', 'utils/inference/cli.py']
