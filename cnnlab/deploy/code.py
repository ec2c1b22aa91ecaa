"""`cnnlab code`: a run (or a spec) as one standalone, readable PyTorch script.

The script needs torch, numpy and Pillow only: the model as an `nn.Module` whose layers carry
cnnlab's names (conv1, relu1, ...) with each output shape from `spec/analysis.py`, the data
read as cnnlab reads it (IDX files, an image folder, or an exported `.npz` for generated and
other sets) and split by cnnlab's seeded rules, the run's normalisation, its recipe as a plain
loop, and its weights as a `.pt` state_dict (torch.save of plain tensors: the script loads them
with `torch.load(weights_only=True)`, needing no safetensors). The text of the script is in
`deploy/codetext.py`. Reads the run record and config.toml as values: never imports training.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from cnnlab import __version__
from cnnlab.data.augment import AugmentPolicy, parse_policy
from cnnlab.data.source import DataSource
from cnnlab.deploy import codetext
from cnnlab.deploy.codetext import comment, filled, translated
from cnnlab.errors import OutputError
from cnnlab.fileio import atomic_write_bytes, atomic_write_text
from cnnlab.i18n import _
from cnnlab.run.folder import Run
from cnnlab.run.record import Pixels
from cnnlab.spec.analysis import LayerReport, analyze, layer_names
from cnnlab.spec.kinds import require_every_kind
from cnnlab.spec.language import ModelSpec

IDX_SETS = ("mnist", "fashion-mnist", "kmnist")
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
# The augmentation items the script writes out; the others are named in it as left out.
WRITTEN_AUGMENT = ("translate", "flip", "vflip", "cutout")
# What each layer kind is, in the comment beside it (Korean in codetext.KOREAN, the seeds' words).
KIND_WORDS = {
    "conv": "convolution", "maxpool": "max pooling", "minpool": "min pooling",
    "avgpool": "average pooling", "gap": "global average pooling", "gmp": "global max pooling",
    "batchnorm": "batch normalisation", "relu": "activation", "relu6": "activation",
    "leakyrelu": "activation", "res": "residual block",
    "sigmoid": "activation", "tanh": "activation", "gelu": "activation", "dropout": "dropout",
    "flatten": "flatten", "fc": "fully connected", "softmax": "softmax",
}  # fmt: skip
require_every_kind(KIND_WORDS, "deploy.code.KIND_WORDS")
# Recipe settings the script leaves out when the run used them: (key, its off value).
LEFT_OUT = (
    ("whiten", "none"),
    ("dirac", False),
    ("balance", "none"),
    ("bn_lr_scale", 1.0),
    ("early_stop", 0),
)


@dataclass(frozen=True)
class CodeInput:
    """Everything the script is written from: the model, its data and pixels, the recipe."""

    title: str  # 'run "demo"' or 'model tutorial'
    origin: str  # the run folder, or the spec text
    spec: ModelSpec  # on the data's input shape, one output per class
    classes: list[str]
    pixels: Pixels
    source: DataSource
    recipe: dict[str, Any]  # config.toml's values (every value decided)
    policy: AugmentPolicy
    run: Run | None = None  # None: a spec, trained from scratch


@dataclass(frozen=True)
class CodeFiles:
    """What `write_code` wrote."""

    script: Path
    weights: Path | None
    data: Path | None


def input_for_run(run: Run) -> CodeInput:
    """The CodeInput of a run folder: its spec, record and config.toml."""
    values = run.config_values()
    recipe = values.get("train", values)
    record = run.record
    flip_ok = bool(recipe.get("flip_ok")) or _data_flip_ok(record.source)
    policy = parse_policy(
        str(recipe.get("augment", "none")),
        flip_ok=flip_ok,
        image_size=record.pixels.input_shape[1],
    )
    return CodeInput(
        f'run "{run.name}"', str(run.path), run.spec, run.classes, record.pixels, record.source,
        recipe, policy, run,
    )  # fmt: skip


def _data_flip_ok(source: DataSource) -> bool:
    """Whether the data set itself says a mirror keeps its labels."""
    from cnnlab.data.folderconfig import read_folder_config
    from cnnlab.data.registry import get_entry, is_folder

    if is_folder(source.name):
        return read_folder_config(_folder_path(source)).flip_ok
    return get_entry(source.name).flip_ok


def _folder_path(source: DataSource) -> Path:
    return Path(source.name.removeprefix("folder:")).expanduser().resolve()


def data_kind(source: DataSource) -> str:
    """How the script reads the data: 'idx' files, an image 'folder', or an exported 'npz'."""
    from cnnlab.data.registry import is_folder

    if is_folder(source.name):
        return "folder"
    as_loaded = source.image_size in ("", "0") and source.channels in (0, 1)
    return "idx" if source.name in IDX_SETS and as_loaded else "npz"


def output_paths(out: str | Path, has_weights: bool, kind: str) -> CodeFiles:
    """The script's path and those of the files beside it (weights, exported data)."""
    script = Path(out)
    if script.suffix != ".py":
        raise OutputError(
            _("--out {script} does not end in .py: name it e.g. train.py").format(script=script)
        )
    weights = script.with_name(f"{script.stem}_weights.pt") if has_weights else None
    data = script.with_name(f"{script.stem}_data.npz") if kind == "npz" else None
    return CodeFiles(script, weights, data)


