"""`cnnlab cam`: class activation maps with a known answer, the sanity check, occlusion against a
plain loop, hooks under in-place ReLU, CAM against Grad-CAM, and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import cnnlab
from cnnlab.cli.cam import METHOD_CHOICES
from cnnlab.errors import ConfigError, DataError
from cnnlab.evaluate.cam import (
    METHODS,
    class_activation_map,
    describe_layer,
    occlusion_windows,
    rank_correlation,
)
from cnnlab.evaluate.scores import split_images
from cnnlab.model.cnn import build_model
from cnnlab.model.inference import normalize

# The known answer: 32x32 noise; a white 6x6 square somewhere inside one quadrant decides the
# class. A fifth class, "blank", is noise alone: without it one quadrant class can be told by the
# absence of a mark elsewhere, evidence that is nowhere in particular (and that Grad-CAM's ReLU
# hides). Measured without it: Grad-CAM put 0.33-0.77 of its mass in the right quadrant per class.
QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
SIDE, MARK, NOISE = 32, 6, 60
MODEL = (
    "conv(8,3,padding=same) relu maxpool(2) conv(16,3,padding=same) relu maxpool(2) "
    "conv(16,3,padding=same) relu flatten fc(5)"
)
# The share of a map's mass (its positive part) inside the mark's quadrant; chance is 0.25.
MIN_MEAN_SHARE = 0.75
MIN_SHARE_EACH = 0.5  # ... and most images above this: at least MOST_IMAGES of them
MOST_IMAGES = 0.9


def _write_quadrant_images(root: Path, per_class: int, seed: int) -> None:
    """root/{train,test}/<class>/NNN.png (the test split a quarter of the training split)."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("test", per_class // 4)):
        for q, name in enumerate((*QUADRANTS, "blank")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                image = rng.integers(0, NOISE, (SIDE, SIDE), dtype=np.uint8)
                if q < len(QUADRANTS):
                    half = SIDE // 2
                    y = (q // 2) * half + int(rng.integers(1, half - MARK))
                    x = (q % 2) * half + int(rng.integers(1, half - MARK))
                    image[y : y + MARK, x : x + MARK] = 255
                Image.fromarray(image, mode="L").save(folder / f"{i:03d}.png")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs (seeds 0 and 1) of one small model on the quadrant images: a few seconds each."""
    root = tmp_path_factory.mktemp("quadrants")
    _write_quadrant_images(root / "data", per_class=60, seed=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))
        return [
            cnnlab.train(
                model=MODEL,
                data=str(root / "data"),
                image_size=SIDE,
                augment="none",
                epochs=5,
                batch_size=32,
                seed=seed,
                quiet=True,
                out=str(root / f"run{seed}"),
            )
            for seed in (0, 1)
        ]


def _marked_test_images(run):
    """(normalised image (1, 1, H, W), quadrant index) for each test image holding a mark."""
    images, labels, _ = split_images(run, None, "test")
    for image, label in zip(images, labels.tolist(), strict=True):
        name = run.classes[label]
        if name in QUADRANTS:
            yield normalize(image[None], run.mean, run.std), label, QUADRANTS.index(name)


def quadrant_share(heatmap: np.ndarray, quadrant: int) -> float:
    """The share of the map's positive mass inside one quadrant (0 top-left .. 3 bottom-right)."""
    mass = np.clip(heatmap, 0, None)
    h, w = mass.shape[0] // 2, mass.shape[1] // 2
    top, left = (quadrant // 2) * h, (quadrant % 2) * w
    return float(mass[top : top + h, left : left + w].sum() / mass.sum())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gradcam", "hirescam", "occlusion"])
def test_maps_put_most_of_their_mass_in_the_quadrant_that_holds_the_mark(runs, method):
    run = runs[0]
    model = run.load_model()
    shares = []
    for x, label, quadrant in _marked_test_images(run):
        result = class_activation_map(model, x, method=method, classes=run.classes)
        if result.predicted == label:  # correctly classified images only
            assert result.class_name == QUADRANTS[quadrant]
            shares.append(quadrant_share(result.heatmap, quadrant))
    assert len(shares) >= 40, "the model should classify most marked test images"
    shares = np.array(shares)
    assert shares.mean() > MIN_MEAN_SHARE, f"{method}: mean share {shares.mean():.2f}"
    assert (shares > MIN_SHARE_EACH).mean() >= MOST_IMAGES, f"{method}: shares {shares.round(2)}"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gradcam", "hirescam", "occlusion"])
def test_randomised_weights_correlate_clearly_less_than_two_trained_seeds(runs, method):
    first, second = (run.load_model() for run in runs)
    with_random, between_seeds = [], []
    for x, _, _ in list(_marked_test_images(runs[0]))[::4]:
        result = class_activation_map(first, x, method=method, sanity=True)
        other = class_activation_map(second, x, method=method, target=result.target)
        with_random.append(result.sanity)
        between_seeds.append(rank_correlation(result.signed, other.signed))
    assert None not in with_random and None not in between_seeds
    assert np.mean(with_random) + 0.3 < np.mean(between_seeds), (with_random, between_seeds)


def test_occlusion_equals_a_plain_loop_over_windows():
    torch.manual_seed(0)
    model = build_model("conv(4,3) relu maxpool(2) flatten fc(3)", (2, 10, 12)).eval()
    x = torch.randn(1, 2, 10, 12)
    result = class_activation_map(model, x, method="occlusion", target=1)
    (ph, pw), (sh, sw) = result.window
    assert (ph, pw) == (round(10 / 4), round(12 / 4)) and (sh, sw) == (max(1, ph // 2), pw // 2)
    with torch.no_grad():
        base = torch.softmax(model(x), dim=1)[0, 1].item()
        total, count = np.zeros((10, 12)), np.zeros((10, 12))
        rows = sorted(set(range(0, 10 - ph + 1, sh)) | {10 - ph})
        cols = sorted(set(range(0, 12 - pw + 1, sw)) | {12 - pw})
        for r in rows:
            for c in cols:
                covered = x.clone()
                covered[0, :, r : r + ph, c : c + pw] = 0
                drop = base - torch.softmax(model(covered), dim=1)[0, 1].item()
                total[r : r + ph, c : c + pw] += drop
                count[r : r + ph, c : c + pw] += 1
    assert count.min() >= 1  # every pixel covered by some window
    np.testing.assert_allclose(result.heatmap, total / count, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [5, 8, 28, 32, 33])
def test_occlusion_windows_cover_every_pixel_and_end_at_the_edge(size):
    patch, stride, starts = occlusion_windows(size)
    covered = np.zeros(size, dtype=int)
    for start in starts:
        covered[start : start + patch] += 1
    assert covered.min() >= 1 and starts[-1] + patch == size and starts[0] == 0


def _through(layers: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """x through some of a model's layers, in order."""
    for layer in layers:
        x = layer(x)
    return x


def _inplace_pair():
    """A model and the same weights with every ReLU in place."""
    torch.manual_seed(1)
    spec = "conv(4,3,padding=same) relu conv(6,3,padding=same) relu maxpool(2) flatten fc(3)"
    plain = build_model(spec, (1, 12, 12)).eval()
    inplace = build_model(spec, (1, 12, 12)).eval()
    inplace.load_state_dict(plain.state_dict())
    for name, module in list(inplace.named_children()):
        if isinstance(module, nn.ReLU):
            setattr(inplace, name, nn.ReLU(inplace=True))
    return plain, inplace


@pytest.mark.parametrize("method", ["gradcam", "hirescam"])
def test_in_place_relu_after_the_layer_leaves_its_map_intact(method):
    plain, inplace = _inplace_pair()
    x = torch.randn(1, 1, 12, 12)
    # conv2's output is what relu2 (in place) overwrites: the kept map must be the conv's
    got = class_activation_map(inplace, x, method=method, layer="conv2", target=2)
    want = class_activation_map(plain, x, method=method, layer="conv2", target=2)
    np.testing.assert_allclose(got.signed, want.signed, rtol=1e-5, atol=1e-7)
    # and against autograd on the model cut at conv2 by hand
    layers = list(plain.children())
    with torch.enable_grad():
        a = _through(layers[:3], x).detach().requires_grad_(True)  # conv2's output (1, 6, 12, 12)
        (grad,) = torch.autograd.grad(_through(layers[3:], a)[0, 2], a)
    if method == "gradcam":
        cells = (grad.mean(dim=(2, 3))[0, :, None, None] * a[0]).sum(0)
    else:
        cells = (grad[0] * a[0]).sum(0)
    np.testing.assert_allclose(got.cells, cells.clamp(min=0).detach().numpy(), atol=1e-6)
    assert not any(m._forward_hooks for m in inplace.modules())  # hooks removed after use


def test_cam_is_gradcam_times_the_cells_for_a_gap_head_and_refused_otherwise():
    torch.manual_seed(2)
    model = build_model(
        "conv(5,3,padding=same) relu maxpool(2) conv(7,3) relu gap fc(4)", (3, 14, 14)
    )
    x = torch.randn(1, 3, 14, 14)
    cam = class_activation_map(model, x, method="cam", target=3)
    gradcam = class_activation_map(model, x, method="gradcam", target=3)
    assert cam.layer.name == gradcam.layer.name == "relu2" and cam.layer.map_size == (5, 5)
    # Selvaraju et al.: with gap then fc, Grad-CAM's weights are the fc weights / (h*w)
    np.testing.assert_allclose(cam.heatmap, gradcam.heatmap * 25, rtol=1e-4, atol=1e-6)
    features = _through(list(model.children())[:5], x)[0]  # (7, 5, 5): what gap averages
    want = torch.einsum("c,chw->hw", model.fc1.weight[3], features).clamp(min=0)
    np.testing.assert_allclose(cam.cells, want.detach().numpy(), rtol=1e-5, atol=1e-6)
    flat = build_model("conv(4,3) relu flatten fc(3)", (1, 8, 8))
    with pytest.raises(ConfigError, match="gradcam, hirescam, occlusion or saliency"):
        class_activation_map(flat, torch.randn(1, 1, 8, 8), method="cam")


def test_default_layer_says_what_one_cell_sees_as_torch_gradients_do():
    # avgpool and positive weights: the gradient of one cell reaches every pixel it sees
    model = build_model(
        "conv(2,3,padding=same) relu avgpool(2) conv(2,3,padding=same) relu avgpool(2) "
        "conv(2,3,padding=same) relu flatten fc(3)",
        (1, 32, 32),
    )
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.1)
    layer = describe_layer(model, "relu3")
    result = class_activation_map(model, torch.rand(1, 1, 32, 32), method="gradcam")
    assert result.layer == layer and layer.conv == "conv3" and layer.map_size == (8, 8)
    x = torch.rand(1, 1, 32, 32, requires_grad=True)
    _through(list(model.children())[:8], x)[0, 0, 4, 4].backward()  # relu3 cell (4, 4), inside
    rows, cols = np.nonzero(x.grad[0, 0].numpy())
    seen = (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
    assert layer.receptive_field == seen
    assert f"8x8 map, each cell sees {seen[0]}x{seen[1]} px" in layer.describe()


def test_warnings_for_a_1x1_map_and_for_a_layer_after_flatten():
    model = build_model(
        "conv(4,3) relu maxpool(2) conv(4,3) relu flatten fc(8) relu fc(2)", (1, 8, 8)
    )
    x = torch.randn(1, 1, 8, 8)
    assert class_activation_map(model, x).layer.name == "relu1"  # conv2's map is 1x1
    assert "1x1 map" in class_activation_map(model, x, layer="relu2").warnings[0]
    after = class_activation_map(model, x, layer="fc1")
    assert "at or after flatten" in after.warnings[0] and np.ptp(after.heatmap) == 0
    with pytest.raises(ConfigError, match="choose among conv1, relu1"):
        class_activation_map(model, x, layer="conv9")


def test_no_conv_and_wrong_images_are_clear_errors():
    model = build_model("flatten fc(8) relu fc(3)", (1, 6, 6))
    x = torch.randn(1, 1, 6, 6)
    with pytest.raises(ConfigError, match="no conv layer.*occlusion.*saliency"):
        class_activation_map(model, x, method="gradcam")
    assert class_activation_map(model, x, method="saliency").heatmap.shape == (6, 6)
    with pytest.raises(DataError, match="the model takes 1x6x6"):
        class_activation_map(model, torch.randn(1, 3, 6, 6))
    with pytest.raises(DataError, match="float image tensor"):
        class_activation_map(model, torch.zeros(1, 1, 6, 6, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="no class 'dog'"):
        class_activation_map(model, x, "saliency", target="dog", classes=["a", "b", "c"])


def test_rank_correlation_is_spearmans_with_ties_averaged():
    a = np.array([3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0])
    assert rank_correlation(a, np.exp(a)) == pytest.approx(1.0)  # any increasing transform
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    # scipy's documented example: spearmanr([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) = 0.8207826816681233
    assert rank_correlation(np.arange(1, 6), np.array([5, 6, 7, 8, 7])) == pytest.approx(
        0.8207826816681233
    )
    assert rank_correlation(np.zeros(4), a[:4]) is None  # a flat map has no ranking


def test_the_cli_names_the_librarys_methods():
    assert METHOD_CHOICES == METHODS


@pytest.mark.slow
def test_cli_writes_the_picture_and_json(runs, cli, tmp_path):
    run = runs[0]
    png, svg = tmp_path / "cam.png", tmp_path / "cam.svg"
    done = cli("cam", str(run.path), "test:0", "--out", str(png), "--out", str(svg))
    assert done.code == 0, done.err
    assert "relu3 (conv3 after relu): 8x8 map, each cell sees 18x18 px" in done.out
    assert Image.open(png).format == "PNG" and "<svg" in svg.read_text()
    done = cli(
        "cam", str(run.path), "test:0", "--json", "--sanity", "--class", "top-left",
        "--method", "hirescam", "--out", str(png),
    )  # fmt: skip
    assert done.code == 0, done.err
    data = json.loads(done.out)
    assert data["class"] == "top-left" and data["layer"]["name"] == "relu3"
    assert np.array(data["map"]).shape == (SIDE, SIDE) and data["map_size"] == [8, 8]
    assert -1 <= data["sanity"]["rank_correlation"] <= 1
    assert sum(data["probabilities"].values()) == pytest.approx(1, abs=1e-4)


@pytest.mark.slow
def test_cli_errors_for_a_model_without_conv_and_for_a_file_that_is_no_image(runs, cli, tmp_path):
    fc_only = cnnlab.train(
        model="flatten fc(16) relu fc(10)",
        data="shapes",
        train_size=200,
        test_size=50,
        epochs=1,
        quiet=True,
        out=str(tmp_path / "fc"),
    )
    done = cli("cam", str(fc_only.path), "test:0", "--out", str(tmp_path / "x.png"))
    assert done.code == 2 and "no conv layer" in done.err and "Traceback" not in done.err
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    done = cli("cam", str(runs[0].path), str(text), "--out", str(tmp_path / "y.png"))
    assert done.code == 2 and done.err.startswith("error:") and "Traceback" not in done.err


def test_a_notebook_shows_the_map_as_a_table_and_a_picture():
    import base64
    import io

    from PIL import Image

    _, model = _inplace_pair()
    result = class_activation_map(model, torch.randn(1, 1, 12, 12), layer="conv2", target=2,
                                  classes=[f"<c{i}>" for i in range(3)])  # fmt: skip
    page = result._repr_html_()
    assert "<table" in page and "&lt;c2&gt;" in page and "<c2>" not in page  # names escaped
    encoded = page.split("base64,")[1].split('"')[0]
    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))))
    assert picture.shape == (12, 12, 3)
    hottest = np.unravel_index(np.argmax(result.heatmap), result.heatmap.shape)
    assert tuple(picture[hottest]) == (255, 255, 0)  # the peak is yellow
    assert (picture[result.heatmap <= 0] == 0).all()  # no evidence is black
