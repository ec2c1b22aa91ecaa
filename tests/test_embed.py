"""`cnnlab embed`: PCA against the eigenvectors of known points, the penultimate features and
predictions against the model itself, seeded t-SNE subsamples, the figure's marks, the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.errors import ConfigError
from cnnlab.evaluate.embed import LabelledImages, embed_features, pca_2d
from cnnlab.evaluate.scores import evaluate_run
from cnnlab.figures.embed import embed_figure
from cnnlab.model.cnn import CnnModel
from cnnlab.model.inference import normalize
from cnnlab.run.folder import Run
from cnnlab.spec.language import parse_spec

MODEL = "conv(4,3,padding=same) relu maxpool(2) conv(6,3,stride=2,padding=1) relu flatten fc(10)"
TEST_SIZE = 120


def test_pca_finds_the_principal_axes_of_known_points():
    generator = np.random.default_rng(0)
    rotation, _ = np.linalg.qr(generator.normal(size=(4, 4)))  # a random orthonormal basis
    spread = np.array([5.0, 2.0, 0.5, 0.1])  # standard deviation along each basis vector
    points = generator.normal(size=(500, 4)) * spread @ rotation.T + np.array([3.0, -1, 0, 7])
    projected, axes, shares = pca_2d(torch.from_numpy(points))
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(points, rowvar=False))
    order = eigenvalues.argsort()[::-1]
    for k in range(2):
        reference = torch.from_numpy(eigenvectors[:, order[k]])
        # the same axis, whichever its sign
        assert abs(float(axes[k].double() @ reference)) == pytest.approx(1, abs=1e-6)
        # the true axis it recovers, within sampling error
        assert abs(float(axes[k].double() @ torch.from_numpy(rotation[:, k]))) > 0.99
        assert shares[k] == pytest.approx(eigenvalues[order[k]] / eigenvalues.sum(), rel=1e-6)
    centred = points - points.mean(axis=0)
    assert np.allclose(projected.numpy(), centred @ axes.double().numpy().T, atol=1e-4)
    assert np.allclose(projected.numpy().mean(axis=0), 0, atol=1e-4)


def test_the_randomized_pca_of_large_features_finds_the_same_axes():
    """Above EXACT_PCA_SIZE images and features PCA is a randomized SVD: here forced on a small
    case (exact_up_to=10), it must give the full SVD's axes, points and shares."""
    generator = np.random.default_rng(1)
    basis, _ = np.linalg.qr(generator.normal(size=(60, 2)))  # two orthonormal directions
    signal = generator.normal(size=(300, 2)) * [4.0, 2.0] @ basis.T
    points = torch.from_numpy(signal + 0.3 * generator.normal(size=(300, 60)) - 2.0)
    exact = pca_2d(points)
    randomized = pca_2d(points, exact_up_to=10)
    assert torch.allclose(randomized[1], exact[1], atol=1e-4)  # the sign rule makes them equal
    assert torch.allclose(randomized[0], exact[0], atol=1e-3)
    assert randomized[2] == pytest.approx(exact[2], rel=1e-4)
    assert abs(float(exact[1][0].double() @ torch.from_numpy(basis[:, 0]))) > 0.99


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    out = tmp_path_factory.mktemp("embed") / "run"
    return cnnlab.train(
        model=MODEL,
        data="shapes",
        train_size=400,
        test_size=TEST_SIZE,
        epochs=1,
        batch_size=64,
        quiet=True,
        out=str(out),
    )


def test_features_are_the_last_fc_input_and_predictions_the_models(run):
    data = LabelledImages.of_run(run)
    embedding = embed_features(run, data, "pca")
    model = run.load_model().eval()
    captured = {}
    hook = model.fc1.register_forward_pre_hook(lambda m, inputs: captured.update(x=inputs[0]))
    with torch.no_grad():
        logits = model(normalize(data.images, run.mean, run.std))
    hook.remove()
    assert embedding.layer == "fc1" and embedding.features == captured["x"].shape[1] == 6 * 7 * 7
    assert torch.equal(embedding.predictions, logits.argmax(1))
    assert torch.equal(embedding.labels, data.labels) and torch.equal(
        embedding.indices, torch.arange(TEST_SIZE)
    )
    expected, _, _ = pca_2d(captured["x"])
    assert torch.allclose(embedding.points, expected, atol=1e-4)
    evaluation, _ = evaluate_run(run)
    assert int(embedding.wrong.sum()) == len(evaluation.misclassified())


