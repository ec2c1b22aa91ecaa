"""`cnnlab eval`: the scores, the confusion matrix drawn and saved, the top-loss gallery."""

from __future__ import annotations

import contextlib
import io
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.cli import main
from cnnlab.evaluate.scores import evaluate_run, split_images
from cnnlab.figures.confusion import confusion_figure, gallery_figure
from cnnlab.run.folder import Run

TEST_SIZE = 400


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    """One quick epoch: a model that is right often but not always (the matrix has off-diagonals)."""
    out = tmp_path_factory.mktemp("eval") / "run"
    return cnnlab.train(
        model="conv(8,3,padding=same) batchnorm relu maxpool(2) conv(16,3,padding=same) relu "
        "maxpool(2) flatten fc(10)",
        data="shapes",
        train_size=1200,
        test_size=TEST_SIZE,
        epochs=1,
        batch_size=64,
        quiet=True,
        out=str(out),
    )


@pytest.fixture(scope="module")
def evaluated(run, tmp_path_factory):
    """`cnnlab eval RUN --json` run once: (printed JSON, output folder)."""
    folder = tmp_path_factory.mktemp("evalout")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["eval", str(run.path), "--json", "--out", str(folder), "--top", "12"])
    assert code == 0
    return json.loads(buffer.getvalue()), folder


def drawn_counts(figure) -> np.ndarray:
    """The numbers written in the confusion matrix's cells, as a K x K array (row = true)."""
    ax = figure.axes[0]
    cells = {}
    for text in ax.texts:
        x, y = text.get_position()
        cells[(round(y), round(x))] = int(text.get_text())
    k = max(r for r, _ in cells) + 1
    assert len(cells) == k * k
    return np.array([[cells[(i, j)] for j in range(k)] for i in range(k)])


def test_json_confusion_sums_to_the_test_set_and_its_diagonal_is_the_accuracy(run, evaluated):
    data, _ = evaluated
    confusion = np.array(data["confusion"])
    assert data["images"] == TEST_SIZE == confusion.sum()
    assert confusion.shape == (len(run.classes), len(run.classes))
    assert np.trace(confusion) / confusion.sum() == pytest.approx(data["accuracy"])
    # the same score training wrote when it tested the model
    assert data["accuracy"] == pytest.approx(run.metrics["test_accuracy"], abs=1e-6)
    _, labels, _ = split_images(run)
    np.testing.assert_array_equal(confusion.sum(axis=1), torch.bincount(labels, minlength=10))


