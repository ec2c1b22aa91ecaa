"""Issue 25 item 7, scale: a folder's decoded images live in a memory-mapped uint8 cache file.

The mapped tensors equal an in-memory decode bit for bit; a damaged, short or linked cache is
decoded again; a folder larger than the memory cap trains (the cap is for in-memory data
sets); the cache's disk is checked instead; loading a large folder grows the process's
memory by far less than the cache's size.
"""

# Fixtures are imported from test_data_support (kept out of the shared conftest.py),
# so pytest's fixture arguments shadow the imports by design.
# ruff: noqa: F811

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_support import isolated_cache  # noqa: F401

from cnnlab.data import foldercache
from cnnlab.data.dataset import channel_stats, validation_indices
from cnnlab.data.folder import (
    CACHE_SUFFIX,
    FolderOptions,
    _decode,
    _sizes,
    load_folder,
    median_side,
    scan,
)
from cnnlab.errors import DataError

pytestmark = pytest.mark.usefixtures("isolated_cache")
ROOT = Path(__file__).resolve().parents[1]


def _noise_folder(root: Path, classes: int, per_class: int, size: int, seed: int = 0) -> Path:
    """`classes` class folders of random colour (and every 4th: gray) PNGs, `size` px a side."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            if i % 4 == 3:
                pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
            else:
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"c{c}" / f"{i}.png")
    return root


def _in_memory_decode(root: Path, options: FolderOptions):
    """The reference: every file decoded in memory, stacked, a share of each class held out."""
    classes, files, _ = scan(root)
    sizes = _sizes(options, median_side(files), len(files))
    pairs = [_decode(path, options, sizes) for path, _ in files]
    channels = options.channels or (1 if all(g is not None for g, _ in pairs) else 3)
    images = torch.stack([pair[0 if channels == 1 else 1] for pair in pairs])
    labels = torch.tensor([label for _, label in files])
    train, test = validation_indices(labels, options.test_fraction, options.seed)
    paths = [str(path) for path, _ in files]
    return (
        (images[train], labels[train], [paths[i] for i in train]),
        (images[test], labels[test], [paths[i] for i in test]),
        classes,
    )


def _cache_files(cache: Path) -> list[Path]:
    return sorted((cache / "folders").glob(f"*{CACHE_SUFFIX}"))


def _mapped(path: Path) -> bool:
    """Whether this process maps `path` (Linux: /proc/self/maps)."""
    return str(path) in Path("/proc/self/maps").read_text()


def test_mapped_tensors_equal_an_in_memory_decode(tmp_path, isolated_cache):
    root = _noise_folder(tmp_path / "noise", classes=3, per_class=100, size=12)
    train, test, classes = _in_memory_decode(root, FolderOptions(image_size=10, seed=3))
    for _ in ("decoded", "from the cache"):
        ds = load_folder(root, image_size=10, seed=3)
        assert torch.equal(ds.train_images, train[0]) and torch.equal(ds.test_images, test[0])
        assert torch.equal(ds.train_labels, train[1]) and torch.equal(ds.test_labels, test[1])
        assert (ds.train_paths, ds.test_paths, ds.classes) == (train[2], test[2], classes)
        assert (ds.mean, ds.std) == channel_stats(train[0])
        assert ds.image_shape == (3, 10, 10) and len(ds.train_labels) == 240
    [cache] = _cache_files(isolated_cache)
    if Path("/proc/self/maps").exists():
        assert _mapped(cache)  # the images are the file's pages, not a copy
    assert cache.stat().st_size > 300 * 3 * 10 * 10


def test_skipped_bad_files_keep_the_in_memory_order(tmp_path):
    root = _noise_folder(tmp_path / "bad", classes=2, per_class=30, size=8)
    (root / "c0" / "10.png").write_bytes(b"not an image")  # rows planned for it are left out
    (root / "c1" / "0.png").write_bytes(b"")
    ds = load_folder(root, skip_bad=True, seed=1)
    for path in (root / "c0" / "10.png", root / "c1" / "0.png"):
        path.unlink()
    clean = load_folder(root, seed=1, use_cache=False)
    assert torch.equal(ds.train_images, clean.train_images)
    assert torch.equal(ds.test_images, clean.test_images)
    assert ds.train_paths == clean.train_paths and len(ds.skipped) == 2


@pytest.mark.parametrize("damage", ["truncated", "grown", "magic", "header", "empty"])
def test_a_damaged_cache_is_decoded_again(tmp_path, isolated_cache, damage):
    root = _noise_folder(tmp_path / "d", classes=2, per_class=8, size=8)
    # a copy: cutting the mapped file in place under a live map would fault its pages (SIGBUS);
    # cnnlab itself only ever renames a new file over the cache
    expected = load_folder(root).train_images.clone()
    [cache] = _cache_files(isolated_cache)
    good = cache.read_bytes()
    broken = {
        "truncated": good[: len(good) // 2],
        "grown": good + b"\0" * 7,
        "magic": good[:-8] + b"NOTCNNLB",
        "header": good[:-40] + b"x" * 24 + good[-16:],
        "empty": b"",
    }[damage]
    cache.write_bytes(broken)
    again = load_folder(root)
    assert torch.equal(again.train_images, expected)
    assert cache.read_bytes() == good  # rebuilt whole


def test_the_cache_is_never_written_through_a_link(tmp_path, isolated_cache):
    root = _noise_folder(tmp_path / "l", classes=2, per_class=4, size=8)
    load_folder(root)
    [cache] = _cache_files(isolated_cache)
    victim = tmp_path / "victim"
    victim.write_bytes(cache.read_bytes())  # even a valid cache behind a link is not used
    cache.unlink()
    cache.symlink_to(victim)
    before = victim.read_bytes()
    load_folder(root)
    assert victim.read_bytes() == before
    assert cache.is_file() and not cache.is_symlink()


def test_use_cache_false_keeps_no_file(tmp_path, isolated_cache):
    root = _noise_folder(tmp_path / "n", classes=2, per_class=4, size=8)
    ds = load_folder(root, use_cache=False)
    assert len(ds.train_labels) + len(ds.test_labels) == 8
    assert list((isolated_cache / "folders").iterdir()) == []


def test_too_little_disk_is_refused_before_decoding(tmp_path, isolated_cache, monkeypatch):
    root = _noise_folder(tmp_path / "big", classes=2, per_class=4, size=8)
    monkeypatch.setattr(foldercache, "free_bytes", lambda folder: 1000)
    with pytest.raises(DataError) as error:
        load_folder(root, image_size=64)
    message = str(error.value)
    for said in ("8 images", "3x64x64", "GB", str(isolated_cache / "folders"), "XDG_CACHE_HOME"):
        assert said in message
    assert "--image-size" in message
    assert list((isolated_cache / "folders").iterdir()) == []  # nothing half-written left


def test_a_folder_larger_than_the_memory_cap_trains(cli, tmp_path, monkeypatch):
    # The memory cap (the registry's available-memory figure) refuses in-memory data sets;
    # a folder goes through the mapped cache, so a cap below its size does not refuse it.
    root = _noise_folder(tmp_path / "cap", classes=2, per_class=40, size=16)
    cache_bytes = 80 * 3 * 16 * 16
    monkeypatch.setattr("cnnlab.data.registry._available_memory", lambda: cache_bytes // 4)
    refused = cli("train", "--data", "shapes", "--out", str(tmp_path / "shapes"), "epochs=1")
    assert refused.code != 0 and "GB of memory" in refused.err  # the cap is in force
    out = tmp_path / "run"
    result = cli("train", "--data", str(root), "--model", "tutorial", "--out", str(out), "epochs=1")
    assert result.code == 0, result.err
    assert (out / "model.safetensors").is_file()


RSS_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from cnnlab.data.folder import load_folder
    from cnnlab.model.inference import normalize

    def status(key):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise SystemExit("no " + key)

    load_folder(sys.argv[2], use_cache=False)  # warm-up: the decoder's and torch's own memory
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass
    before = status("VmHWM")
    ds = load_folder(sys.argv[1], image_size=64)
    loaded = status("VmHWM")
    batch = normalize(ds.train_images[:64].clone(), ds.mean, ds.std)  # 3 MB of float32
    print(before, loaded, status("VmHWM"), len(ds.train_labels) + len(ds.test_labels))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_loading_a_large_folder_grows_memory_far_less_than_the_cache(tmp_path, isolated_cache):
    root = _noise_folder(tmp_path / "large", classes=3, per_class=1000, size=64)
    small = _noise_folder(tmp_path / "small", classes=2, per_class=4, size=64, seed=1)
    cache_bytes = 3000 * 3 * 64 * 64  # 36.9 MB
    env = {**os.environ, "XDG_CACHE_HOME": str(isolated_cache.parent)}
    for phase in ("decoding into the cache", "mapping the cache"):
        done = subprocess.run(
            [sys.executable, "-c", RSS_SCRIPT, str(root), str(small)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        before, loaded, batch, images = map(int, done.stdout.split())
        assert images == 3000
        # peak RSS (VmHWM, file pages mapped in included) after loading, and after one batch
        assert loaded - before < cache_bytes / 2, (phase, before, loaded)
        assert batch - before < cache_bytes / 2, (phase, before, batch)
        print(f"{phase}: +{(loaded - before) / 1e6:.1f} MB, +{(batch - before) / 1e6:.1f} MB")
    assert _cache_files(isolated_cache)[0].stat().st_size > cache_bytes