def test_tsne_embeds_a_seeded_sample(run):
    first = embed_features(run, None, "tsne", max_points=40, seed=3)
    again = embed_features(run, None, "tsne", max_points=40, seed=3)
    assert first.points.shape == (40, 2) and first.total == TEST_SIZE
    assert torch.equal(first.indices, again.indices) and torch.allclose(first.points, again.points)
    assert torch.equal(first.indices, first.indices.sort().values)
    assert "40 of 120 images" in first.notes[0] and "seed 3" in first.notes[0]
    data = first.to_json()
    assert data["shown"] == 40 and data["axes"] == ["t-SNE 1", "t-SNE 2"]
    assert {p["index"] for p in data["points"]} == set(first.indices.tolist())


def test_a_bare_model_needs_its_classes_and_a_model_without_fc_is_refused():
    images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    data = LabelledImages(images, torch.tensor([0, 1, 2, 0, 1, 2]))
    with_fc = CnnModel(parse_spec("input(1x8x8) conv(2,3) relu flatten fc(3)"))
    embedding = embed_features(with_fc, data, "pca", classes=["a", "b", "c"], norm=((0.5,), (0.5,)))
    assert embedding.points.shape == (6, 2) and embedding.features == 72
    with pytest.raises(ConfigError, match="needs data, classes and norm"):
        embed_features(with_fc, data, "pca")
    without_fc = CnnModel(parse_spec("input(1x8x8) conv(3,3) gap"))
    with pytest.raises(ConfigError, match="no fc layer"):
        embed_features(without_fc, data, "pca", classes=["a", "b", "c"], norm=((0.5,), (0.5,)))
    with pytest.raises(ConfigError, match="not one of: pca, tsne"):
        embed_features(with_fc, data, "umap", classes=["a", "b", "c"], norm=((0.5,), (0.5,)))


def test_the_figure_names_every_class_and_edges_exactly_the_misclassified(run):
    embedding = embed_features(run, None, "pca")
    figure = embed_figure(embedding, "title")
    ax = figure.axes[0]
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    for name in run.classes:
        assert any(line.startswith(f"{name} (") for line in legend)
    edged = sum(
        len(c.get_offsets())
        for c in ax.collections
        if len(c.get_edgecolors()) and np.allclose(c.get_edgecolors()[0][:3], 0)
    )
    assert edged == int(embedding.wrong.sum())
    assert sum(len(c.get_offsets()) for c in ax.collections) == TEST_SIZE
    assert ax.get_xlabel().startswith("PC1 (") and ax.get_ylabel().startswith("PC2 (")


def test_the_command_draws_and_prints_json(run, cli, tmp_path):
    out = tmp_path / "points.png"
    result = cli("embed", str(run.path), "--out", str(out), "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["method"] == "pca" and data["shown"] == data["total"] == TEST_SIZE
    assert data["classes"] == run.classes and data["written"] == [str(out)]
    point = data["points"][0]
    assert set(point) == {"index", "x", "y", "label", "predicted", "correct"}
    assert data["misclassified"] == sum(not p["correct"] for p in data["points"])
    with Image.open(out) as image:
        assert image.format == "PNG"
    result = cli("embed", str(run.path), "--method", "tsne", "--max-points", "30")
    assert result.code == 0, result.err
    assert "30 of 120 images" in result.out and (run.path / "embed" / "tsne.png").is_file()
    result = cli("embed", str(run.path), "--method", "umap")
    assert result.code == 2 and "invalid choice" in result.err
