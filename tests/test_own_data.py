"""Own data: which files were wrong (file paths through data, eval, --misclassified, predict on
class folders) and a run used from Python (`cnnlab.load`)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from serve_support import trained_run

import cnnlab
from cnnlab.data import load_dataset
from cnnlab.data.folder import load_folder
from cnnlab.errors import DataError
from cnnlab.evaluate.misclassified import write_misclassified
from cnnlab.evaluate.scores import split_images
from cnnlab.model.cnn import build_model
from cnnlab.run.folder import Run

CLASSES = ("circle", "square", "triangle")


def _draw(kind: str, rng: np.random.Generator) -> Image.Image:
    """A 32x32 coloured shape at a random place, on a random background: hard enough to miss."""
    image = Image.new("RGB", (32, 32), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    x, y = (int(v) for v in rng.integers(6, 26, 2))
    r = int(rng.integers(3, 7))
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    if kind == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    elif kind == "square":
        draw.rectangle((x - r, y - r, x + r, y + r), fill=colour)
    else:
        draw.polygon(((x, y - r), (x - r, y + r), (x + r, y + r)), fill=colour)
    return image


def make_folder(root: Path, per_class: int = 20, seed: int = 0) -> Path:
    """root/<class>/<class>-NN.png: 3 classes of small colour images."""
    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        (root / kind).mkdir(parents=True)
        for i in range(per_class):
            _draw(kind, rng).save(root / kind / f"{kind}-{i:02d}.png")
    return root


@pytest.fixture(scope="module", autouse=True)
def own_cache(tmp_path_factory):
    """A fresh user cache for the folder decodes of this module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))
        patch.delenv("CNNLAB_DATA", raising=False)
        yield


@pytest.fixture(scope="module")
def images_root(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("own") / "shapes3")


