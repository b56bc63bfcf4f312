"""Pictures a person can open: every input beside its result, labelled, in one PNG.

    python -m utils.evaluation.visualize a.png b.png --out both.png   # stack finished pictures vertically
"""
import argparse
import os
import sys
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from utils.files.image_io import DEFAULT_MAX_MEGAPIXELS, read_image, shrink_to_fit, to_uint8, write_image

__all__ = ['drawable', 'text_width', 'shorten', 'labelled_panel', 'panel_side', 'comparison_picture',
           'write_comparison', 'stack_pictures']

PANEL_SIDE = 480        # longest side of each picture in a comparison, in pixels
# A comparison of many photos shrinks its panels to stay within this many megapixels (down to
# MIN_PANEL_SIDE): the picture, not the number of photos, sets its memory.
COMPARE_MEGAPIXELS = 40.0
MIN_PANEL_SIDE = 48
LABEL_HEIGHT = 28
BACKGROUND = 30         # dark grey around and between the panels (8-bit: OpenCV draws text on uint8 only)
GAP = 8
FONT = cv2.FONT_HERSHEY_SIMPLEX
TITLE_SCALE, LABEL_SCALE = 0.65, 0.55


def drawable(text: str) -> str:
    """`text` with every character outside printable ASCII replaced by '?'. OpenCV's Hershey fonts
    draw ASCII only, and a file name that is not valid UTF-8 (Python keeps its bytes as lone
    surrogates) crashed cv2.putText with a segmentation fault."""
    return ''.join(c if ' ' <= c <= '~' else '?' for c in text)


def _text(canvas: np.ndarray, text: str, x: int, y: int, scale: float = LABEL_SCALE) -> None:
    cv2.putText(canvas, drawable(text), (x, y), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)


def text_width(text: str, scale: float) -> int:
    """Pixels `text` takes when drawn at `scale` (as drawn: non-ASCII characters become '?')."""
    return cv2.getTextSize(drawable(text), FONT, scale, 1)[0][0]


def shorten(text: str, width: int, scale: float) -> str:
    """`text` if it fits in `width` pixels at `scale`, else its start and its end around '...',
    as much of both as fits: a heading keeps its task and kind, and the file name it ends with."""
    if text_width(text, scale) <= width:
        return text
    for keep in range(len(text) - 1, 0, -1):
        short = text[:(keep + 1) // 2] + '...' + text[len(text) - keep // 2:]
        if text_width(short, scale) <= width:
            return short
    return '...'


def labelled_panel(img: np.ndarray, label: str, side: int = PANEL_SIDE) -> np.ndarray:
    """(H, W, 3) float image in [0, 1], shrunk to fit `side`, with `label` written in a band above
    it; returned as uint8."""
    img = to_uint8(shrink_to_fit(np.asarray(img, dtype=np.float32), side))
    panel = np.full((img.shape[0] + LABEL_HEIGHT, img.shape[1], 3), BACKGROUND, dtype=np.uint8)
    panel[LABEL_HEIGHT:] = img
    _text(panel, label, 4, LABEL_HEIGHT - 9)
    return panel


def _row(panels: Sequence[np.ndarray]) -> np.ndarray:
    height = max(p.shape[0] for p in panels)
    width = sum(p.shape[1] for p in panels) + GAP * (len(panels) - 1)
    row = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    x = 0
    for p in panels:
        row[:p.shape[0], x:x + p.shape[1]] = p
        x += p.shape[1] + GAP
    return row


def stack_pictures(pictures: Sequence[np.ndarray], title: Optional[str] = None) -> np.ndarray:
    """Pictures (uint8, or float in [0, 1]) one above the other on a dark background, with an
    optional title band on top (shortened in the middle to the picture's width); returned as uint8."""
    pictures = [p if p.dtype == np.uint8 else to_uint8(p) for p in pictures]
    width = max(p.shape[1] for p in pictures) + 2 * GAP
    parts = []
    if title:
        band = np.full((LABEL_HEIGHT + 8, width, 3), BACKGROUND, dtype=np.uint8)
        _text(band, shorten(title, width - 2 * GAP, TITLE_SCALE), GAP, LABEL_HEIGHT - 4, TITLE_SCALE)
        parts.append(band)
    for p in pictures:
        padded = np.full((p.shape[0] + GAP, width, 3), BACKGROUND, dtype=np.uint8)
        padded[GAP // 2:GAP // 2 + p.shape[0], GAP:GAP + p.shape[1]] = p
        parts.append(padded)
    return np.concatenate(parts, axis=0)


def panel_side(count: int, side: int = PANEL_SIDE) -> int:
    """The largest panel side, at most `side` and a multiple of 8 (at least MIN_PANEL_SIDE), at
    which `count` rows of two panels fit in COMPARE_MEGAPIXELS (row: side + label and gap high,
    two sides and three gaps wide)."""
    def pixels(s: int) -> int:
        return count * (s + LABEL_HEIGHT + GAP) * (2 * s + 3 * GAP)

    while side > MIN_PANEL_SIDE and pixels(side) > COMPARE_MEGAPIXELS * 1e6:
        side = max(MIN_PANEL_SIDE, side - 8)
    return side


def comparison_picture(pairs: Sequence[Tuple[str, str]], title: Optional[str] = None, side: int = PANEL_SIDE,
                       max_megapixels: Optional[float] = DEFAULT_MAX_MEGAPIXELS) -> np.ndarray:
    """One row per (input file, result file): the input and its result side by side, labelled.
    `max_megapixels` is the reader's pixel limit (the run's --max_megapixels)."""
    side = panel_side(len(pairs), side)
    rows = []
    for src, dst in pairs:
        name = os.path.basename(src)
        rows.append(_row([labelled_panel(read_image(src, max_megapixels)[0], f'input: {name}', side),
                          labelled_panel(read_image(dst, max_megapixels)[0], 'restored', side)]))
    if not rows:
        raise ValueError('nothing to compare: no restored images')
    return stack_pictures(rows, title)


def write_comparison(pairs: Sequence[Tuple[str, str]], path: str, title: Optional[str] = None,
                     max_megapixels: Optional[float] = DEFAULT_MAX_MEGAPIXELS) -> None:
    """Write ``comparison_picture`` as an 8-bit image at `path` (its folder is created)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_image(path, comparison_picture(pairs, title, max_megapixels=max_megapixels), bit_depth=8)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description='Stack finished pictures (e.g. comparisons) vertically in one PNG.')
    parser.add_argument('pictures', nargs='+', help='image files, top to bottom')
    parser.add_argument('--out', required=True, help='the PNG to write')
    parser.add_argument('--title', default=None, help='a line of text above the pictures')
    args = parser.parse_args(argv)
    try:
        stacked = stack_pictures([read_image(p)[0] for p in args.pictures], args.title)
        write_image(args.out, stacked, bit_depth=8)
    except (OSError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
