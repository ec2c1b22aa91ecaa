"""Safe archive extraction and CIFAR-10 (binary version) from archives the tests write."""

# Fixtures are imported from test_data_support (kept out of the shared conftest.py),
# so pytest's fixture arguments shadow the imports by design.
# ruff: noqa: F811

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import pytest
import torch
from test_data_support import file_server, isolated_cache  # noqa: F401

from cnnlab.data import cifar, load_dataset
from cnnlab.data.archive import safe_extract
from cnnlab.data.remote import RemoteFiles
from cnnlab.errors import DataError


def _add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _add_special(tar: tarfile.TarFile, name: str, kind: bytes, linkname: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    tar.addfile(info)


def make_tar(path, members) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            if member[0] == "file":
                _add_file(tar, member[1], member[2])
            else:
                _add_special(tar, member[1], member[2], member[3] if len(member) > 3 else "")


def test_good_archive_extracts_only_what_is_asked(tmp_path):
    archive = tmp_path / "a.tar.gz"
    make_tar(
        archive,
        [
            ("file", "top/a.bin", b"aaa"),
            ("file", "top/sub/b.bin", b"bb"),
            ("file", "top/skip.txt", b"x"),
        ],
    )
    written = safe_extract(archive, tmp_path / "out", only={"top/a.bin", "top/sub/b.bin"})
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == [
        "top/a.bin",
        "top/sub/b.bin",
    ]
    assert (tmp_path / "out" / "top" / "sub" / "b.bin").read_bytes() == b"bb"
    assert not (tmp_path / "out" / "top" / "skip.txt").exists()


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        (("file", "../escape.txt", b"x"), "climbs out with '..'"),
        (("file", "ok/../../escape.txt", b"x"), "climbs out with '..'"),
        (("file", "/tmp/cnnlab-absolute-escape.txt", b"x"), "has an absolute path"),
        (("special", "link", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
        (("special", "hard", tarfile.LNKTYPE, "../../etc/passwd"), "is a link"),
        (("special", "dev", tarfile.CHRTYPE), "device, FIFO or other special file"),
        (("special", "pipe", tarfile.FIFOTYPE), "device, FIFO or other special file"),
    ],
)
def test_escaping_or_special_members_refused_and_nothing_written(tmp_path, member, problem):
    archive = tmp_path / "evil.tar.gz"
    make_tar(archive, [("file", "innocent.txt", b"fine"), member])
    target = tmp_path / "sandbox" / "out"
    with pytest.raises(DataError, match=problem) as info:
        safe_extract(archive, target)
    assert str(archive) in str(info.value) and repr(member[1]) in str(info.value)
    assert not target.exists()
    assert [p.name for p in (tmp_path / "sandbox").iterdir()] == []  # no staging left behind
    assert not (tmp_path / "escape.txt").exists()


def test_damaged_archive_refused(tmp_path):
    archive = tmp_path / "cut.tar.gz"
    make_tar(archive, [("file", "a.bin", np.random.default_rng(0).bytes(100_000))])
    archive.write_bytes(archive.read_bytes()[:5000])
    with pytest.raises(DataError, match="damaged or not a tar archive") as info:
        safe_extract(archive, tmp_path / "out")
    assert str(archive) in str(info.value)


def _cifar_batch(labels: np.ndarray, value_of_label: bool = True) -> bytes:
    """CIFAR-10 binary records: a label byte then R, G, B planes; pixels encode the label."""
    n = len(labels)
    pixels = np.zeros((n, 3, 32, 32), dtype=np.uint8)
    pixels[:, 0] = labels[:, None, None] * 20  # red plane = 20 * label
    pixels[:, 2, 0, 0] = 7  # one blue marker pixel, top-left
    records = np.concatenate([labels[:, None].astype(np.uint8), pixels.reshape(n, -1)], axis=1)
    return records.tobytes()


def make_cifar_archive(path) -> bytes:
    labels = (np.arange(cifar.PER_FILE) % 10).astype(np.uint8)
    members = [
        ("file", f"cifar-10-batches-bin/{name}", _cifar_batch(labels))
        for name in cifar.TRAIN_FILES + cifar.TEST_FILES
    ]
    members.append(
        ("file", "cifar-10-batches-bin/batches.meta.txt", "\n".join(cifar.CLASSES).encode())
    )
    members.append(("file", "cifar-10-batches-bin/readme.html", b"<html/>"))
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for _, name, data in members:
            _add_file(tar, name, data)
    return path.read_bytes()


def test_cifar10_downloaded_extracted_and_read(tmp_path, file_server, isolated_cache):
    archive = make_cifar_archive(tmp_path / "cifar-10-binary.tar.gz")
    file_server.files["/kriz/cifar-10-binary.tar.gz"] = archive
    remote = RemoteFiles(
        "cifar10",
        (("cifar-10-binary.tar.gz", hashlib.md5(archive).hexdigest()),),
        (f"{file_server.url}/kriz/",),
        accept_raw=False,
    )
    train_x, train_y, test_x, test_y, where = cifar.load_cifar10(progress=False, remote=remote)
    assert train_x.shape == (50000, 3, 32, 32) and train_x.dtype == torch.uint8
    assert test_x.shape == (10000, 3, 32, 32) and test_y.dtype == torch.int64
    assert torch.bincount(train_y).tolist() == [5000] * 10
    # Channel planes land where they belong: red encodes the label, blue marks (0, 0).
    assert torch.equal(train_x[:, 0, 5, 5].long(), train_y * 20)
    assert train_x[:, 2, 0, 0].eq(7).all() and train_x[:, 1].eq(0).all()
    assert where == str(isolated_cache / "cifar10" / "cifar-10-batches-bin")
    assert not (isolated_cache / "cifar10" / "cifar-10-batches-bin" / "readme.html").exists()
    # Now local: the registry finds it without the network, flip allowed for photos.
    ds = load_dataset("cifar10", download=False, train_size=1000)
    assert ds.image_shape == (3, 32, 32) and len(ds.train_labels) == 1000 and ds.flip_ok


def test_cifar_batch_wrong_length_or_label_refused(tmp_path):
    short = tmp_path / "data_batch_1.bin"
    short.write_bytes(_cifar_batch(np.zeros(10, dtype=np.uint8)))
    with pytest.raises(DataError, match="30,730 bytes, a CIFAR-10 batch has 30,730,000") as info:
        cifar.read_batch(short)
    assert str(short) in str(info.value)
    labels = np.zeros(cifar.PER_FILE, dtype=np.uint8)
    labels[42] = 10
    bad = tmp_path / "test_batch.bin"
    bad.write_bytes(_cifar_batch(labels))
    with pytest.raises(DataError, match="label 10 in record 42 is outside 0..9"):
        cifar.read_batch(bad)


def test_refused_member_outside_only_still_refuses_everything(tmp_path):
    # Every member is checked before any is written, wanted or not.
    archive = tmp_path / "mixed.tar.gz"
    make_tar(archive, [("file", "good.bin", b"ok"), ("file", "../escape.txt", b"x")])
    with pytest.raises(DataError, match="climbs out with '..'"):
        safe_extract(archive, tmp_path / "sandbox" / "out", only={"good.bin"})
    assert [p.name for p in (tmp_path / "sandbox").iterdir()] == []


def test_set_id_bits_and_group_write_dropped(tmp_path):
    # The standard 'data' filter: a data file keeps no set-uid/set-gid bit and no go-w.
    archive = tmp_path / "modes.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("tool.sh")
        info.size, info.mode = 2, 0o6777
        tar.addfile(info, io.BytesIO(b"#!"))
    (written,) = safe_extract(archive, tmp_path / "out")
    assert written.stat().st_mode & 0o7777 == 0o755
