"""IDX reader and writer: round trips, and every corruption refused with the file and the problem named."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.data.idx import read_idx, read_idx_pair, write_idx
from cnnlab.errors import DataError


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_every_dtype_gzip_and_raw(tmp_path, dtype, suffix):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((5, 3, 4)) * 100).astype(dtype)
    path = write_idx(tmp_path / f"x{suffix}", array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    back = read_idx(path)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_header_is_big_endian_mnist_layout(tmp_path):
    path = write_idx(tmp_path / "labels", np.array([1, 2, 3], dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 1, 2, 3])


def _pair(tmp_path, n_images=6, n_labels=6, labels=None, gz=True):
    ext = ".gz" if gz else ""
    images = np.arange(n_images * 4 * 4, dtype=np.uint8).reshape(n_images, 4, 4)
    labels = (
        np.arange(n_labels, dtype=np.uint8) % 3
        if labels is None
        else np.asarray(labels, dtype=np.uint8)
    )
    return write_idx(tmp_path / f"img-idx3-ubyte{ext}", images), write_idx(
        tmp_path / f"lab-idx1-ubyte{ext}", labels
    )


def test_pair_gives_nchw_uint8_and_int64_labels(tmp_path):
    img, lab = _pair(tmp_path)
    x, y = read_idx_pair(img, lab, num_classes=3)
    assert x.shape == (6, 1, 4, 4) and x.dtype == torch.uint8
    assert y.dtype == torch.int64 and y.tolist() == [0, 1, 2, 0, 1, 2]
    assert int(x[1, 0, 0, 0]) == 16  # second image starts at byte 16 of the body


def _corrupt(path, how):
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if how == "magic":
        raw = b"\x12\x34" + raw[2:]
    elif how == "dtype":
        raw = raw[:2] + b"\x07" + raw[3:]
    elif how == "truncated":
        raw = raw[:-5]
    elif how == "extra":
        raw = raw + b"\x00\x00\x00"
    elif how == "header":
        raw = raw[:6]
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("magic", "not an IDX file (magic number 0x1234"),
        ("dtype", "not an IDX file"),
        ("truncated", "truncated body"),
        ("extra", "3 extra bytes"),
        ("header", "truncated IDX header"),
    ],
)
@pytest.mark.parametrize("gz", [True, False])
def test_corrupt_file_refused_naming_file_and_problem(tmp_path, how, message, gz):
    img, lab = _pair(tmp_path, gz=gz)
    _corrupt(img, how)
    with pytest.raises(DataError) as info:
        read_idx_pair(img, lab, num_classes=3)
    assert str(img) in str(info.value)
    assert message in str(info.value)


def test_label_out_of_range_refused(tmp_path):
    img, lab = _pair(tmp_path, labels=[0, 1, 2, 255, 1, 0])
    with pytest.raises(DataError, match=r"label 255 at index 3 is outside 0\.\.9") as info:
        read_idx_pair(img, lab, num_classes=10)
    assert str(lab) in str(info.value)


def test_count_mismatch_refused(tmp_path):
    img, lab = _pair(tmp_path, n_images=6, n_labels=5)
    with pytest.raises(DataError, match="holds 6 images but .* holds 5 labels") as info:
        read_idx_pair(img, lab, num_classes=3)
    assert str(img) in str(info.value) and str(lab) in str(info.value)


def test_swapped_files_refused(tmp_path):
    img, lab = _pair(tmp_path)
    with pytest.raises(DataError, match="expected uint8 images of shape"):
        read_idx_pair(lab, img, num_classes=3)


def test_damaged_gzip_refused(tmp_path):
    img, lab = _pair(tmp_path)
    img.write_bytes(img.read_bytes()[:-12])  # cut the gzip stream
    with pytest.raises(DataError, match="damaged gzip file") as info:
        read_idx_pair(img, lab, num_classes=3)
    assert str(img) in str(info.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "nope.gz")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(DataError, match="only 0 bytes"):
        read_idx(tmp_path / "empty")


def test_writer_refuses_unstorable_dtype(tmp_path):
    with pytest.raises(DataError, match="cannot store dtype"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint64))


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from(["uint8", "int8", "int16", "int32", "float32", "float64"]),
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
    compress=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_round_trip_property(tmp_path_factory, dtype, shape, compress, seed):
    array = (np.random.default_rng(seed).standard_normal(shape) * 1000).astype(dtype)
    path = write_idx(tmp_path_factory.mktemp("idx") / "x", array, compress=compress)
    back = read_idx(path)
    assert back.shape == tuple(shape) and back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)
