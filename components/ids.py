"""Every component id, in one place."""

UPLOAD = "upload"
UPLOAD_MESSAGE = "upload-message"
MODEL_BANNER = "model-banner"
SAMPLES = "samples"
SAMPLE = "sample"               # pattern-matching id: {"type": SAMPLE, "name": ...}
NEW_SCENE = "new-scene"
SHOW_TRUTH = "show-truth"
IMAGE_STORE = "image-store"     # {image_id, width, height, name, truth?}
DETECTIONS_STORE = "detections-store"
THRESHOLD = "threshold"
PICKER = "picker"
FIGURE = "detection-figure"
TABLE = "detection-table"
DETECTION_COUNT = "detection-count"
DETECT_STATUS = "detect-status"
DETECT_CANCEL = "detect-cancel"

# explanation card: one group of controls per method family, generated from the registry and the
# parameter declarations (ids below), so a new method needs no new ids
METHOD = "method"
TARGET = "explain-target"
IG_ABSOLUTE = "ig-absolute"


def group_id(family: str) -> str:
    return f"{family}-group"


def variant_id(family: str) -> str:
    return f"{family}-variant"


def param_id(family: str, name: str) -> str:
    return f"{family}-{name}"


CAM_VARIANT, CAM_LAYER = variant_id("cam"), param_id("cam", "layer")
IG_STEPS, IG_RESOLUTION = param_id("ig", "steps"), param_id("ig", "resolution")
OPACITY = "opacity"
EXPLAIN = "explain"
EXPLAIN_CANCEL = "explain-cancel"
EXPLAIN_PROGRESS = "explain-progress"
EXPLAIN_RESULT = "explain-result"
EXPLAIN_FIGURE = "explain-figure"
EXPLAIN_INFO = "explain-info"
MAP_UNCERTAINTY = "map-uncertainty"     # switch: the map's mean and std over the MC-Dropout samples
EXPLAIN_STD_FIGURE = "explain-std-figure"
EXPLAIN_PREVIEW = "explain-preview"  # early maps of a running job (progress output)
EXPLAIN_PREVIEW_SHOWN = "explain-preview-shown"  # the same, each new one once
EXPLAIN_PREVIEW_VIEW = "explain-preview-view"  # its drawing, for the page unless the final map is there
EXPLAIN_CANCELLED = "explain-cancelled"  # the request of the run the person cancelled: its drawings stay away

# compare view
COMPARE = "compare"
COMPARE_CANCEL = "compare-cancel"
COMPARE_PROGRESS = "compare-progress"
COMPARE_NORM = "compare-norm"
COMPARE_INFO = "compare-info"
COMPARE_GRID = "compare-grid"
COMPARE_PANEL = "compare-panel"         # pattern-matching id: {"type": COMPARE_PANEL, "method": ...}
COMPARE_TABLE = "compare-table"
COMPARE_TABLE_GROUP = "compare-table-group"
COMPARE_RESULT = "compare-result"       # a reference: the comparison stays in the server-side cache
COMPARE_IG_CHOSEN = "compare-ig-chosen"  # which IG controls the person has touched
COMPARE_PREVIEW = "compare-preview"     # a running comparison's results so far (progress output)
COMPARE_PREVIEW_SHOWN = "compare-preview-shown"  # the same, each new one once
COMPARE_PREVIEW_VIEW = "compare-preview-view"  # its drawing, for the page unless the final result is there
COMPARE_CANCELLED = "compare-cancelled"  # the request of the run the person cancelled: its drawings stay away
COMPARE_EXPORT_PNG = "compare-export-png"
COMPARE_EXPORT_JSON = "compare-export-json"
COMPARE_DOWNLOAD_PNG = "compare-download-png"
COMPARE_DOWNLOAD_JSON = "compare-download-json"
SANITY = "sanity"
SANITY_CANCEL = "sanity-cancel"
SANITY_PROGRESS = "sanity-progress"
SANITY_RESULT = "sanity-result"
SANITY_FIGURE = "sanity-figure"
SANITY_INFO = "sanity-info"

# tabs, and the Evaluate tab
TABS = "tabs"
EXPLAIN_TAB = "explain-tab"        # a tab's id is its link's DOM id: not "explain", the Explain button's
PENDING_PICK = "pending-pick"     # a detection to pick once its image's detections arrive
EVAL_SOURCE = "eval-source"
EVAL_METHODS = "eval-methods"
EVAL_RUN = "eval-run"
EVAL_CANCEL = "eval-cancel"
EVAL_PROGRESS = "eval-progress"
EVAL_INFO = "eval-info"
EVAL_FIGURES = "eval-figures"
EVAL_WORST = "eval-worst"
EVAL_WORST_GROUP = "eval-worst-group"
EVAL_RESULT = "eval-result"

# uncertainty (MC Dropout)
MC_SAMPLES = "mc-samples"
MC_DROPOUT = "mc-dropout"
MC_DROPOUT_NOTE = "mc-dropout-note"
MC_TRAINED = "mc-trained-dropout"     # store: the loaded model's trained dropout rate
MC_SEED = "mc-seed"
MC_RUN = "mc-run"
MC_CANCEL = "mc-cancel"
MC_PROGRESS = "mc-progress"
MC_RESULT = "mc-result"               # a reference: the samples stay in the server-side cache
MC_IDENTITY = "mc-identity"
MC_INFO = "uncertainty-info"
MC_FIGURE = "uncertainty-figure"
MC_DETAIL = "uncertainty-detail"
MC_HISTOGRAM = "uncertainty-histogram"
MC_STATS = "uncertainty-stats"
MC_PREVIEW = "mc-preview"             # a running MC-Dropout job's samples so far (progress output)
MC_PREVIEW_SHOWN = "mc-preview-shown"  # the same, each new one once
MC_PREVIEW_VIEW = "mc-preview-view"    # its drawing, for the page unless the final result is there
MC_CANCELLED = "mc-cancelled"          # the request of the run the person cancelled: its drawings stay away

# shareable link (callbacks/links.py)
LOCATION = "location"
LINK_TEXT = "link-text"
LINK_COPY = "link-copy"
LINK_COPIED = "link-copied"
LINK_MESSAGE = "link-message"

# figure captions (components/describe.py): the accessible name and description of each figure
CAPTIONED = (FIGURE, EXPLAIN_FIGURE, EXPLAIN_STD_FIGURE, MC_FIGURE, MC_HISTOGRAM, SANITY_FIGURE)


def caption_id(graph_id: str) -> str:
    return f"{graph_id}-caption"