def check_writable(files: CodeFiles, force: bool) -> None:
    """Refuse to write through a link, or over a file without --force."""
    for path in (files.script, files.weights, files.data):
        if path is None:
            continue
        if path.is_symlink():
            raise OutputError(
                _(
                    "{path} is a symbolic link; cnnlab never writes through one: remove it or "
                    "choose another --out"
                ).format(path=path)
            )
        if path.exists() and not force:
            raise OutputError(
                _("{path} exists; choose another --out, or add --force to replace it").format(
                    path=path
                )
            )
        if path.exists() and not path.is_file():
            raise OutputError(
                _("{path} exists and is not a file; choose another --out").format(path=path)
            )


def write_code(
    inputs: CodeInput, out: str | Path, language: str = "en", force: bool = False
) -> CodeFiles:
    """Write the script (and its weights and data beside it); returns what was written."""
    kind = data_kind(inputs.source)
    files = output_paths(out, inputs.run is not None, kind)
    check_writable(files, force)
    text = script_text(inputs, files, language)
    beside: list[tuple[Path, Callable[[], bytes]]] = []
    if files.data is not None:
        beside.append((files.data, lambda: _data_bytes(inputs.source)))
    if files.weights is not None and inputs.run is not None:
        beside.append((files.weights, lambda: _weights_bytes(inputs.run)))
    return write_files(files, beside, text)


def write_files(
    files: CodeFiles, beside: list[tuple[Path, Callable[[], bytes]]], text: str
) -> CodeFiles:
    """Each file beside the script, then the script: each whole or not at all, never through a
    link; an OutputError naming the folder when one cannot be written."""
    try:
        for path, content in beside:
            atomic_write_bytes(path, content())
        atomic_write_text(files.script, text)
    except OSError as error:
        raise OutputError(
            _("cannot write {folder} ({error}); choose a writable folder with --out").format(
                folder=files.script.parent, error=error.strerror or error
            )
        ) from None
    return files


def _weights_bytes(run: Run) -> bytes:
    """The run's weights as torch.save of a plain {name: tensor} dict."""
    import torch

    state = {
        name: tensor.detach().clone() for name, tensor in run.load_model().state_dict().items()
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _data_bytes(source: DataSource) -> bytes:
    """The data set as loaded (before the validation split), as an .npz of uint8 and int64 arrays."""
    import numpy as np

    from cnnlab.data.source import load_source

    data = load_source(source)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        train_images=data.train_images.numpy(),
        train_labels=data.train_labels.numpy(),
        test_images=data.test_images.numpy(),
        test_labels=data.test_labels.numpy(),
    )
    return buffer.getvalue()


