"""The registry, load_dataset, splits and the `cnnlab datasets` commands (in-process, no network)."""

# Fixtures are imported from test_data_support (kept out of the shared conftest.py),
# so pytest's fixture arguments shadow the imports by design.
# ruff: noqa: F811

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_support import FASHION_FILES, isolated_cache, require_fashion_mnist  # noqa: F401

from cnnlab.data import list_datasets, load_dataset, split_validation
from cnnlab.data.idx import write_idx
from cnnlab.data.registry import REGISTRY
from cnnlab.errors import DataError

pytestmark = pytest.mark.usefixtures("isolated_cache")
README = Path(__file__).resolve().parent.parent / "README.md"


def write_toy_idx_set(folder: Path, n_train=30, n_test=20, gz=True) -> None:
    """An MNIST-shaped IDX set (28x28, 10 classes) whose pixels encode the label."""
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = np.repeat(labels[:, None, None] * 25, 28, 1).repeat(28, 2).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)


# --- the registry -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_entry_is_complete(name):
    entry = REGISTRY[name]
    assert len(entry.classes) == len(set(entry.classes)) >= 8
    assert entry.image_shape[0] in (1, 3) and entry.train_size > entry.test_size > 0
    assert entry.description


def test_list_shows_shapes_available_without_network():
    infos = {i.name: i for i in list_datasets()}
    assert set(infos) == {"shapes", "fashion-mnist", "mnist", "kmnist", "cifar10"}
    assert infos["shapes"].available and infos["shapes"].where == "generated"
    assert not infos["mnist"].available and infos["mnist"].where.startswith(
        "download from https://"
    )
    assert (
        infos["fashion-mnist"].flip_ok
        and not infos["mnist"].flip_ok
        and not infos["kmnist"].flip_ok
    )


def test_unknown_name_lists_known_ones():
    with pytest.raises(
        DataError,
        match="unknown data set 'imagenet'; known: shapes, fashion-mnist, mnist, kmnist, cifar10",
    ):
        load_dataset("imagenet")


def test_idx_set_found_in_search_order(tmp_path, monkeypatch):
    write_toy_idx_set(tmp_path / "env" / "mnist", n_train=30)
    write_toy_idx_set(tmp_path / "mine" / "mnist", n_train=40, gz=False)  # raw files also work
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    from_env = load_dataset("mnist", download=False)
    assert len(from_env.train_labels) == 30 and from_env.source == str(tmp_path / "env" / "mnist")
    from_dir = load_dataset("mnist", data_dir=tmp_path / "mine", download=False)
    assert len(from_dir.train_labels) == 40  # --data-dir comes first
    assert torch.equal(from_dir.train_images[:, 0, 5, 5].long(), from_dir.train_labels * 25)
    assert {i.name: i.available for i in list_datasets()}["mnist"]


