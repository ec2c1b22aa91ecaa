"""Downloads against a real HTTP server on loopback: good, wrong checksum, cut off and resumed, offline."""

# Fixtures are imported from test_data_support (kept out of the shared conftest.py),
# so pytest's fixture arguments shadow the imports by design.
# ruff: noqa: F811

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from test_data_support import closed_port_url, file_server, isolated_cache  # noqa: F401

from cnnlab.data.download import DownloadError, download
from cnnlab.data.idx import read_idx_pair, write_idx
from cnnlab.data.remote import RemoteFiles
from cnnlab.errors import DataError

PAYLOAD = bytes(range(256)) * 4000  # 1 MB, several read chunks


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_good_download_verified_and_atomic(tmp_path, file_server):
    file_server.files["/data.bin"] = PAYLOAD
    dest = tmp_path / "cache" / "data.bin"
    assert download(f"{file_server.url}/data.bin", dest, md5(PAYLOAD), progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "cache" / "data.bin.part").exists()
    # Present and verified: no second request.
    download(f"{file_server.url}/data.bin", dest, md5(PAYLOAD), progress=False)
    assert len(file_server.requests) == 1


def test_sha256_accepted(tmp_path, file_server):
    file_server.files["/x"] = b"abc"
    dest = download(
        f"{file_server.url}/x", tmp_path / "x", hashlib.sha256(b"abc").hexdigest(), progress=False
    )
    assert dest.read_bytes() == b"abc"


def test_wrong_checksum_refused_and_nothing_left(tmp_path, file_server):
    file_server.files["/data.bin"] = PAYLOAD
    folder = tmp_path / "cache"
    with pytest.raises(DataError, match="checksum mismatch") as info:
        download(f"{file_server.url}/data.bin", folder / "data.bin", "0" * 32, progress=False)
    assert "deleted" in str(info.value) and md5(PAYLOAD) in str(info.value)
    assert not folder.exists()  # not even an empty cache folder


def test_interrupted_download_resumes_with_range(tmp_path, file_server):
    file_server.files["/data.bin"] = PAYLOAD
    file_server.cut["/data.bin"] = 300_000  # first reply hangs up after 300 kB
    dest = tmp_path / "data.bin"
    url = f"{file_server.url}/data.bin"
    with pytest.raises(
        DownloadError,
        match="connection closed after 300,000 of 1,024,000 bytes; run again to resume",
    ):
        download(url, dest, md5(PAYLOAD), retries=0, progress=False)
    part = tmp_path / "data.bin.part"
    assert part.stat().st_size == 300_000 and not dest.exists()
    download(url, dest, md5(PAYLOAD), retries=0, progress=False)
    assert dest.read_bytes() == PAYLOAD and not part.exists()
    assert file_server.requests == [("/data.bin", None), ("/data.bin", "bytes=300000-")]


def test_retry_resumes_within_one_call(tmp_path, file_server):
    file_server.files["/data.bin"] = PAYLOAD
    file_server.cut["/data.bin"] = 123_456
    download(f"{file_server.url}/data.bin", tmp_path / "d", md5(PAYLOAD), retries=1, progress=False)
    assert (tmp_path / "d").read_bytes() == PAYLOAD
    assert file_server.requests[1] == ("/data.bin", "bytes=123456-")


def test_complete_part_file_is_finished_without_refetching(tmp_path, file_server):
    file_server.files["/data.bin"] = PAYLOAD
    (tmp_path / "d.part").write_bytes(PAYLOAD)
    download(f"{file_server.url}/data.bin", tmp_path / "d", md5(PAYLOAD), progress=False)
    assert (tmp_path / "d").read_bytes() == PAYLOAD
    assert file_server.requests == [("/data.bin", f"bytes={len(PAYLOAD)}-")]  # answered 416


def test_http_error_and_offline(tmp_path, file_server):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{file_server.url}/missing", tmp_path / "m", progress=False, retries=0)
    with pytest.raises(DownloadError, match="cannot connect"):
        download(
            f"{closed_port_url()}/x", tmp_path / "c" / "x", progress=False, retries=0, timeout=2
        )
    assert not (tmp_path / "c").exists()


def _mnist_like_files(folder) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": np.arange(20, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": np.arange(10, dtype=np.uint8),
    }
    return {name: write_idx(folder / name, a).read_bytes() for name, a in arrays.items()}


def test_remote_set_downloads_into_cache_then_reads(tmp_path, file_server, isolated_cache):
    served = _mnist_like_files(tmp_path)
    for name, data in served.items():
        file_server.files[f"/mirror/{name}"] = data
    remote = RemoteFiles(
        "toy",
        tuple((n, md5(d)) for n, d in served.items()),
        (closed_port_url(), f"{file_server.url}/mirror/"),
    )
    paths = remote.fetch(progress=False)
    assert all(p.parent == isolated_cache / "toy" for p in paths.values())
    x, y = read_idx_pair(
        paths["train-images-idx3-ubyte.gz"], paths["train-labels-idx1-ubyte.gz"], 10
    )
    assert x.shape == (20, 1, 28, 28) and y.tolist() == [i % 10 for i in range(20)]
    assert remote.locate() is not None  # now available locally, no network needed
    file_server.files.clear()
    assert remote.fetch(progress=False) == paths


def test_offline_failure_says_where_to_put_files(tmp_path, isolated_cache, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "shared-data"))
    remote = RemoteFiles("toy", (("a.gz", "0" * 32), ("b.gz", "1" * 32)), (closed_port_url(),))
    with pytest.raises(DataError) as info:
        remote.fetch(data_dir=tmp_path / "mine", progress=False)
    message = str(info.value)
    assert "could not download a.gz (offline?)" in message
    for folder in (
        tmp_path / "mine" / "toy",
        tmp_path / "shared-data" / "toy",
        isolated_cache / "toy",
    ):
        assert str(folder) in message
    assert "a.gz, b.gz" in message
    with pytest.raises(DataError, match="downloading is off"):
        remote.fetch(allow_download=False)
