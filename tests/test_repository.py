"""The repository itself: what a fresh clone gets must work on any machine."""
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tracked_symlinks():
    """(path, target) of every symlink git tracks (mode 120000); skips outside a git checkout."""
    try:
        listing = subprocess.run(['git', 'ls-files', '-s', '-z'], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip('not a git checkout (or no git): nothing tracked to check')
    links = []
    for entry in listing.stdout.decode().split('\0'):
        if entry.startswith('120000 '):
            blob, path = entry.split(' ')[1], entry.split('\t', 1)[1]
            target = subprocess.run(['git', 'cat-file', 'blob', blob], cwd=ROOT, capture_output=True,
                                    check=True).stdout.decode()
            links.append((path, target))
    return links


def points_inside(path: str, target: str) -> bool:
    """Whether a link at `path` (relative to the repository) with `target` stays in the repository."""
    if os.path.isabs(target):
        return False
    resolved = os.path.normpath(os.path.join(os.path.dirname(path), target))
    return not (resolved == '..' or resolved.startswith('..' + os.sep))


def test_points_inside_tells_inside_from_outside():
    assert points_inside('a/link', 'b.txt') and points_inside('a/link', '../c/d.txt')
    assert not points_inside('.venv', '/root/.cache/mprnet/venv')
    assert not points_inside('a/link', '../../elsewhere')


def test_no_tracked_symlink_points_outside_the_repository():
    outside = [f'{path} -> {target}' for path, target in tracked_symlinks() if not points_inside(path, target)]
    assert not outside, ('tracked symlinks point outside the repository (a fresh clone gets a dangling '
                         f'link): {outside}; git rm --cached them')


def test_virtual_environment_is_not_tracked():
    tracked = subprocess.run(['git', 'ls-files', '.venv'], cwd=ROOT, capture_output=True, text=True).stdout
    assert not tracked.strip(), f'.venv is tracked: {tracked.split()}'
