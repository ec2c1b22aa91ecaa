"""IDX files (the MNIST family's format), gzip or raw: a strict reader and a writer.

Layout: 2 zero bytes, a dtype code, the number of dimensions D, then D big-endian
uint32 sizes, then the data in C order (big-endian for multi-byte types).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from cnnlab.errors import DataError
from cnnlab.fileio import read_regular_bytes
from cnnlab.i18n import _

# IDX type code -> big-endian numpy dtype.
DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
CODES: dict[str, int] = {np.dtype(dt).newbyteorder("=").str: code for code, dt in DTYPES.items()}
GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic."""
    try:
        data = read_regular_bytes(path)
    except FileNotFoundError:
        raise DataError(_("{path}: file not found").format(path=path)) from None
    except OSError as error:
        raise DataError(
            _("{path}: cannot read ({error})").format(path=path, error=error.strerror)
        ) from None
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        # zlib with wbits=31 reads one gzip member fast; fall back for multi-member files.
        inflater = zlib.decompressobj(wbits=31)
        out = inflater.decompress(data)
        if not inflater.eof:
            raise EOFError("gzip stream ends early")
        if inflater.unused_data:
            out = gzip.decompress(data)
        return out
    except (zlib.error, EOFError, gzip.BadGzipFile, OSError) as error:
        raise DataError(
            _(
                "{path}: damaged gzip file ({error}); delete it and download or copy it again"
            ).format(path=path, error=error)
        ) from None


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array (native byte order); DataError names `source` and the problem."""
    if len(data) < 4:
        raise DataError(
            _("{source}: not an IDX file (only {count} bytes, a header needs 4)").format(
                source=source, count=len(data)
            )
        )
    zero, code, ndim = data[:2], data[2], data[3]
    if zero != b"\x00\x00" or code not in DTYPES:
        raise DataError(
            _(
                "{source}: not an IDX file (magic number {magic}; expected 0x0000TTDD "
                "with type TT in {types}); is it the right file?"
            ).format(
                source=source,
                magic=f"0x{data[:4].hex()}",
                types=", ".join(f"0x{c:02x}" for c in DTYPES),
            )
        )
    if ndim == 0:
        raise DataError(
            _("{source}: IDX header says 0 dimensions; the file is damaged").format(source=source)
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            _("{source}: truncated IDX header ({count} of {header} bytes)").format(
                source=source, count=len(data), header=header
            )
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) < expected:
        raise DataError(
            _(
                "{source}: truncated body: {count} data bytes, the header's shape "
                "{shape} needs {needed}; the file is incomplete: download or copy it again"
            ).format(source=source, count=len(data) - header, shape=shape, needed=expected - header)
        )
    if len(data) > expected:
        raise DataError(
            _(
                "{source}: {count} extra bytes after the data for shape {shape}; "
                "the file is damaged or not what its header says: download or copy it again"
            ).format(source=source, count=len(data) - expected, shape=shape)
        )
    count = int(np.prod(shape, dtype=np.int64))
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzip or raw) into a numpy array; strict about header and length."""
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))


def write_idx(
    path: str | Path, array: np.ndarray | torch.Tensor, compress: bool | None = None
) -> Path:
    """Write `array` as an IDX file; gzip when `compress` or (if None) when the name ends in .gz."""
    path = Path(path)
    array = array.numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    key = array.dtype.newbyteorder("=").str
    if key not in CODES:
        raise DataError(
            _(
                "{path}: IDX cannot store dtype {dtype}; use uint8, int8, int16, int32, float32 "
                "or float64"
            ).format(path=path, dtype=array.dtype)
        )
    code = CODES[key]
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    body = np.ascontiguousarray(array, dtype=DTYPES[code]).tobytes()
    data = header + body
    if compress or (compress is None and path.suffix == ".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    path.write_bytes(data)
    return path


def read_idx_pair(
    images_path: str | Path, labels_path: str | Path, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, H, W) uint8 and labels (N,) int64 from two IDX files, checked against each other."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(
            _(
                "{path}: expected uint8 images of shape (N, H, W), found {dtype} {shape}; "
                "is this an image file (…-images-idx3-ubyte)?"
            ).format(path=images_path, dtype=images.dtype, shape=images.shape)
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            _(
                "{path}: expected uint8 labels of shape (N,), found {dtype} {shape}; "
                "is this a label file (…-labels-idx1-ubyte)?"
            ).format(path=labels_path, dtype=labels.dtype, shape=labels.shape)
        )
    if len(images) != len(labels):
        raise DataError(
            _(
                "{images_path} holds {images} images but {labels_path} holds {labels} labels; "
                "the two files must come from the same split (train or t10k)"
            ).format(
                images_path=images_path,
                images=len(images),
                labels_path=labels_path,
                labels=len(labels),
            )
        )
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            _(
                "{path}: label {label} at index {index} is outside 0..{last} "
                "({count} such labels); the file is damaged or belongs to another data set"
            ).format(
                path=labels_path,
                label=int(labels[i]),
                index=i,
                last=num_classes - 1,
                count=bad.size,
            )
        )
    x = torch.from_numpy(images.copy()).unsqueeze(1)  # (N, 1, H, W) uint8
    y = torch.from_numpy(labels.astype(np.int64))  # (N,) int64
    return x, y
