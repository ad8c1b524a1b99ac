"""The page's guide: how to use it, which interpretability choices matter and why, further reading."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import html

HOW_TO = [
    "Upload an image (drag and drop or click the upload box), or pick a sample.",
    "The model runs once per image; every detection is drawn as a box with its label and score, and listed in "
    "the table. Hover a box for its label, score, query index and coordinates in the original image's pixels.",
    "Move the Confidence Threshold slider to hide weak detections: this only filters, the model does not re-run.",
    "Pick a detection in the dropdown, by clicking its box, or by clicking its table row: it is highlighted and "
    "becomes the subject of the explanations.",
]

CHOICES = [
    ("Integrated Gradients baseline",
     "IG attributes the change of the score between a baseline ('no signal') and the image. What 'no signal' "
     "means is a modelling choice: a black image is simple but makes dark objects look unimportant; a blurred or "
     "neutral (mean-colour) baseline keeps colour and removes detail, and is often more meaningful."),
    ("Which conv layer for Grad-CAM",
     "Early layers have fine resolution but see texture and low-level patterns; very late layers are semantic "
     "but coarse. A late backbone conv (the default: the last conv of the last stage) is the usual compromise."),
    ("Number of MC-Dropout samples",
     "More samples give smoother, more stable score histograms and uncertainty estimates, at a cost that grows "
     "with the number of samples."),
    ("Grad-CAM vs Grad-CAM++",
     "Grad-CAM++ weights each position's positive gradients instead of averaging them, which can make small or "
     "repeated objects stand out; vanilla Grad-CAM is simpler to reason about. Here both come from one backward "
     "pass, so switching between them is instant."),
    ("Grad-CAM on a transformer detector",
     "Grad-CAM weights each channel by its gradient averaged over the whole feature map, so its map shows where "
     "the patterns this detection's score depends on occur anywhere in the image, not where this query looked: "
     "DETR's decoder reads the whole map through attention. On the demo model (300 held-out scenes, 1133 "
     "detections) the Grad-CAM map's maximum fell inside the detection's own box for 17% of them (Grad-CAM++ "
     "15%) at the default layer and for at most 37% at any layer, while the gradient magnitude of the same "
     "backward points inside it 61% of the time; over 200 scenes, attention relevance points inside the true box "
     "77% and Integrated Gradients 95% of the time (python -m bench.pointing_game, python -m bench.compare). Read "
     "Grad-CAM on DETR as 'which patterns matter'; for 'which object', use relevance or IG in the Compare view."),
]

READING = [
    ("End-to-End Object Detection with Transformers (DETR, Carion et al. 2020)", "https://arxiv.org/abs/2005.12872"),
    ("Generic Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers "
     "(Chefer et al. 2021)", "https://arxiv.org/abs/2103.15679"),
    ("Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization (Selvaraju et al. 2017)",
     "https://arxiv.org/abs/1610.02391"),
    ("Grad-CAM++: Improved Visual Explanations for Deep Convolutional Networks (Chattopadhay et al.)",
     "https://arxiv.org/abs/1710.11063"),
    ("Visualizing the Impact of Feature Attribution Baselines (Distill 2020)",
     "https://distill.pub/2020/attribution-baselines/"),
    ("Captum: IntegratedGradients documentation", "https://captum.ai/api/integrated_gradients.html"),
    ("Constructing sensible baselines for Integrated Gradients", "https://arxiv.org/abs/2412.13864"),
    ("A New Baseline Assumption of Integrated Gradients Based on Shapley Values", "https://arxiv.org/abs/2310.04821"),
    ("RISE: deletion and insertion metrics (Petsiuk et al. 2018)", "https://arxiv.org/abs/1806.07421"),
    ("Sanity Checks for Saliency Maps (Adebayo et al. 2018)", "https://arxiv.org/abs/1810.03292"),
    ("Dropout as a Bayesian Approximation (Gal & Ghahramani 2016)", "https://arxiv.org/abs/1506.02142"),
]


def guide(extra_choices: list[tuple[str, str]] = ()) -> dbc.Accordion:
    return dbc.Accordion([
        dbc.AccordionItem(html.Ol([html.Li(t) for t in HOW_TO]), title="How to use this dashboard"),
        dbc.AccordionItem([html.Div([html.H6(t), html.P(text)]) for t, text in [*CHOICES, *extra_choices]],
                          title="Key interpretability choices & why they matter"),
        dbc.AccordionItem(html.Ul([html.Li(html.A(t, href=url, target="_blank", rel="noopener")) for t, url in READING]),
                          title="Further reading"),
    ], id="guide", start_collapsed=True, always_open=True, className="mt-3")
