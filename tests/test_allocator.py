"""utils.allocator: glibc keeps freed memory, so a repeated big allocation stops faulting pages in.

Each case runs in a fresh interpreter: mallopt settings last for the process's life.
"""
import os
import platform
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
glibc_only = pytest.mark.skipif(platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc',
                                reason='the allocator settings apply to glibc (Linux) only')

# Allocate and touch four 64 MiB tensors (above glibc's largest mmap threshold, 32 MiB), free them, and count the minor page faults of doing it
# again (a forward pass's activations, in miniature). glibc's default serves such blocks with their
# own mmap and unmaps them on free, so every round faults all 65536 pages (4 KiB) in again; with
# the settings the heap keeps them, and after a few rounds (the heap settles) the count is ~0.
PROBE = r'''
import resource, sys
sys.path.insert(0, {root!r})
from utils.allocator import keep_freed_memory
state = keep_freed_memory()
import torch
def round_trip():
    blocks = [torch.ones(16 << 20) for _ in range(4)]
    del blocks
for _ in range(4):
    round_trip()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
round_trip()
print(state, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
'''


def run_probe(**env):
    environment = {k: v for k, v in os.environ.items() if not k.startswith('MALLOC_') and k != 'MPRNET_ALLOCATOR'}
    environment.update(env)
    done = subprocess.run([sys.executable, '-c', PROBE.format(root=ROOT)], env=environment, capture_output=True,
                          text=True, check=True)
    state, faults = done.stdout.split()
    return state, int(faults)


@glibc_only
@pytest.mark.slow
def test_settings_stop_the_page_faults_of_a_repeated_allocation():
    state, faults = run_probe()
    assert state == 'kept'
    assert faults < 3000  # 256 MiB is 65536 pages; only bookkeeping pages remain
    state, faults = run_probe(MPRNET_ALLOCATOR='system')
    assert state == 'off'
    assert faults > 60000  # every page faulted in again


@glibc_only
@pytest.mark.slow
def test_users_malloc_variables_win():
    state, _ = run_probe(MALLOC_TOP_PAD_='0')
    assert state == 'user'


def test_bad_switch_value_is_named():
    environment = dict(os.environ, MPRNET_ALLOCATOR='fast')
    done = subprocess.run([sys.executable, '-c', f'import sys; sys.path.insert(0, {ROOT!r}); '
                           'from utils.allocator import keep_freed_memory; keep_freed_memory()'],
                          env=environment, capture_output=True, text=True)
    assert done.returncode != 0 and 'MPRNET_ALLOCATOR' in done.stderr
