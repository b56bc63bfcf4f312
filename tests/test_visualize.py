"""Comparison pictures: a heading too long for the picture is shortened to fit its width."""
import numpy as np

from utils.evaluation import visualize
from utils.evaluation.visualize import BACKGROUND, GAP, LABEL_HEIGHT, TITLE_SCALE, shorten, stack_pictures, text_width

# The heading demo.py gives each task's picture with the bundled weights, and that picture's rows:
# two panels of the bundled samples' 320-px width side by side.
DEMO_TITLE = 'Deblurring: bundled synthetic-data weights model_deblurring_synthetic.pth'
DEMO_ROW_WIDTH = 2 * 320 + GAP


def test_a_long_heading_stays_inside_the_picture():
    picture = stack_pictures([np.zeros((40, DEMO_ROW_WIDTH, 3), np.uint8)], DEMO_TITLE)
    band = picture[:LABEL_HEIGHT + 8]
    assert band.shape[1] == DEMO_ROW_WIDTH + 2 * GAP
    assert band.max() > BACKGROUND  # the heading is drawn
    assert (band[:, -GAP:] == BACKGROUND).all() and (band[:, :GAP] == BACKGROUND).all()  # margins left clear


def test_the_check_sees_a_heading_cut_at_the_edge(monkeypatch):
    # The same picture with the heading drawn whole, as before it was shortened: it runs into the
    # right margin and past the edge.
    monkeypatch.setattr(visualize, 'shorten', lambda text, width, scale: text)
    band = stack_pictures([np.zeros((40, DEMO_ROW_WIDTH, 3), np.uint8)], DEMO_TITLE)[:LABEL_HEIGHT + 8]
    assert not (band[:, -GAP:] == BACKGROUND).all()


def test_shortening_keeps_the_task_and_the_file_name():
    width = DEMO_ROW_WIDTH
    assert text_width(DEMO_TITLE, TITLE_SCALE) > width  # the case to fix
    short = shorten(DEMO_TITLE, width, TITLE_SCALE)
    assert text_width(short, TITLE_SCALE) <= width
    assert short.startswith('Deblurring: bundled synthetic') and short.endswith('_synthetic.pth') and '...' in short
    assert shorten(short, width, TITLE_SCALE) == short  # what fits is left alone
    assert shorten('abcdef', 1, TITLE_SCALE) == '...'  # nothing fits: only the mark that something was cut
