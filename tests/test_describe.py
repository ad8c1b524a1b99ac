"""Figures in words: the caption each builder writes names the top value and where it is."""
import numpy as np

from components.describe import boxes_sentence, description, top_cell
from components.figures import add_boxes, image_figure
from components.heatmaps import add_heatmap
from components.uncertainty import score_histogram

DETS = [{"index": 3, "label": "circle", "score": 0.91, "box": [10, 20, 50, 60]},
        {"index": 7, "label": "square", "score": 0.97, "box": [60, 5, 90, 40]}]


def test_top_cell_is_the_argmax_at_its_cell_centre():
    values = np.zeros((4, 5))
    values[2, 3] = 7.0
    assert top_cell(values, xs=np.arange(5) * 10 + 5, ys=np.arange(4) * 10 + 5) == (7.0, 35.0, 25.0)


def test_boxes_are_described_with_the_highest_and_the_picked_one():
    text = boxes_sentence(DETS, 3)
    assert text == ("2 detections drawn as boxes; highest: square 0.97 at x 60-90, y 5-40 px. "
                    "Picked: 3: circle 0.91 at x 10-50, y 20-60 px.")
    assert boxes_sentence([], None) == "No detection above the threshold."


def test_a_heatmap_figure_says_its_highest_value_and_where():
    fig = add_boxes(image_figure("data:,", 100, 80, 100, 80), DETS, 3)
    values = np.zeros((8, 10))
    values[6, 1] = 0.5  # cell (row 6, col 1) of a 10 x 8 grid over 100 x 80 px: centre x 15, y 65
    add_heatmap(fig, values, 100, 80, title="Grad-CAM")
    text = description(fig)
    assert text.startswith("2 detections drawn as boxes")
    assert text.endswith("Heatmap of Grad-CAM over the image: highest value 0.5 at x 15, y 65 px.")
    assert description(fig.to_plotly_json()) == text  # what the page's caption callback reads


def test_the_score_histogram_says_where_most_samples_are():
    # std = sqrt((0.145² + 0.155² + 0.165² + 0.465²) / 4) = sqrt(0.072125) = 0.2686
    fig = score_histogram([0.81, 0.82, 0.83, 0.2], "circle", 0.8, 0.7, bins=10)
    assert description(fig) == ("Histogram of the circle's score over 4 samples: mean 0.665, std 0.269, "
                                "deterministic 0.800; most samples (3) between 0.80 and 0.90.")