def test_per_class_scores_follow_from_the_matrix(evaluated):
    data, _ = evaluated
    confusion = np.array(data["confusion"], dtype=float)
    for i, row in enumerate(data["per_class"]):
        predicted, actual = confusion[:, i].sum(), confusion[i].sum()
        precision = confusion[i, i] / predicted if predicted else 0.0
        recall = confusion[i, i] / actual if actual else 0.0
        assert row["precision"] == pytest.approx(precision)
        assert row["recall"] == pytest.approx(recall)
        if precision + recall:
            assert row["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
        assert row["support"] == actual


def test_the_json_file_is_what_was_printed(evaluated):
    data, folder = evaluated
    saved = json.loads((folder / "evaluation.json").read_text())
    printed = {k: v for k, v in data.items() if k not in ("run", "written")}
    assert saved == printed
    assert data["written"] == {
        "json": str(folder / "evaluation.json"),
        "confusion": str(folder / "confusion.png"),
        "top_losses": str(folder / "top_losses.png"),
    }


def test_the_matrix_drawn_is_the_matrix_scored(run, evaluated):
    data, _ = evaluated
    figure = confusion_figure(data["confusion"], run.classes, "t")
    drawn = drawn_counts(figure)
    np.testing.assert_array_equal(drawn, data["confusion"])
    assert drawn.sum() == TEST_SIZE
    assert np.trace(drawn) / drawn.sum() == pytest.approx(data["accuracy"])
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == run.classes  # columns: predicted
    assert [t.get_text() for t in ax.get_yticklabels()] == run.classes  # rows: true
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    shares = ax.images[0].get_array()
    np.testing.assert_allclose(np.asarray(shares).sum(axis=1), 1.0)  # each row: shares of its class


def test_confusion_png_is_a_real_image(evaluated):
    _, folder = evaluated
    with Image.open(folder / "confusion.png") as image:
        assert image.format == "PNG" and min(image.size) > 400
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20
    assert (pixels != pixels[0, 0]).any(axis=2).mean() > 0.1


def test_gallery_shows_the_highest_losses_with_their_classes(run, evaluated):
    data, folder = evaluated
    top = data["top_losses"]
    assert len(top) == 12
    losses = [t["loss"] for t in top]
    assert losses == sorted(losses, reverse=True)
    evaluation, images = evaluate_run(run)
    assert max(evaluation.losses.tolist()) == pytest.approx(losses[0])
    figure = gallery_figure(images, top, "t")
    assert len(figure.axes) == 12
    for ax, item in zip(figure.axes, top, strict=True):
        np.testing.assert_array_equal(ax.images[0].get_array(), images[item["index"]][0].numpy())
        title = ax.get_title()
        assert f"#{item['index']}" in title and f"true {item['true']}" in title
        assert f"pred {item['predicted']} {item['probability']:.0%}" in title
    with Image.open(folder / "top_losses.png") as image:
        pixels = np.asarray(image.convert("L"))
    assert len(np.unique(pixels)) > 20 and pixels.std() > 10


def test_human_output_and_default_folder(run, cli):
    result = cli("eval", str(run.path), "--top", "4")
    assert result.code == 0, result.err
    folder = run.path / "eval"
    data = json.loads((folder / "evaluation.json").read_text())
    correct = int(np.trace(np.array(data["confusion"])))
    assert f"accuracy {data['accuracy']:.2%} ({correct}/{TEST_SIZE})" in result.out
    for name in run.classes:
        assert name in result.out
    assert "per class" in result.out and "highest losses" in result.out
    if data["most_confused"]:
        pair = data["most_confused"][0]
        assert "most confused" in result.out and str(pair["count"]) in result.out
    assert f"wrote {folder / 'confusion.png'} (10x10)" in result.out
    assert f"wrote {folder / 'top_losses.png'} (4 images)" in result.out
    assert "\x1b[" not in result.out  # plain text in logs


def test_svg_output_and_no_gallery(run, cli, tmp_path):
    result = cli("eval", str(run.path), "--out", str(tmp_path), "--format", "svg", "--top", "0")
    assert result.code == 0, result.err
    assert not (tmp_path / "top_losses.svg").exists()
    texts = [
        "".join(el.itertext())
        for el in ET.parse(tmp_path / "confusion.svg").iter()
        if el.tag.endswith("}text")
    ]
    for name in run.classes:
        assert name in texts
    confusion = json.loads((tmp_path / "evaluation.json").read_text())["confusion"]
    cells = [int(t) for t in texts if t.isdigit()]  # the cell counts, row by row
    assert cells == [n for row in confusion for n in row] and sum(cells) == TEST_SIZE


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--split", "val"], "without a validation split"),
        (["--top", "-1"], "--top -1"),
        # the gallery is a tile per image: an uncapped --top drew thousands
        (["--top", "201"], "--top 201 is out of range: give 0 (no gallery) to 200 images"),
    ],
)
def test_eval_refuses_what_cannot_be_done(run, cli, argv, message):
    result = cli("eval", str(run.path), *argv)
    assert result.code == 2 and message in result.err, result.err


def test_eval_of_a_missing_run(cli, tmp_path):
    result = cli("eval", str(tmp_path / "missing"))
    assert result.code == 2 and "does not exist" in result.err
