"""Data sets made of published files: find them locally, else download them (checksummed) into the cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnnlab.data.download import DownloadError, download
from cnnlab.data.paths import download_dir, search_dirs
from cnnlab.errors import DataError
from cnnlab.i18n import _


@dataclass(frozen=True)
class RemoteFiles:
    """The files one data set needs, their published checksums and where they are served."""

    name: str
    files: tuple[tuple[str, str], ...]  # (file name, published md5 of the file as served)
    mirrors: tuple[str, ...]  # base URLs, tried in order
    # A file may also sit uncompressed: "x.gz" is found as "x" too.
    accept_raw: bool = True

    def candidates(self, filename: str) -> list[str]:
        """Names under which `filename` is accepted locally."""
        names = [filename]
        if self.accept_raw and filename.endswith(".gz"):
            names.append(filename.removesuffix(".gz"))
        return names

    def find_in(self, folder: Path) -> dict[str, Path] | None:
        """{file name: path} when `folder` holds every file (gzip or raw), else None."""
        found = {}
        for filename, _md5 in self.files:
            path = next(
                (folder / c for c in self.candidates(filename) if (folder / c).is_file()), None
            )
            if path is None:
                return None
            found[filename] = path
        return found

    def locate(self, data_dir: str | Path | None = None) -> dict[str, Path] | None:
        """The first search folder holding every file, as {file name: path}; None when none does."""
        for folder in search_dirs(self.name, data_dir):
            found = self.find_in(folder)
            if found is not None:
                return found
        return None

    def manual_help(self, data_dir: str | Path | None = None) -> str:
        """Where to put the files by hand: exact folders and file names."""
        names = ", ".join(f for f, _ in self.files)
        folders = "\n".join(f"  {d}" for d in search_dirs(self.name, data_dir))
        put = (
            _("put these files (gzip or uncompressed): {names}")
            if self.accept_raw
            else _("put these files: {names}")
        )
        return (
            put.format(names=names)
            + "\n"
            + _("into one of these folders (searched in this order):")
            + f"\n{folders}\n"
            + _(
                "or pass --data-dir DIR (files in DIR/{name}/ or DIR/); downloads come from {url}"
            ).format(name=self.name, url=self.mirrors[0])
        )

    def fetch(
        self,
        data_dir: str | Path | None = None,
        allow_download: bool = True,
        progress: bool | None = None,
    ) -> dict[str, Path]:
        """Local files if present, else downloaded into the cache (each checksum verified)."""
        found = self.locate(data_dir)
        if found is not None:
            return found
        if not allow_download:
            raise DataError(
                _("{data}: files not found locally and downloading is off;").format(data=self.name)
                + f"\n{self.manual_help(data_dir)}"
            )
        folder = download_dir(self.name)
        paths = {}
        for filename, md5 in self.files:
            paths[filename] = self._download_one(filename, md5, folder, data_dir, progress)
        return paths

    def _download_one(
        self,
        filename: str,
        md5: str,
        folder: Path,
        data_dir: str | Path | None,
        progress: bool | None,
    ) -> Path:
        failures = []
        for base in self.mirrors:
            url = base.rstrip("/") + "/" + filename
            try:
                return download(url, folder / filename, md5, progress=progress)
            except DownloadError as error:
                failures.append(str(error))
        tried = "\n".join(f"  {f}" for f in failures)
        raise DataError(
            _("{data}: could not download {file} (offline?). Tried:").format(
                data=self.name, file=filename
            )
            + f"\n{tried}\n"
            + _("To install by hand, ")
            + self.manual_help(data_dir)
        )


# Published md5 checksums of the files as served (the values torchvision and the data sets' pages list).
# Debian's dataset-fashion-mnist recompresses the .gz files, so local files are checked by
# structure (the IDX reader's strict checks), and only downloads by checksum.
MNIST = RemoteFiles(
    "mnist",
    (
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
    ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
)
FASHION_MNIST = RemoteFiles(
    "fashion-mnist",
    (
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ),
    (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
)
KMNIST = RemoteFiles(
    "kmnist",
    (
        ("train-images-idx3-ubyte.gz", "bdb82020997e1d708af4cf47b453dcf7"),
        ("train-labels-idx1-ubyte.gz", "e144d726b3acfaa3e44228e80efcd344"),
        ("t10k-images-idx3-ubyte.gz", "5c965bf0a639b31b8f53240b1b52f4d7"),
        ("t10k-labels-idx1-ubyte.gz", "7320c461ea6c1c855c0b718fb2a4b134"),
    ),
    ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
)
# The binary version (fixed-length records), not the Python pickle version.
CIFAR10 = RemoteFiles(
    "cifar10",
    (("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530"),),
    ("https://www.cs.toronto.edu/~kriz/",),
    accept_raw=False,
)
