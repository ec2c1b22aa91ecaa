"""The pages' own words: every English text the two pages show, marked for gettext.

English is the key, as everywhere in cnnlab: the text of each `data-i18n` element of
static/index.html and static/run.html (white space squeezed, as i18n.js squeezes it), each
`data-i18n-title` tooltip, and each string the scripts pass to tr(), trf() or N_(). Their
translations live in the one catalogue, cnnlab/locale/ko/LC_MESSAGES/cnnlab.po, beside the
command line's (`pybabel extract` finds the N_ marks here; see cnnlab/i18n.py); the server
sends them to the pages as GET /api/i18n.js (before static/i18n.js) and GET /api/i18n.
tests/test_i18n_pages.py fails when a page shows a text that is not listed here or has no
Korean. Only the standard library and cnnlab.i18n: no torch.
"""

from __future__ import annotations

import json
from functools import cache

from cnnlab.i18n import LANGUAGES, N_, SOURCE_LANGUAGE, translate

# The drawing page (index.html, app.js).
DRAWING_PAGE = (
    N_("cnnlab: draw and watch the network think"),
    N_("loading the model…"),
    N_("Draw or drop an image"),
    N_("Clear"),
    N_("brush"),
    N_("ink"),
    N_("centre like MNIST"),
    N_("invert"),
    N_("Drop an image here, or"),
    N_("choose a file"),
    N_("Prediction"),
    N_("What the network sees"),
    N_("Where it looked (Grad-CAM)"),
    N_("Every layer's output"),
    N_("Each channel is scaled on its own: its smallest value black, its largest white."),
    N_("The model, layer by layer"),
    N_("The run's report (curves, confusion matrix, scores, filters, projector):"),
    N_("layer"),
    N_("output"),
    N_("how the size comes about"),
    N_("params"),
    N_("total"),
    N_("all"),
    N_("input"),
    N_("classes"),
    N_("test accuracy"),
    N_("engine"),
    N_("Your drawing ({drawing}) is resized to {input} on the server."),
    N_("The uploaded file {name} ({size}) is resized to {input} on the server."),
    N_("size unknown"),
    N_("MNIST-style: crop to the ink, fit into 20x20, centre by centre of mass"),
    N_("for dark-on-light photos of digits"),
    N_("no"),
    N_("auto"),
    N_("yes"),
    N_("{engine}: {ms} ms on the server"),
    N_('Grad-CAM for "{name}" at {layer}: blue no evidence, red the most.'),
    N_("no class activation map: {error}"),
    N_("(first {n} channels)"),
    N_("cannot load the model: {error}"),
)

# One cell worked out (index.html's panel, cell.js: the words of `cnnlab explain cell`).
CELL_PANEL = (
    N_("Click any cell of a map to see how its number came about."),
    N_("How this number came about"),
    N_("back"),
    N_("Click a cell of the window to go one layer down."),
    N_("it reads {name} (layer {index}, {shape}), one layer down"),
    N_("channel {n} of {below}: {where}"),
    N_("rows {rows}, columns {cols}"),
    N_("max pooling"),
    N_("min pooling"),
    N_("average pooling"),
    N_("global average pooling: the whole map of channel {n}"),
    N_("global max pooling: the whole map of channel {n}"),
    N_("the {shown} largest of {count} products input x weight"),
    N_("the other {count} products, added up"),
    N_("sum over channels"),
    N_("sum of the products"),
    N_("plus the bias"),
    N_("the block's layers' output plus its input"),
    N_("the block's layers' output plus its shortcut's output"),
    N_(
        "batchnorm with the running statistics (eval mode): (x - mean)/sqrt(var + eps) x gamma "
        "+ beta"
    ),
    N_("activation {function}"),
    N_("softmax: exp of this value over the sum of the exps of all {count}"),
    N_("the input pixel, normalised as in training"),
    N_("dropout is off when predicting: the value passes unchanged"),
    N_("flatten: value {i} is cell [{c}][{y}][{x}] of the maps (c x H*W + y x W + x)"),
    N_("total: {total}; torch's output at this cell: {value} ({verdict})"),
    N_("agrees with torch"),
    N_("DIFFERS from torch"),
    N_("window"),
    N_("the value one layer down"),
    N_("kernel"),
    N_("products"),
    N_("index"),
    N_("weight"),
    N_("exp(z - max)"),
)