# --- the script's text ---------------------------------------------------------------


def script_text(inputs: CodeInput, files: CodeFiles, language: str = "en") -> str:
    """The whole script."""
    kind = data_kind(inputs.source)
    report = analyze(inputs.spec)
    body = [
        _settings(inputs, files, kind, language),
        _recipe(inputs, language),
        _special_layers(report, language),
        _model(report, language),
        translated(codetext.SPLITS, language),
        translated({"idx": codetext.IDX, "npz": codetext.NPZ}.get(kind, codetext.FOLDER), language),
        translated(codetext.NORMALIZE, language),
        translated(codetext.AUGMENT, language),
        translated(codetext.SCHEDULES[str(inputs.recipe.get("schedule", "onecycle"))], language),
        _train(inputs, language),
        translated(codetext.EVALUATE, language),
        _main(kind, language),
    ]
    code = "\n".join(part for part in body if part)
    return _header(inputs, files, language) + _imports(code) + "\n" + code.rstrip() + "\n"


def _header(inputs: CodeInput, files: CodeFiles, language: str) -> str:
    """The module docstring: what this is, where it came from, how to run it."""
    name = files.script.name
    if language == "ko":
        lines = [
            f"{inputs.title}을(를) 순수 PyTorch로: 모델, 데이터, 학습 설정.",
            "",
            f"`cnnlab code` (cnnlab {__version__})가 {inputs.origin}에서 만들었습니다.",
            "torch, numpy, Pillow만 있으면 되고 cnnlab은 import하지 않습니다.",
            "",
        ]
        usage = [f"    python {name}            실행의 가중치로 테스트 이미지마다 예측 클래스 출력",
                 f"    python {name} --train    실행의 학습 설정으로 처음부터 학습한 뒤 테스트"]  # fmt: skip
    else:
        lines = [
            f"{inputs.title} as plain PyTorch: the model, the data, the training recipe.",
            "",
            f"Written by `cnnlab code` (cnnlab {__version__}) from {inputs.origin}.",
            "It needs only torch, numpy and Pillow; it does not import cnnlab.",
            "",
        ]
        usage = [f"    python {name}            print the predicted class of each test image (the run's weights)",
                 f"    python {name} --train    train from scratch with the run's recipe, then test"]  # fmt: skip
    if inputs.run is None:
        usage = [
            f"    python {name}    "
            + ("처음부터 학습한 뒤 테스트" if language == "ko" else "train from scratch, then test")
        ]
    text = "\n".join(lines + usage).replace('"""', "'''").replace("\\", "/")
    return f'"""{text}\n"""\n\n'


_IMPORTS = (
    ("gzip.", "import gzip"),
    ("math.", "import math"),
)


def _imports(code: str) -> str:
    """The imports the code uses, in isort's order."""
    lines = ["from __future__ import annotations", "", "import argparse"]
    lines += [line for used, line in _IMPORTS if used in code]
    lines += ["from collections import OrderedDict"] if "OrderedDict(" in code else []
    lines += ["from pathlib import Path", "", "import numpy as np", "import torch"]
    lines += ["import torch.nn.functional as F"] if "F." in code else []
    pil = [name for name in ("Image", "ImageOps") if f"{name}." in code]
    lines += [f"from PIL import {', '.join(pil)}"] if pil else []
    lines += ["from torch import nn", "", "Split = tuple[torch.Tensor, torch.Tensor]"]
    return "\n".join(lines) + "\n"