@pytest.fixture(scope="module")
def folder_run(images_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "mine"
    cnnlab.train(  # the scratch default: this module is about folders, not fine-tuning
        model="default", data=str(images_root), epochs=1, batch_size=16, quiet=True, out=str(out)
    )
    return out


def _class_of(path: str) -> str:
    return Path(path).parent.name


# --- file paths through the data --------------------------------------------------------


def test_folder_data_keeps_each_images_file_through_split_subset_and_cache(images_root):
    ds = load_folder(images_root)
    assert len(ds.train_paths) == len(ds.train_labels) and len(ds.test_paths) == len(ds.test_labels)
    assert sorted(ds.train_paths + ds.test_paths) == sorted(
        str(p.resolve()) for p in images_root.rglob("*.png")
    )
    for paths, labels in ((ds.train_paths, ds.train_labels), (ds.test_paths, ds.test_labels)):
        assert [_class_of(p) for p in paths] == [ds.classes[i] for i in labels.tolist()]
    # the images are the files' pixels, in the same order
    with Image.open(ds.test_paths[3]) as image:
        assert torch.equal(ds.test_images[3], torch.from_numpy(np.array(image)).permute(2, 0, 1))
    cached = load_folder(images_root)  # read back from the cache
    assert cached.train_paths == ds.train_paths and cached.test_paths == ds.test_paths
    small = load_dataset(str(images_root), train_size=12)
    assert len(small.train_paths) == 12
    for path, image in zip(small.train_paths, small.train_images, strict=True):
        assert torch.equal(image, ds.train_images[ds.train_paths.index(path)])


def test_built_in_data_has_no_paths():
    ds = load_dataset("shapes", train_size=30, test_size=10)
    assert ds.train_paths is None and ds.test_paths is None


# --- eval: files named, --misclassified -------------------------------------------------


def test_evaluation_json_names_the_files_of_a_folder_run(folder_run, images_root, cli, tmp_path):
    result = cli("eval", str(folder_run), "--out", str(tmp_path), "--json", "--top", "4")
    assert result.code == 0, result.err
    data = json.loads((tmp_path / "evaluation.json").read_text())
    assert data == {k: v for k, v in json.loads(result.out).items() if k in data}
    assert len(data["top_losses"]) == 4
    wrong = data["misclassified"]
    total_wrong = data["images"] - sum(data["confusion"][i][i] for i in range(3))
    assert len(wrong) == total_wrong > 0
    for item in data["top_losses"] + wrong:
        assert Path(item["file"]).is_file() and Path(item["file"]).is_relative_to(images_root)
        assert _class_of(item["file"]) == item["true"]
    assert all(item["true"] != item["predicted"] for item in wrong)
    # the human table names files too
    table = cli("eval", str(folder_run), "--out", str(tmp_path), "--top", "4")
    assert Path(data["top_losses"][0]["file"]).name in table.out


def test_misclassified_writes_exactly_the_wrong_files_into_pair_folders(folder_run, cli, tmp_path):
    out = tmp_path / "wrong"
    result = cli("eval", str(folder_run), "--out", str(tmp_path / "e"), "--misclassified", str(out))
    assert result.code == 0, result.err
    wrong = json.loads((tmp_path / "e" / "evaluation.json").read_text())["misclassified"]
    expected = {(f"{w['true']}__as__{w['predicted']}", Path(w["file"]).name) for w in wrong}
    written = {(p.parent.name, p.name) for p in out.glob("*/*")}
    assert written == expected
    for item in wrong:
        link = out / f"{item['true']}__as__{item['predicted']}" / Path(item["file"]).name
        assert link.read_bytes() == Path(item["file"]).read_bytes()
        if link.is_symlink():  # links where the file system allows, copies otherwise
            assert link.resolve() == Path(item["file"]).resolve()
    assert f"wrote {len(wrong)} misclassified images to {out}" in result.out
    # a second time into the same folder would mix two evaluations: refused
    again = cli("eval", str(folder_run), "--out", str(tmp_path / "e"), "--misclassified", str(out))
    assert again.code == 2 and "not an empty folder" in again.err


def test_misclassified_of_a_built_in_data_set_are_pngs_named_by_index(
    tmp_path_factory, cli, tmp_path
):
    run_dir = trained_run(tmp_path_factory)
    out = tmp_path / "wrong"
    result = cli("eval", str(run_dir), "--out", str(tmp_path / "e"), "--misclassified", str(out))
    assert result.code == 0, result.err
    data = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert all("file" not in item for item in data["top_losses"] + data["misclassified"])
    images, _, _ = split_images(Run.open(run_dir))
    pngs = sorted(out.glob("*/*.png"))
    assert len(pngs) == len(data["misclassified"]) > 0
    for item in data["misclassified"]:
        png = out / f"{item['true']}__as__{item['predicted']}" / f"{item['index']}.png"
        with Image.open(png) as image:
            assert torch.equal(torch.from_numpy(np.array(image))[None], images[item["index"]])


def test_misclassified_refuses_a_file_in_its_place(folder_run, cli, tmp_path):
    (tmp_path / "f").write_text("x")
    result = cli(
        "eval",
        str(folder_run),
        "--out",
        str(tmp_path / "e"),
        "--misclassified",
        str(tmp_path / "f"),
    )
    assert result.code == 2 and "is not an empty folder" in result.err
    assert not (tmp_path / "e" / "evaluation.json").exists()  # refused before evaluating


def _md5s(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _wrong(path: Path, index: int, true: str = "a", predicted: str = "b") -> dict:
    return {"file": str(path), "index": index, "true": true, "predicted": predicted}


def _same_name_test_split(tmp_path: Path) -> Path:
    """test/a/2_img.png, test/a/x/img.png, test/a/y/img.png: three different images."""
    rng = np.random.default_rng(7)
    for relative in ("a/2_img.png", "a/x/img.png", "a/y/img.png"):
        (tmp_path / "data" / "test" / relative).parent.mkdir(parents=True, exist_ok=True)
        _draw("circle", rng).save(tmp_path / "data" / "test" / relative)
    return tmp_path / "data"


@pytest.mark.parametrize("links", [True, False], ids=["links", "copies"])
def test_misclassified_never_writes_through_a_name_already_taken(tmp_path, monkeypatch, links):
    # indices as in the split: y/img.png is image 2, so its first fallback name is 2_img.png,
    # which 2_img.png itself took: the write must pick another name, not go through that link
    data = _same_name_test_split(tmp_path)
    before = _md5s(data)
    if not links:  # a file system that refuses links (FAT, some shares): copies instead

        def refuse(*args, **kwargs):
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr(os, "symlink", refuse)
    test = data / "test" / "a"
    items = [_wrong(test / "2_img.png", 0), _wrong(test / "x/img.png", 1)]
    items.append(_wrong(test / "y/img.png", 2))
    counts = write_misclassified(tmp_path / "wrong", items, torch.zeros(0))
    assert _md5s(data) == before  # the user's files untouched
    written = sorted((tmp_path / "wrong" / "a__as__b").iterdir())
    assert counts == {"a__as__b": 3} and len(written) == 3
    assert {p.is_symlink() for p in written} == {links}
    contents = sorted(hashlib.md5(p.read_bytes()).hexdigest() for p in written)
    assert contents == sorted(before.values())  # each original once, none twice


def test_misclassified_folders_of_different_classes_differ(tmp_path):
    data = _same_name_test_split(tmp_path)
    test = data / "test" / "a"
    pairs = [("a b", "c"), ("a-b", "c"), ("a", "b__as__c"), ("a__as__b", "c"), (".x", "%2Ex")]
    items = [_wrong(test / "2_img.png", 0, *pair) for pair in pairs]
    counts = write_misclassified(tmp_path / "wrong", items, torch.zeros(0))
    assert len(counts) == len(pairs) == len(list((tmp_path / "wrong").iterdir()))
    assert all(not name.startswith(".") for name in counts)
    assert "a-b__as__c" in counts  # plain names stay as they are


# --- predict on class folders ----------------------------------------------------------


def test_predict_on_class_folders_prints_per_class_accuracy_and_confusion(
    folder_run, images_root, cli
):
    result = cli("predict", str(folder_run), str(images_root), "--json", "--engine", "eager")
    assert result.code == 0, result.err
    scores = json.loads(result.out)["folder_accuracy"]
    assert [row["class"] for row in scores["per_class"]] == list(CLASSES)
    assert [row["images"] for row in scores["per_class"]] == [20, 20, 20]
    assert sum(map(sum, scores["confusion"])) == scores["images"] == 60
    assert sum(row["correct"] for row in scores["per_class"]) == scores["correct"]
    diagonal = [scores["confusion"][i][i] for i in range(3)]
    assert diagonal == [r["correct"] for r in scores["per_class"]]
    text = cli("predict", str(folder_run), str(images_root), "--engine", "eager")
    # on stderr with the summary line: stdout keeps one line per file
    assert len(text.out.splitlines()) == 60
    assert "accuracy by folder name" in text.err and "confusion" in text.err
    for row in scores["per_class"]:
        line = next(
            line for line in text.err.splitlines() if line.strip("│ ").startswith(row["class"])
        )
        assert str(row["correct"]) in line and str(row["images"]) in line


def test_predict_shows_class_names_with_control_characters_escaped(tmp_path, cli):
    # folder names are the user's (or a downloaded archive's): ESC, newline and tab in them must
    # not reach the terminal, in the confusion table's column headers as anywhere else
    root = tmp_path / "odd"
    rng = np.random.default_rng(3)
    names = ("a\x1b[31mred", "b\nnew\tline")
    for name, kind in zip(names, ("circle", "square"), strict=True):
        (root / name).mkdir(parents=True)
        for i in range(8):
            _draw(kind, rng).save(root / name / f"{i}.png")
    run = tmp_path / "run"
    model = "conv(4, 3, padding=same) relu maxpool(2) flatten fc(2)"
    cnnlab.train(model=model, data=str(root), epochs=1, batch_size=8, quiet=True, out=str(run))
    result = cli("predict", str(run), str(root), "--engine", "eager")
    assert result.code == 0, result.err
    assert "\x1b" not in result.err + result.out and "\t" not in result.err + result.out
    header = next(line for line in result.err.splitlines() if "folder \\ predicted" in line)
    assert "a\\x1b[31mred" in header and "b\\x0anew\\x09line" in header


# --- cnnlab.load ---------------------------------------------------------------------------


def test_load_predict_equals_the_cli(folder_run, images_root, cli):
    files = sorted(images_root.rglob("*.png"))[:5]
    result = cli("predict", str(folder_run), *map(str, files), "--json", "--top-k", "3")
    assert result.code == 0, result.err
    model = cnnlab.load(folder_run)
    assert model.classes == list(CLASSES)
    answers = model.predict([str(f) for f in files], top_k=3)
    for answer, row in zip(answers, json.loads(result.out)["results"], strict=True):
        assert [a["class"] for a in answer] == [t["class"] for t in row["top_k"]]
        for a, t in zip(answer, row["top_k"], strict=True):
            assert a["probability"] == pytest.approx(t["probability"], abs=1e-6)
    # one input: one answer, not a list of them
    assert model.predict(files[0], top_k=3) == answers[0]


def test_load_arrays_and_pil_images_answer_as_their_file(folder_run, images_root):
    model = cnnlab.load(str(folder_run))
    path = sorted(images_root.rglob("*.png"))[7]
    with Image.open(path) as image:
        image.load()
    array = np.asarray(image)  # (H, W, 3) uint8
    probabilities = model.probabilities([path, image, array, array.copy()])
    assert probabilities.shape == (4, 3) and probabilities.dtype == np.float32
    assert np.array_equal(probabilities[0], probabilities[1])
    assert np.array_equal(probabilities[0], probabilities[2])
    assert np.allclose(probabilities.sum(1), 1, atol=1e-5)
    gray = np.asarray(image.convert("L"))  # (H, W): the model's own conversion of gray to colour
    assert model.probabilities(gray).shape == (1, 3)
    assert model.probabilities(gray[:, :, None]).tolist() == model.probabilities(gray).tolist()


def test_load_refuses_what_it_cannot_read(folder_run):
    model = cnnlab.load(folder_run)
    with pytest.raises(DataError, match="uint8"):
        model.predict(np.zeros((8, 8), dtype=np.float32))
    with pytest.raises(DataError, match="list"):
        model.predict(np.zeros((2, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(DataError, match="file path"):
        model.predict(42)


def test_load_takes_a_run_name_or_latest(folder_run, tmp_path, monkeypatch):
    shutil.copytree(folder_run, tmp_path / "runs" / "mine")
    monkeypatch.chdir(tmp_path)
    for name in ("mine", "latest"):
        assert cnnlab.load(name).run.path.resolve() == (tmp_path / "runs" / "mine").resolve()


def test_probabilities_track_no_gradients():
    model = build_model("tutorial").eval()  # no dropout: the two calls compare
    x = torch.randn(2, 1, 28, 28, requires_grad=True)
    probabilities = model.probabilities(x)
    assert not probabilities.requires_grad and probabilities.grad_fn is None
    assert torch.allclose(probabilities, torch.softmax(model(x), dim=1))
    assert model(x).requires_grad  # forward still builds a graph for training


def test_import_cnnlab_stays_light():
    code = "import sys, cnnlab; cnnlab.load; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
