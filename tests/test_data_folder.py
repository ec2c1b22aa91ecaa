"""Image folders: layouts, channel and size decisions, splits, bad files, and the decode cache."""

# Fixtures are imported from test_data_support (kept out of the shared conftest.py),
# so pytest's fixture arguments shadow the imports by design.
# ruff: noqa: F811

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_support import isolated_cache  # noqa: F401

from cnnlab.data import load_dataset
from cnnlab.data.folder import load_folder
from cnnlab.errors import DataError

pytestmark = pytest.mark.usefixtures("isolated_cache")


def _gray(value: int, size=(20, 20)) -> Image.Image:
    return Image.new("L", size, value)


def make_folder(root, per_class: dict[str, list[Image.Image]], ext: str = "png"):
    for name, images in per_class.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            image.save(root / name / f"{i}.{ext}")
    return root


def test_mixed_modes_load_into_one_layout(tmp_path):
    # Every supported mode in one folder; all gray-looking, so one channel at 28x28.
    cat = [
        _gray(30),
        Image.new("LA", (20, 20), (30, 255)),
        Image.new("RGB", (25, 15), (30, 30, 30)),
        Image.new("RGBA", (20, 20), (30, 30, 30, 255)),
        Image.fromarray(np.full((20, 20), 30 * 257, dtype=np.uint16)),
    ]
    dog = [
        _gray(220),
        _gray(220).convert("P"),
        Image.new("CMYK", (20, 20), (0, 0, 0, 35)),
        _gray(220),
        _gray(220),
    ]
    root = make_folder(tmp_path / "pets", {"cat": cat, "dog": []})
    for i, image in enumerate(dog):
        (root / "dog").mkdir(exist_ok=True)
        image.save(root / "dog" / f"{i}.{'jpg' if image.mode == 'CMYK' else 'png'}")
    ds = load_folder(root, test_fraction=0.2, seed=0)
    assert ds.classes == ["cat", "dog"]
    assert ds.image_shape == (1, 28, 28)
    assert ds.train_images.dtype == torch.uint8 and ds.train_labels.dtype == torch.int64
    x = torch.cat([ds.train_images, ds.test_images])
    y = torch.cat([ds.train_labels, ds.test_labels])
    assert len(y) == 10 and torch.bincount(y).tolist() == [5, 5]
    assert (x[y == 0].float().mean(dim=(1, 2, 3)) - 30).abs().max() <= 3
    assert (x[y == 1].float().mean(dim=(1, 2, 3)) - 220).abs().max() <= 3


def test_colour_anywhere_means_three_channels_at_32(tmp_path):
    root = make_folder(
        tmp_path / "c", {"a": [_gray(10)] * 3, "b": [Image.new("RGB", (8, 8), (200, 10, 10))] * 3}
    )
    ds = load_folder(root)
    assert ds.image_shape == (3, 32, 32)
    reds = torch.cat([ds.train_images, ds.test_images])[
        torch.cat([ds.train_labels, ds.test_labels]) == 1
    ]
    assert reds[:, 0].float().mean() > 190 and reds[:, 1].float().mean() < 20
    forced = load_folder(root, channels=1, image_size=16)
    assert forced.image_shape == (1, 16, 16)


def test_train_test_layout_and_unknown_test_class(tmp_path):
    make_folder(tmp_path / "d" / "train", {"x": [_gray(0)] * 4, "y": [_gray(255)] * 4})
    make_folder(tmp_path / "d" / "test", {"x": [_gray(0)], "y": [_gray(255)] * 2})
    ds = load_dataset(f"folder:{tmp_path / 'd'}")
    assert len(ds.train_labels) == 8 and ds.test_labels.tolist() == [0, 1, 1]
    make_folder(tmp_path / "d" / "test", {"z": [_gray(9)]})
    with pytest.raises(DataError, match="class folder\\(s\\) z have no match"):
        load_dataset(str(tmp_path / "d"))


def test_validation_split_is_deterministic_and_stratified(tmp_path):
    rng = np.random.default_rng(0)
    images = {c: [_gray(int(v)) for v in rng.integers(0, 256, 20)] for c in ("a", "b", "c")}
    root = make_folder(tmp_path / "s", images)
    one = load_folder(root, test_fraction=0.25, seed=1, use_cache=False)
    two = load_folder(root, test_fraction=0.25, seed=1, use_cache=False)
    other = load_folder(root, test_fraction=0.25, seed=2, use_cache=False)
    assert torch.equal(one.test_images, two.test_images) and torch.equal(
        one.train_labels, two.train_labels
    )
    assert torch.bincount(one.test_labels).tolist() == [5, 5, 5]
    assert not torch.equal(one.test_images, other.test_images)