def _settings(inputs: CodeInput, files: CodeFiles, kind: str, language: str) -> str:
    """The settings a reader may edit: data, classes, pixels, weights."""
    c = lambda text: comment(text, language)  # noqa: E731
    pixels, source = inputs.pixels, inputs.source
    lines = ["", f"# {c('---- Settings: edit these ----')}"]
    lines += _data_settings(source, files, kind, c)
    lines += [
        f"CLASSES = [{', '.join(_text(name) for name in inputs.classes)}]",
        f"INPUT_SHAPE = {tuple(inputs.spec.input_shape)!r}  # {c('(channels, height, width) of one image')}",
        f"MEAN = {tuple(pixels.mean)!r}  # {c('per channel, of pixels scaled to 0..1')}",
        f"STD = {tuple(pixels.std)!r}",
        f"TTA = {bool(pixels.tta)!r}  # {c('score each image as the mean of its and its mirror' + chr(39) + 's logits')}",
        f"VAL_SPLIT, SPLIT_SEED = {source.val_split!r}, {source.split_seed!r}  # {c('share of each class held out for validation, and its seed')}",
    ]  # fmt: skip
    if files.weights is not None:
        note = c(
            "the run's weights: a state_dict of plain tensors (torch.save), not safetensors, so that only torch is needed"
        )
        lines += [
            f"# {note}",
            f'WEIGHTS: Path | None = Path(__file__).resolve().parent / "{files.weights.name}"',
        ]
    else:
        lines += [
            f"WEIGHTS: Path | None = None  # {c('no weights: this script trains the model from scratch')}"
        ]
    return "\n".join(lines)


def _data_settings(source: DataSource, files: CodeFiles, kind: str, c) -> list[str]:
    """Where the data is, and the options it was loaded with."""
    if kind == "npz":
        why = "cnnlab's generated set is long to write out: its images are exported next to this script"
        if source.name != "shapes":
            why = "this data set's images, as cnnlab loaded them, exported next to this script"
        assert files.data is not None
        return [f"# {c(why)}", f'DATA_FILE = Path(__file__).resolve().parent / "{files.data.name}"']
    if kind == "folder":
        fraction = source.test_size if 0 < source.test_size < 1 else 0.2
        return [
            f"FOLDER = Path({_text(str(_folder_path(source)))})  # {c('the image folder: one sub-folder per class')}",
            f"KEEP_ASPECT = {_text(source.keep_aspect)}  # {c('how images meet the input' + chr(39) + 's aspect ratio: stretch, pad or crop')}",
            f"TEST_FRACTION = {fraction!r}  # {c('share of each class held out as test when there is no test/ folder')}",
            f"TRAIN_SIZE = {source.train_size!r}  # {c('training images kept (a class-balanced subset); 0: all')}",
            f"TEST_FILES: list[Path] = []  # {c('the files of the test images, in order (filled by load_data)')}",
        ]  # fmt: skip
    folder, names = _idx_place(source)
    return [
        f"DATA_DIR = Path({_text(str(folder))})  # {c('where cnnlab found the files: change it if yours are elsewhere')}",
        f"TRAIN_FILES = {_text(names[0])}, {_text(names[1])}",
        f"TEST_FILES = {_text(names[2])}, {_text(names[3])}",
        f"TRAIN_SIZE = {source.train_size!r}  # {c('training images kept (a class-balanced subset); 0: all')}",
        f"TEST_SIZE = {source.test_size!r}  # {c('test images kept (a class-balanced subset); 0: all')}",
    ]  # fmt: skip


def _idx_place(source: DataSource) -> tuple[Path, list[str]]:
    """The folder holding an IDX set's files and their names there (gzip or not); where cnnlab
    would download them when they are not on this machine."""
    from cnnlab.data.paths import download_dir
    from cnnlab.data.remote import FASHION_MNIST, KMNIST, MNIST

    remote = {"mnist": MNIST, "fashion-mnist": FASHION_MNIST, "kmnist": KMNIST}[source.name]
    found = remote.locate(source.data_dir or None)
    if not found:
        return download_dir(source.name), list(IDX_FILES)
    paths = [found[name] for name in IDX_FILES]
    return paths[0].parent, [path.name for path in paths]