def test_missing_idx_set_without_download_says_where(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("kmnist", data_dir=tmp_path, download=False)
    message = str(info.value)
    assert "kmnist: files not found locally and downloading is off" in message
    assert str(tmp_path / "kmnist") in message and "t10k-labels-idx1-ubyte.gz" in message


def test_sizes_and_conversions():
    ds = load_dataset("shapes", train_size=200, test_size=100, image_size=32, channels=3)
    assert (
        ds.image_shape == (3, 32, 32) and len(ds.train_labels) == 200 and len(ds.test_labels) == 100
    )
    assert ds.train_images.is_contiguous() and len(ds.mean) == 3
    assert torch.equal(ds.train_images[:, 0], ds.train_images[:, 2])  # gray copied to RGB
    with pytest.raises(DataError, match="train_size must be a whole number"):
        load_dataset("shapes", train_size=-1)
    with pytest.raises(DataError, match="apply to image folders only"):
        load_dataset("shapes", skip_bad=True)


def test_subset_of_a_fixed_set_is_balanced_and_deterministic(tmp_path):
    write_toy_idx_set(tmp_path / "mnist", n_train=100)
    a = load_dataset("mnist", data_dir=tmp_path, train_size=50, seed=1)
    b = load_dataset("mnist", data_dir=tmp_path, train_size=50, seed=1)
    assert torch.equal(a.train_images, b.train_images)
    assert torch.bincount(a.train_labels).tolist() == [5] * 10


def test_split_validation_deterministic_and_stratified():
    labels = torch.arange(1000) % 4
    images = torch.arange(1000).view(1000, 1, 1, 1).to(torch.uint8)
    tx, ty, vx, vy = split_validation(images, labels, 0.1, seed=3)
    again = split_validation(images, labels, 0.1, seed=3)
    assert all(torch.equal(p, q) for p, q in zip((tx, ty, vx, vy), again, strict=True))
    assert len(vy) == 100 and torch.bincount(vy).tolist() == [25] * 4
    assert len(ty) == 900 and len(tx) == 900
    index = torch.arange(1000)
    _, _, vi, _ = split_validation(index.view(-1, 1, 1, 1), labels, 0.1, seed=3)
    ti, _, _, _ = split_validation(index.view(-1, 1, 1, 1), labels, 0.1, seed=3)
    assert not set(vi.flatten().tolist()) & set(ti.flatten().tolist())  # disjoint
    assert len(set(vi.flatten().tolist()) | set(ti.flatten().tolist())) == 1000  # and complete
    _, _, other, _ = split_validation(index.view(-1, 1, 1, 1), labels, 0.1, seed=4)
    assert not torch.equal(vi, other)
    with pytest.raises(DataError, match="strictly between 0 and 1"):
        split_validation(images, labels, 1.5)


# --- Fashion-MNIST from Debian's files ----------------------------------------------------


def test_fashion_mnist_from_system_files():
    folder = require_fashion_mnist()
    ds = load_dataset("fashion-mnist", download=False)
    assert ds.source == str(folder)
    assert ds.train_images.shape == (60000, 1, 28, 28) and ds.test_images.shape == (
        10000,
        1,
        28,
        28,
    )
    assert torch.bincount(ds.train_labels).tolist() == [6000] * 10
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert (
        abs(ds.mean[0] - 0.2860) < 0.001 and abs(ds.std[0] - 0.3530) < 0.001
    )  # the published figures


def test_fashion_mnist_via_data_dir_pointing_at_the_files(tmp_path):
    folder = require_fashion_mnist()
    for name in FASHION_FILES:  # the real files, in a folder of the user's choosing
        shutil.copy(folder / name, tmp_path / name)
    infos = {i.name: i for i in list_datasets(data_dir=tmp_path)}
    assert infos["fashion-mnist"].where == str(tmp_path)


# --- the CLI ------------------------------------------------------------------------------


def test_cli_lists_data_sets(cli):
    result = cli("datasets")
    assert result.code == 0, result.err
    line = next(ln for ln in result.out.splitlines() if ln.startswith("shapes "))
    assert re.search(r"1x28x28\s+24000\s+4000\s+yes\s+yes\s+generated", line), line
    assert "circle, triangle, square" in result.out and "folder:PATH" in result.out
    as_json = json.loads(cli("datasets", "--json").out)
    assert {d["name"] for d in as_json} >= {"shapes", "cifar10"}


def test_cli_show_writes_a_labelled_non_blank_grid(cli, tmp_path):
    out = tmp_path / "grid.png"
    result = cli("datasets", "show", "shapes", "--out", str(out), "--per-class", "4")
    assert result.code == 0, result.err
    assert f"wrote {out}" in result.out
    pixels = np.asarray(Image.open(out).convert("L"), dtype=np.float64)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 300
    assert pixels.std() > 40 and (pixels < 30).mean() > 0.1 and (pixels > 225).mean() > 0.1


def test_cli_errors_are_messages_not_tracebacks(cli, tmp_path):
    result = cli("datasets", "show", "nope", "--out", str(tmp_path / "x.png"))
    assert (
        result.code == 2
        and "unknown data set 'nope'" in result.err
        and "Traceback" not in result.err
    )
    result = cli("datasets", "show", "mnist", "--no-download", "--out", str(tmp_path / "x.png"))
    assert result.code == 2 and "train-images-idx3-ubyte.gz" in result.err
    result = cli("datasets", "show", "shapes", "--out", str(tmp_path / "no" / "such" / "x.png"))
    assert result.code == 2 and "does not exist" in result.err


def test_cli_show_folder_with_skip_bad(cli, tmp_path):
    for name, value in (("a", 20), ("b", 230)):
        (tmp_path / "f" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (10, 10), value).save(tmp_path / "f" / name / f"{i}.png")
    (tmp_path / "f" / "a" / "junk.txt").write_text("x")
    failed = cli("datasets", "show", f"folder:{tmp_path / 'f'}", "--out", str(tmp_path / "g.png"))
    assert failed.code == 2 and "junk.txt" in failed.err and "--skip-bad" in failed.err
    ok = cli(
        "datasets",
        "show",
        f"folder:{tmp_path / 'f'}",
        "--skip-bad",
        "--out",
        str(tmp_path / "g.png"),
    )
    assert ok.code == 0 and "skipped:" in ok.out and (tmp_path / "g.png").is_file()


def test_cli_show_folder_prints_one_summary_line_as_built_in_sets_do(cli, tmp_path):
    for name, value in (("a", 20), ("b", 230)):
        (tmp_path / "f" / name).mkdir(parents=True)
        for i in range(6):
            Image.new("L", (10, 10), value).save(tmp_path / "f" / name / f"{i}.png")
    result = cli("datasets", "show", f"folder:{tmp_path / 'f'}", "--out", str(tmp_path / "g.png"))
    assert result.code == 0, result.err
    described = result.out.splitlines()[0]
    root = tmp_path / "f"
    assert described.startswith(f"Dataset('folder:{root}', 2 classes, 1x28x28, train=")
    assert described.endswith(f") from {root}")
    # not the data set object's fields: no tensors, no file list
    assert "tensor(" not in result.out and "0.png" not in result.out
    assert len(result.out.splitlines()) == 2  # the summary, then 'wrote ...'


def test_readme_names_every_data_set_and_its_commands_run(cli, tmp_path, monkeypatch):
    text = README.read_text()
    section = text[text.index("## Data sets") :]
    section = section[: section.find("\n## ", 4)] if "\n## " in section[4:] else section
    for name in REGISTRY:
        assert f"`{name}`" in section, name
    commands = re.findall(r"^cnnlab (datasets[^\n#]*?)\s*(?:#.*)?$", section, flags=re.M)
    assert commands, "no cnnlab datasets commands in the README's Data sets section"
    monkeypatch.chdir(tmp_path)
    for name, value in (("cat", 40), ("dog", 200)):  # the README's example folder
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (12, 12), (value, 90, 30)).save(
                tmp_path / "photos" / name / f"{i}.jpg"
            )
    for command in commands:
        argv = command.split()
        if "--no-download" not in argv and "fetch" in argv:
            continue  # would download
        if any(arg in REGISTRY and REGISTRY[arg].name not in ("shapes",) for arg in argv):
            continue  # needs files this machine may not have
        result = cli(*argv)
        assert result.code == 0, (command, result.err)
