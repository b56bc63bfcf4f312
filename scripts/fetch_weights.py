"""Download the official MPRNet checkpoints from Google Drive into pretrained_models/, verified.

    pip install -e '.[fetch]'                        # gdown, the one extra this needs
    python scripts/fetch_weights.py                  # all three tasks
    python scripts/fetch_weights.py --task Deraining

Each file comes from the Drive file the published README links (gdown, with a progress bar)
into a private temporary folder, and is kept under the name the weights lookup expects
(pretrained_models/model_<task>.pth) only once it loads strictly into its task's preset with
every tensor finite. Its SHA-256 goes into pretrained_models/official_weights.json; a later
download with another SHA-256 is refused (or, with --overwrite, taken and reported). A file
already there is kept unless --overwrite.

Exit 0: every task asked for is there; 2: a download failed (no network, Drive's quota or
virus-scan page instead of the file, a truncated file, another task's model): one line says
which and what to do, and nothing of it is left behind.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from MPRNet import MPRNet, PRESETS  # noqa: E402
from utils.files.atomic import atomic_output, write_atomically  # noqa: E402
from utils.files.checkpoint import CheckpointMismatchError, CheckpointReadError, load_weights  # noqa: E402
from utils.files.weights import REPO_ROOT  # noqa: E402
from utils.inference.cli import UsageError, run_main, task_type  # noqa: E402

# The Google Drive files of the published README (github.com/swz30/MPRNet, "Pretrained models").
DRIVE_IDS = {'Deblurring': '1QwQUVbk6YVOJViCsOKYNykCsdJSVGRtb',
             'Deraining': '1O3WEJbcat7eTY6doXWeorAbQ1l_WmMnM',
             'Denoising': '1LODPt9kYmxwU98g96UrRA0_Eh5HYcsRw'}
MANIFEST = 'official_weights.json'
CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A download that cannot be kept; the message names the file and what to do."""


def drive_url(task: str) -> str:
    return f'https://drive.google.com/file/d/{DRIVE_IDS[task]}/view'


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK), b''):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: str) -> Dict[str, Dict]:
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding='utf-8') as f:
            manifest = json.load(f)
    except (OSError, ValueError) as err:
        raise UsageError(f'cannot read {path} ({err}); it records the SHA-256 of downloaded weights: repair or '
                         'delete it') from err
    if not isinstance(manifest, dict):
        raise UsageError(f'{path} is not a JSON object of file names; repair or delete it')
    return manifest


def download(task: str, output: str) -> None:
    """Drive's file for `task` to `output`, through gdown (imported here: an optional extra)."""
    try:
        import gdown
    except ImportError as err:
        raise UsageError("gdown is not installed: pip install -e '.[fetch]' (or pip install gdown), or download "
                         f'the file in a browser from {drive_url(task)}') from err
    gdown.download(id=DRIVE_IDS[task], output=output, quiet=False)


def verify(path: str, task: str, name: str, folder: str) -> None:
    """FetchError unless `path` holds `task`'s released model: not a web page, readable, strictly
    fitting the task's preset, every tensor finite (load_weights)."""
    by_hand = f'download it in a browser from {drive_url(task)} into {folder}/'
    with open(path, 'rb') as f:
        head = f.read(1024).lstrip().lower()
    if head.startswith((b'<!doctype html', b'<html')) or b'<html' in head:
        raise FetchError(f'Google Drive sent a web page instead of {name} (its download quota is used up for now, '
                         f'or it shows a warning page): try again later, or {by_hand}')
    if not head:
        raise FetchError(f'Google Drive sent an empty file for {name}: try again, or {by_hand}')
    try:
        load_weights(MPRNet.for_task(task), path, source_name=f'{name} from Google Drive')
    except (CheckpointReadError, CheckpointMismatchError) as err:
        first = str(err).splitlines()
        detail = ' '.join(line.strip() for line in first if 'looks like' in line) or first[0]
        raise FetchError(f'{name} from Google Drive is not the {task} model: {detail}. Try again, or {by_hand}') from err


def fetch(task: str, folder: str, overwrite: bool, manifest: Dict[str, Dict]) -> str:
    """Download, verify and keep `task`'s checkpoint in `folder`; returns the line to print."""
    name = f'model_{task.lower()}.pth'
    path = os.path.join(folder, name)
    if os.path.exists(path) and not overwrite:
        return f'{task}: kept {path}, already there (--overwrite downloads it again)'
    os.makedirs(folder, exist_ok=True)
    # A private folder: whatever gdown writes (partial files included) goes with it.
    staging = tempfile.mkdtemp(prefix='.fetch-', dir=folder)
    try:
        downloaded = os.path.join(staging, name)
        try:
            download(task, downloaded)
        except UsageError:
            raise
        except Exception as err:  # gdown and requests raise many kinds: every one means no file
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise FetchError(f'cannot download {name} from Google Drive ({reason}): check the network '
                             f'connection and try again, or download it in a browser from {drive_url(task)} into '
                             f'{folder}/') from err
        if not os.path.isfile(downloaded):
            raise FetchError(f'Google Drive sent nothing for {name}; try again, or download it in a browser from '
                             f'{drive_url(task)} into {folder}/')
        verify(downloaded, task, name, folder)
        digest, size = sha256_of(downloaded), os.path.getsize(downloaded)
        recorded = manifest.get(name, {}).get('sha256') if isinstance(manifest.get(name), dict) else None
        if recorded and recorded != digest and not overwrite:
            raise FetchError(f'{name} from Google Drive has SHA-256 {digest}, but {os.path.join(folder, MANIFEST)} '
                             f'recorded {recorded}: the file on Drive changed. Nothing was replaced; rerun with '
                             '--overwrite to keep the new one')
        with atomic_output(path, durable=True) as tmp:
            os.replace(downloaded, tmp)  # the verified file, renamed into place by the atomic writer
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manifest[name] = {'sha256': digest, 'bytes': size, 'task': task, 'drive_id': DRIVE_IDS[task]}
    text = json.dumps(manifest, indent=2, sort_keys=True) + '\n'
    write_atomically(os.path.join(folder, MANIFEST), lambda f: f.write(text.encode('utf-8')), durable=True)
    changed = f'; SHA-256 changed from the recorded {recorded}' if recorded and recorded != digest else ''
    return (f'{task}: {path} ({size / 2 ** 20:.1f} MiB) loads strictly into the {task} model, every tensor '
            f'finite; SHA-256 {digest}{changed}')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     epilog='Exit code 0: every task asked for is there; 2: a download failed.')
    parser.add_argument('--task', default='all', type=lambda t: t if t.lower() == 'all' else task_type(t),
                        metavar='|'.join((*PRESETS, 'all')), help='which checkpoint to download (default: all)')
    parser.add_argument('--out_dir', default=os.path.join(REPO_ROOT, 'pretrained_models'),
                        help='where the weights lookup finds them (default: %(default)s)')
    parser.add_argument('--overwrite', action='store_true',
                        help='download again and replace files that are there, even with another SHA-256')
    return parser.parse_args(argv)


def fetch_all(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    tasks: List[str] = list(PRESETS) if args.task.lower() == 'all' else [args.task]
    manifest = read_manifest(args.out_dir)
    for task in tasks:
        print(fetch(task, args.out_dir, args.overwrite, manifest), flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(fetch_all, argv)


if __name__ == '__main__':
    sys.exit(main())