# The run report (run.html, run.js).
RUN_REPORT = (
    N_("cnnlab: run report"),
    N_("loading the run…"),
    N_("draw and predict"),
    N_("run report"),
    N_("Training curves"),
    N_("one point per epoch, from the run's metrics.csv"),
    N_("Confusion matrix"),
    N_("evaluating the test split…"),
    N_(
        "rows: true class, columns: predicted; shade: share of the row. Click a cell to see "
        "its images"
    ),
    N_("Scores per class"),
    N_("the numbers of"),
    N_("loss"),
    N_("accuracy"),
    N_("learning rate"),
    N_("train"),
    N_("validation"),
    N_("lr"),
    N_("epoch"),
    N_("true ↓  predicted →"),
    N_("class"),
    N_("precision"),
    N_("recall"),
    N_("support"),
    N_("channel"),
    N_("Filters of the first conv layer"),
    N_(
        "blue negative, white 0, red positive, one scale for the layer (RGB filters: each "
        "input channel as its colour, grey 0)"
    ),
    N_("What the filters respond to"),
    N_("For each channel of"),
    N_(
        ": the test images whose largest activation is largest, each cropped to the window of "
        "input pixels behind it (its receptive field; grey: padding outside the image)."
    ),
    N_("Projector"),
    N_(
        "each test image's penultimate features (the input of the last fc layer), by PCA; a "
        "ring: misclassified. Hover a point to see its image"
    ),
    N_("data"),
    N_("test"),
    N_("test {value}"),
    N_("{series}, epoch {epoch}: {value}"),
    N_("{count} {split} images of {data}: accuracy {accuracy}"),
    N_("true {true}, predicted {predicted}: {count} ({share} of the row)"),
    N_("{name}, predicted right"),
    N_("{true} taken for {predicted}"),
    N_("loading…"),
    N_("the first {shown} of {count} images"),
    N_("1 image"),
    N_("{count} images"),
    N_('under each: the probability of "{predicted}"'),
    N_('under each: the probabilities of "{predicted}" and of "{true}"'),
    N_(
        'over each: its Grad-CAM for "{predicted}" at {layer} ({size} map; blue none, red '
        "the most evidence; point at it for the image alone)"
    ),
    N_("test #{index}"),
    N_("test image {index}"),
    N_('where the model saw "{name}" (Grad-CAM)'),
    N_(
        "accuracy {accuracy} · balanced accuracy {balanced} · majority baseline {baseline} "
        '(always "{name}") · loss {loss}'
    ),
    N_("one RGB tile per filter"),
    N_("rows: filters, columns: {count} input channels"),
    N_("one tile per filter"),
    N_("{layer}: {spec}, weights {shape}; {what}"),
    N_("(the first {count})"),
    N_("scale ±{scale}"),
    N_(
        "{layer}: {spec}, {shape}; each cell sees {field} px, cells {jump} px apart; {count} "
        "images searched"
    ),
    N_("{file} ({label}): activation {value} at {position}"),
    N_(
        "{shown} of {total} {data} images, {wrong} misclassified; {features} features (input "
        "of {layer}); axes: {axes}"
    ),
    N_("{name}: {label}, taken for {predicted}"),
    N_("cannot load the run: {error}"),
)

PAGE_TEXT: tuple[str, ...] = tuple(dict.fromkeys(DRAWING_PAGE + CELL_PANEL + RUN_REPORT))


@cache
def dictionary(language: str) -> dict[str, str]:
    """{English: translation} of every page text the catalogue of `language` translates."""
    found = {english: translate(english, language) for english in PAGE_TEXT}
    return {english: text for english, text in found.items() if text and text != english}


def dictionaries() -> dict[str, dict[str, str]]:
    """Each catalogue's dictionary, by language ('ko': {...}); English, the source, needs none."""
    return {language: dictionary(language) for language in LANGUAGES if language != SOURCE_LANGUAGE}


@cache
def script() -> str:
    """GET /api/i18n.js: the dictionaries as one JavaScript constant, read by static/i18n.js."""
    text = json.dumps(dictionaries(), ensure_ascii=False, indent=0, sort_keys=True)
    return (
        f"// cnnlab's page texts, from its gettext catalogues (cnnlab/server/page_text.py)\n"
        f"const DICTIONARIES_FROM_SERVER = {text};\n"
    )
