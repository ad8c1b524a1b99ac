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
    ("Which layer for the CAM maps",
     "Early layers have fine resolution but see texture and low-level patterns; very late layers are semantic "
     "but coarse. Each variant starts at the layer where it measured best on the demo model (Grad-CAM's "
     "classic choice, the last conv, is one of the options); the input projection and the encoder output put the "
     "map where the transformer reads it."),
    ("Number of MC-Dropout samples",
     "More samples give smoother, more stable score histograms and uncertainty estimates, at a cost that grows "
     "with the number of samples."),
    ("Grad-CAM, Grad-CAM++ and the element-wise variants",
     "Grad-CAM++ weights each position's positive gradients instead of averaging them; HiResCAM, element-wise "
     "Grad-CAM and LayerCAM keep the gradient at each position instead of averaging it into one weight per "
     "channel. All five come from one backward pass, so switching between them is instant."),
    ("Grad-CAM on a transformer detector",
     "Grad-CAM weights each channel by its gradient averaged over the whole feature map, and DETR's decoder reads "
     "the whole map through attention, so that weight says which patterns this detection's score depends on, "
     "wherever they occur: on the demo model (300 held-out scenes, 1133 detections) the Grad-CAM map's maximum "
     "falls inside the detection's own box for 37% of them at its best layer (Grad-CAM++ 34%). Element-wise maps "
     "multiply gradient and activation at each position before summing over channels, so only what this query "
     "actually read lights up: element-wise Grad-CAM points inside the box for 91% of the detections (93% of those "
     "with IoU > 0.9 to a true box), LayerCAM 90%, HiResCAM 84%, ODAM 76% (python -m bench.pointing_game), "
     "which is why element-wise Grad-CAM is the default."),
]

READING = [
    ("End-to-End Object Detection with Transformers (DETR, Carion et al. 2020)", "https://arxiv.org/abs/2005.12872"),
    ("Generic Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers "
     "(Chefer et al. 2021)", "https://arxiv.org/abs/2103.15679"),
    ("Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization (Selvaraju et al. 2017)",
     "https://arxiv.org/abs/1610.02391"),
    ("Grad-CAM++: Improved Visual Explanations for Deep Convolutional Networks (Chattopadhay et al.)",
     "https://arxiv.org/abs/1710.11063"),
    ("Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional neural networks "
     "(Draelos & Carin 2020)", "https://arxiv.org/abs/2011.08891"),
    ("LayerCAM: Exploring Hierarchical Class Activation Maps for Localization (Jiang et al. 2021)",
     "https://doi.org/10.1109/TIP.2021.3089943"),
    ("ODAM: Gradient-based Instance-Specific Visual Explanations for Object Detection (Zhao & Chan, ICLR 2023)",
     "https://arxiv.org/abs/2304.06354"),
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