def test_bad_files_listed_together_then_skippable(tmp_path):
    root = make_folder(tmp_path / "b", {"a": [_gray(1)] * 3, "b": [_gray(2)] * 3})
    (root / "a" / "readme.txt").write_text("hello")
    good = root / "b" / "0.png"
    (root / "b" / "cut.png").write_bytes(good.read_bytes()[:40])
    (root / "a" / ".DS_Store").write_bytes(b"\x00\x01")  # hidden: ignored
    with pytest.raises(DataError) as info:
        load_folder(root)
    message = str(info.value)
    assert "2 file(s) cannot be used" in message
    assert str(root / "a" / "readme.txt") in message and "not an image" in message
    assert str(root / "b" / "cut.png") in message
    assert "skip_bad=True" in message and ".DS_Store" not in message
    ds = load_folder(root, skip_bad=True)
    assert len(ds.train_labels) + len(ds.test_labels) == 6
    assert len(ds.skipped) == 2 and any("readme.txt" in s for s in ds.skipped)


def test_bad_files_are_listed_in_the_commands_language_from_the_decoding_threads(tmp_path):
    """Each file's error is made in a pool thread: it speaks --lang (a context of its own)."""
    from cnnlab.i18n import using_language

    root = make_folder(tmp_path / "k", {"a": [_gray(1)] * 3, "b": [_gray(2)] * 3})
    (root / "a" / "readme.txt").write_text("hello")
    with using_language("ko"), pytest.raises(DataError) as info:
        load_folder(root, use_cache=False)
    message = str(info.value)
    assert "이미지로 쓸 수 없습니다" in message  # the summary line, made in this thread
    listed = [line for line in message.splitlines() if "readme.txt" in line]
    assert listed and "not an image" not in listed[0] and "이미지" in listed[0], message


def test_layout_errors_name_the_folder(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        load_folder(tmp_path / "missing")
    make_folder(tmp_path / "one", {"only": [_gray(1)]})
    with pytest.raises(DataError, match="found 1 class folder"):
        load_folder(tmp_path / "one")
    (tmp_path / "two" / "a").mkdir(parents=True)
    make_folder(tmp_path / "two", {"b": [_gray(1)]})
    with pytest.raises(DataError, match="a: class folder has no files"):
        load_folder(tmp_path / "two")


def test_decoded_once_then_read_from_cache(tmp_path, isolated_cache):
    root = make_folder(tmp_path / "k", {"a": [_gray(10)] * 3, "b": [_gray(200)] * 3})
    first = load_folder(root)
    caches = list((isolated_cache / "folders").glob("*.u8map"))
    assert len(caches) == 1
    # Prove the second load reads the cache: make the images unreadable without changing
    # their size or mtime (so the key is the same); a decode would now fail.
    for path in root.rglob("*.png"):
        st = path.stat()
        path.write_bytes(b"\x00" * st.st_size)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = load_folder(root)
    assert torch.equal(first.train_images, second.train_images) and second.classes == ["a", "b"]
    # A changed file (new mtime) changes the key: decoded afresh, so the broken files show.
    os.utime(root / "a" / "0.png", ns=(1, 1))
    with pytest.raises(DataError, match="cannot be used"):
        load_folder(root)


def test_options_change_the_cache_key(tmp_path, isolated_cache):
    root = make_folder(tmp_path / "o", {"a": [_gray(10)] * 2, "b": [_gray(200)] * 2})
    load_folder(root)
    load_folder(root, image_size=20)
    assert len(list((isolated_cache / "folders").glob("*.u8map"))) == 2


def test_load_dataset_accepts_plain_path_and_train_size(tmp_path):
    root = make_folder(tmp_path / "p", {"a": [_gray(10)] * 10, "b": [_gray(200)] * 10})
    ds = load_dataset(str(root), test_size=0.5, train_size=4)
    assert len(ds.train_labels) == 4 and torch.bincount(ds.train_labels).tolist() == [2, 2]
    assert len(ds.test_labels) == 10
    assert not ds.flip_ok  # unknown classes: assume a mirror may change the label
    assert load_dataset(str(root), flip_ok=True).flip_ok