def _recipe(inputs: CodeInput, language: str) -> str:
    """The training settings as constants, and what of the run's recipe the script leaves out."""
    c = lambda text: comment(text, language)  # noqa: E731
    r, policy = inputs.recipe, inputs.policy
    lines = recipe_constants(
        r, c, c("the run stops after this many optimizer steps (a --budget run)")
    )
    lines += [
        f"# {c('augmentation: shift in pixels, mirrors, cutout side in pixels')}",
        f"SHIFT, FLIP, VFLIP, CUTOUT = {policy.translate}, {policy.flip}, {policy.vflip}, {policy.cutout}",
    ]
    left = _left_out(inputs)
    if left:
        lines += [
            f"# {c('left out here, cnnlab' + chr(39) + 's run used it too:')} {', '.join(left)}"
        ]
    return "\n".join(lines)


def recipe_constants(
    r: dict[str, Any], c: Callable[[str], str], total_steps_note: str = ""
) -> list[str]:
    """The recipe section's constants, EPOCHS to SEED, with comments through `c` (the style's
    comment function); both script styles write them alike."""
    lines = ["", f"# {c('---- The recipe: the run' + chr(39) + 's training settings ----')}"]
    lines += [f"EPOCHS = {int(r['epochs'])}", f"BATCH_SIZE = {int(r['batch_size'])}"]
    lines += [f"LR = {float(r['lr'])!r}  # {c('peak learning rate')}"]
    if r["optimizer"] == "sgd":
        lines += [f"MOMENTUM = {float(r['momentum'])!r}  # {c('Nesterov momentum')}"]
    lines += [
        f"WEIGHT_DECAY = {float(r['weight_decay'])!r}  # {c('on conv and fc weights only')}",
        f"WARMUP_STEPS = {int(r['warmup_steps'])}  # {c('optimizer steps of warm-up')}",
    ]
    if int(r.get("total_steps", 0)):
        note = f"  # {total_steps_note}" if total_steps_note else ""
        lines += [f"TOTAL_STEPS = {int(r['total_steps'])}{note}"]
    if r["schedule"] == "step":
        every = int(r.get("step_every", 0)) or max(1, int(r["epochs"]) // 3)
        lines += [f"GAMMA, STEP_EVERY = {float(r['gamma'])!r}, {every}  # {c('the learning rate is multiplied by GAMMA every STEP_EVERY epochs')}"]  # fmt: skip
    lines += [f"LABEL_SMOOTHING = {float(r['label_smoothing'])!r}", f"SEED = {int(r['seed'])}"]
    return lines


def _left_out(inputs: CodeInput) -> list[str]:
    """The parts of the run's recipe the script does not write out (say so in the script)."""
    policy = inputs.policy
    left = [
        f"augment {f.name}={getattr(policy, f.name)}"
        for f in fields(AugmentPolicy)
        if f.name not in WRITTEN_AUGMENT and getattr(policy, f.name)
    ]
    left += [
        f"{key}={inputs.recipe[key]}"
        for key, off in LEFT_OUT
        if key in inputs.recipe and inputs.recipe[key] != off
    ]
    if inputs.source.val_split > 0:
        left.append("best validation epoch's weights kept")
    precision = inputs.run.metrics.get("precision", "float32") if inputs.run else "float32"
    if precision != "float32":
        left.append(f"{precision} autocast (this script: float32)")
    return left


def _special_layers(report, language: str) -> str:
    """The small classes for layers torch lacks, those the model uses."""
    needed = []
    for layer in [*report.layers, *(i for r in report.layers for i in r.inner)]:
        p, kind = layer.layer.params, layer.layer.kind
        if kind == "conv" and p["padding"] == "same" and p["stride"] != (1, 1):
            kind = "sameconv"
        if kind in codetext.SPECIAL_LAYERS and kind not in needed:
            needed.append(kind)
    if not needed:
        return ""
    head = f"\n\n# {comment('---- Layers torch lacks ----', language)}\n"
    return head + "\n".join(translated(codetext.SPECIAL_LAYERS[k], language) for k in needed)


def _model(report, language: str) -> str:
    """class Net: a layer per spec layer, named as cnnlab names it, with its output shape."""
    c = lambda text: comment(text, language)  # noqa: E731
    names = layer_names(report.spec)
    doc = c("The run's model; input (N, C, H, W) normalised, output logits (N, classes).")
    init, forward = [], []
    for name, layer in zip(names, report.layers, strict=True):
        shape = _shape(layer.out_shape)
        kind = c(KIND_WORDS[layer.layer.kind])
        init.append(
            f"        self.{name} = {layer_code(layer)}  # {kind} {layer.layer.text()} -> {shape}"
        )
        if layer.layer.kind == "softmax" and layer is report.layers[-1]:
            init[-1] = f"        self.{name} = nn.Softmax(dim=1)  # {c('softmax is left out of forward: cross-entropy takes logits')}"  # fmt: skip
            continue
        forward.append(f"        x = self.{name}(x)  # {_batch_shape(layer.out_shape)}")
    lines = [
        "",
        "",
        f"# {c('---- The model: the layers named as cnnlab names them ----')}",
        "",
        "",
        "class Net(nn.Module):",
        f'    """{doc}"""',
        "",
        "    def __init__(self) -> None:",
        "        super().__init__()",
        f"        # {c('per image: (channels, height, width) after flatten (features,)')}",
        *init,
        "",
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:",
        f"        # x: {_batch_shape(report.spec.input_shape)}",
        *forward,
        f"        return x  # {c('logits: the loss takes them as they are; softmax gives probabilities')}",
    ]  # fmt: skip
    return "\n".join(lines)


def _shape(shape: tuple[int, ...]) -> str:
    """(32, 28, 28) as text; (10,) as '(10,)'."""
    return f"({', '.join(map(str, shape))}{',' if len(shape) == 1 else ''})"


def _text(value: str) -> str:
    """A Python string literal in double quotes (JSON's escapes are Python's too)."""
    return json.dumps(value, ensure_ascii=False)


def _batch_shape(shape: tuple[int, ...]) -> str:
    """(32, 28, 28) as '(N, 32, 28, 28)'."""
    return f"(N, {', '.join(map(str, shape))})"


def _pair(value: Any) -> Any:
    """(3, 3) -> 3; (3, 5) stays."""
    if isinstance(value, tuple) and len(set(value)) == 1:
        return value[0]
    return value


def layer_code(layer: LayerReport) -> str:
    """The torch expression that builds one layer, its defaults left out."""
    p, kind, in_shape = layer.layer.params, layer.layer.kind, layer.in_shape
    plain = {"relu": "nn.ReLU()", "relu6": "nn.ReLU6()", "sigmoid": "nn.Sigmoid()",
             "tanh": "nn.Tanh()", "gelu": "nn.GELU()",
             "flatten": "nn.Flatten()", "softmax": "nn.Softmax(dim=1)",
             "gap": "GlobalAvgPool2d()", "gmp": "GlobalMaxPool2d()"}  # fmt: skip
    if kind in plain:
        return plain[kind]
    if kind == "conv":
        return _conv_code(p, in_shape)
    if kind == "res":
        return _residual_code(layer)
    if kind in ("maxpool", "minpool", "avgpool"):
        return _pool_code(kind, p)
    if kind == "batchnorm":
        args = [str(in_shape[0])]
        args += [f"eps={p['eps']!r}"] if p["eps"] != 1e-5 else []
        args += [f"momentum={p['momentum']!r}"] if p["momentum"] != 0.1 else []
        return f"nn.BatchNorm{'2' if len(in_shape) == 3 else '1'}d({', '.join(args)})"
    if kind == "leakyrelu":
        return f"nn.LeakyReLU({p['slope']!r})"
    if kind == "dropout":
        return f"nn.Dropout({p['p']!r})"
    assert kind == "fc", kind
    return f"nn.Linear({in_shape[0]}, {p['out']}{'' if p['bias'] else ', bias=False'})"


def _residual_code(block: LayerReport) -> str:
    """Residual(body, shortcut): each branch an nn.Sequential of its layers under cnnlab's names
    (res1.body.conv1, ...), so the run's state_dict loads as it is."""

    def branch(name: str) -> str:
        layers = [i for i in block.inner if i.name.split(".")[1] == name]
        items = [f'("{i.name.split(".")[2]}", {layer_code(i)})' for i in layers]
        return f"nn.Sequential(OrderedDict([{', '.join(items)}]))" if items else "nn.Sequential()"

    return f"Residual({branch('body')}, {branch('shortcut')})"


def _conv_code(p: dict, in_shape: tuple[int, ...]) -> str:
    """nn.Conv2d(...), or SameConv2d(...) for Keras-style 'same' with a stride above 1."""
    from cnnlab.spec import shapes

    args = [str(in_shape[0]), str(p["out"]), f"kernel_size={_pair(p['kernel'])}"]
    args += [f"stride={_pair(p['stride'])}"] if p["stride"] != (1, 1) else []
    strided_same = p["padding"] == "same" and p["stride"] != (1, 1)
    if not strided_same and p["padding"] not in ((0, 0), "valid"):
        padding = p["padding"]
        args.append(f"padding={_text(padding) if isinstance(padding, str) else _pair(padding)}")
    args += [f"dilation={_pair(p['dilation'])}"] if p["dilation"] != (1, 1) else []
    args += [f"groups={p['groups']}"] if p["groups"] != 1 else []
    args += [] if p["bias"] else ["bias=False"]
    args += [f"padding_mode={_text(p['padding_mode'])}"] if p["padding_mode"] != "zeros" else []
    if not strided_same:
        return f"nn.Conv2d({', '.join(args)})"
    top, bottom = shapes.same_padding(in_shape[1], p["kernel"][0], p["stride"][0], p["dilation"][0])
    left, right = shapes.same_padding(in_shape[2], p["kernel"][1], p["stride"][1], p["dilation"][1])
    return f"SameConv2d({', '.join(args)}, same_pads={(left, right, top, bottom)})"


def _pool_code(kind: str, p: dict) -> str:
    """nn.MaxPool2d / nn.AvgPool2d / MinPool2d with the spec's window."""
    cls = {"maxpool": "nn.MaxPool2d", "minpool": "MinPool2d", "avgpool": "nn.AvgPool2d"}[kind]
    args = [f"kernel_size={_pair(p['kernel'])}"]
    args += [f"stride={_pair(p['stride'])}"] if p["stride"] != p["kernel"] else []
    args += [f"padding={_pair(p['padding'])}"] if p["padding"] != (0, 0) else []
    if p.get("dilation", (1, 1)) != (1, 1):
        args.append(f"dilation={_pair(p['dilation'])}")
    args += ["ceil_mode=True"] if p["ceil_mode"] else []
    args += ["count_include_pad=False"] if p.get("count_include_pad", True) is False else []
    return f"{cls}({', '.join(args)})"


def _train(inputs: CodeInput, language: str) -> str:
    """The optimizer and the loop, with the run's optimizer and step count."""
    optimizer = codetext.OPTIMIZERS[str(inputs.recipe["optimizer"])]
    total = "epochs * per_epoch"
    if int(inputs.recipe.get("total_steps", 0)):
        total = "min(TOTAL_STEPS, epochs * per_epoch)"
    return filled(codetext.TRAIN, language, optimizer=optimizer, total_steps=total)


_MAIN_HELP = {
    "en": (
        "train from scratch with the run's recipe",
        "epochs to train (default: the run's)",
        "save the trained weights to this .pt file",
    ),
    "ko": (
        "실행의 학습 설정으로 처음부터 학습",
        "학습할 에포크 수 (기본: 실행과 같음)",
        "학습한 가중치를 이 .pt 파일로 저장",
    ),
}


def _main(kind: str, language: str) -> str:
    """main(): predict with the weights, or train; the test accuracy."""
    train_help, epochs_help, save_help = _MAIN_HELP["ko" if language == "ko" else "en"]
    column = "\\t{TEST_FILES[i]}" if kind == "folder" else ""
    return filled(
        codetext.MAIN, language,
        train_help=train_help, epochs_help=epochs_help, save_help=save_help, file_column=column,
    )  # fmt: skip
