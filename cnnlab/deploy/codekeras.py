"""`cnnlab code --style keras`: a run (or a spec) as one standalone Keras 3 script.

The script needs keras and numpy only (keras on its torch backend by default): the model
as a `keras.Sequential` in the manner of the seeds' Keras tutorial (the functional API, with
`layers.Add`, where there are residual blocks), each layer under cnnlab's name with its output
shape channels_last; the images cnnlab used, split as the run split them, exported beside it as
an `.npz`; the recipe as `model.compile` and `model.fit`; and the run's `model.safetensors`
beside it, read with numpy alone (8-byte header length, JSON header, raw little-endian data) and
turned from torch's layouts into keras'. Layers keras cannot write exactly raise a SpecError that
names the layer and points at `--style torch`. Pure text: imports neither keras nor training.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from cnnlab import __version__
from cnnlab.deploy.code import (
    KIND_WORDS,
    CodeFiles,
    CodeInput,
    _left_out,
    _pair,
    _text,
    check_writable,
    recipe_constants,
    write_files,
)
from cnnlab.deploy.codetext import comment, filled, translated
from cnnlab.errors import OutputError, SpecError
from cnnlab.i18n import _
from cnnlab.spec.analysis import LayerReport, analyze, layer_names

IMPORTS = """from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # keras 3 on PyTorch; jax or tensorflow work too

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402
"""

WEIGHTS_BLOCK = '''

# ---- The run's weights: safetensors read with numpy, torch's layouts turned into keras' ----

DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a .safetensors file: 8 bytes of header length, a JSON header, raw data."""
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]  # a byte range after the header
        data = np.frombuffer(raw[8 + size + start : 8 + size + end], dtype=DTYPES[info["dtype"]])
        tensors[name] = data.reshape(info["shape"])
    return tensors


def from_flat(values: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """The last axis from torch's flatten order (C, H, W) to keras' (H, W, C)."""
    c, h, w = shape
    order = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
    return values[..., order]


def load_weights(model: keras.Model, path: Path) -> None:
    """Set each layer's weights from the run's state_dict, under the layer's name."""
    w = read_safetensors(path)
    for layer in model.layers:
        name = layer.name.replace("-", ".")  # keras' res1-body-conv1 is cnnlab's res1.body.conv1
        flat = FLAT_INPUTS.get(name)
        if isinstance(layer, layers.DepthwiseConv2D):
            kernel = w[f"{name}.weight"]  # torch: (C * M, 1, KH, KW)
            m = layer.depth_multiplier
            kernel = kernel.reshape(-1, m, *kernel.shape[2:])
            values = [kernel.transpose(2, 3, 0, 1)]  # keras: (KH, KW, C, M)
        elif isinstance(layer, layers.Conv2D):
            values = [w[f"{name}.weight"].transpose(2, 3, 1, 0)]  # (O, I, KH, KW) to (KH, KW, I, O)
        elif isinstance(layer, layers.Dense):
            kernel = w[f"{name}.weight"]  # torch: (out, in)
            values = [(from_flat(kernel, flat) if flat else kernel).T]  # keras: (in, out)
        elif isinstance(layer, layers.BatchNormalization):
            keys = ("weight", "bias", "running_mean", "running_var")  # gamma, beta, mean, variance
            values = [w[f"{name}.{key}"] for key in keys]
            values = [from_flat(v, flat) if flat else v for v in values]
        else:
            continue
        if not isinstance(layer, layers.BatchNormalization) and layer.use_bias:
            values.append(w[f"{name}.bias"])
        layer.set_weights([v.astype(np.float32) for v in values])
'''

DATA_BLOCK = '''

# ---- Data: the images cnnlab used, split as the run split them ----


def load_data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """train, val and test: uint8 images (N, H, W, C) and int64 labels (N,)."""
    splits = {}
    with np.load(DATA_FILE) as data:
        for split in ("train", "val", "test"):
            images = data[f"{split}_images"].transpose(0, 2, 3, 1)  # from (N, C, H, W)
            splits[split] = images, data[f"{split}_labels"]
    return splits


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) -> float32 (x / 255 - mean) / std per channel, as cnnlab computes it."""
    mean, std = np.float32(MEAN), np.float32(STD)
    return images.astype(np.float32) * (1.0 / (255.0 * std)) - mean / std
'''

SCHEDULE_BLOCK = '''

# ---- The learning rate: a function of the step alone ----


class Schedule(keras.optimizers.schedules.LearningRateSchedule):
    """$doc"""

    def __init__(self, total_steps: int, per_epoch: int) -> None:
        self.total_steps, self.per_epoch = total_steps, per_epoch

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = $warm
        progress = (step - WARMUP_STEPS) / max(1, self.total_steps - WARMUP_STEPS)
        after = $after
        return LR * keras.ops.where(step < WARMUP_STEPS, warm, after)
'''

SCHEDULES = {
    "onecycle": (
        "The learning rate at optimizer step `step` (0-based): one cycle.",
        "0.1 + 0.9 * (step + 1) / max(1, WARMUP_STEPS)",
        "keras.ops.maximum(0.0, 1.0 - progress)",
    ),
    "cosine": (
        "The learning rate at optimizer step `step` (0-based): cosine.",
        "(step + 1) / max(1, WARMUP_STEPS)",
        "0.5 * (1.0 + keras.ops.cos(np.pi * keras.ops.minimum(1.0, progress)))",
    ),
    "step": (
        "The learning rate at optimizer step `step` (0-based): steps down.",
        "(step + 1) / max(1, WARMUP_STEPS)",
        "keras.ops.power(GAMMA, keras.ops.floor(step / (STEP_EVERY * self.per_epoch)))",
    ),
    "constant": (
        "The learning rate at optimizer step `step` (0-based): constant.",
        "(step + 1) / max(1, WARMUP_STEPS)",
        "keras.ops.ones_like(progress)",
    ),
}

OPTIMIZERS = {
    "sgd": "keras.optimizers.SGD(schedule, momentum=MOMENTUM, nesterov=MOMENTUM > 0, weight_decay=WEIGHT_DECAY or None)",
    "adam": "keras.optimizers.Adam(schedule, weight_decay=WEIGHT_DECAY or None)",
    "adamw": "keras.optimizers.AdamW(schedule, weight_decay=WEIGHT_DECAY)",
}

TRAIN_BLOCK = '''

# ---- Training: model.compile and model.fit ----
# Simpler than cnnlab's loop: keras decays weights apart from the gradient for every optimizer,
# each epoch ends with its partial batch, keras shuffles, and augmentation is left out.


def train(model: keras.Model, data: dict, epochs: int) -> None:
    """Fit `model` to the training images with the run's optimizer, loss and schedule."""
    images, labels = data["train"]
    per_epoch = -(-len(labels) // BATCH_SIZE)  # batches per epoch, the partial one included
    schedule = Schedule($total_steps, per_epoch)
    optimizer = $optimizer
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])  # no decay on these
    loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=LABEL_SMOOTHING)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    one_hot = np.eye(len(CLASSES), dtype=np.float32)  # one-hot labels, for label smoothing
    val_images, val_labels = data["val"]
    val = (normalize(val_images), one_hot[val_labels]) if len(val_labels) else None
    model.fit(normalize(images), one_hot[labels], batch_size=BATCH_SIZE, epochs=epochs, validation_data=val, verbose=2)
'''

EVALUATE_BLOCK = '''

# ---- Prediction and evaluation ----


def logits_of(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """The logits (N, classes) of uint8 images (N, H, W, C)."""
    x = normalize(images)
    logits = model.predict(x, batch_size=256, verbose=0)
    if TTA:  # the mean of each image's logits and its mirror's
        mirrored = np.ascontiguousarray(x[:, :, ::-1])
        logits = (logits + model.predict(mirrored, batch_size=256, verbose=0)) / 2
    return logits


def accuracy(model: keras.Model, split: tuple[np.ndarray, np.ndarray]) -> float:
    """The share of images whose predicted class is their label."""
    if not len(split[1]):
        return 0.0
    return float(np.mean(logits_of(model, split[0]).argmax(1) == split[1]))
'''

MAIN_BLOCK = '''

# ---- Main ----


def main() -> None:
    """Predict with the run's weights (default), or train from scratch (--train)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", action="store_true", help="$train_help")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="$epochs_help")
    parser.add_argument("--save", type=Path, help="$save_help")
    args = parser.parse_args()
    data = load_data()
    keras.utils.set_random_seed(SEED)  # the initial weights depend on the seed only
    model = build_model()
    if args.train or WEIGHTS is None:
        train(model, data, args.epochs)
        if args.save:
            model.save_weights(args.save)
    else:
        load_weights(model, WEIGHTS)
        for i, label in enumerate(logits_of(model, data["test"][0]).argmax(1).tolist()):
            print(f"{i}\\t{CLASSES[label]}")
    score, count = accuracy(model, data["test"]), len(data["test"][1])
    print(f"test accuracy: {score:.2%} ({round(score * count)}/{count})")


if __name__ == "__main__":
    main()
'''

KOREAN: dict[str, str] = {
    "noqa: E402": "noqa: E402",  # ruff's, not a reader's
    "keras 3 on PyTorch; jax or tensorflow work too": "PyTorch 위의 keras 3; jax나 tensorflow도 됨",
    "---- The run's weights: safetensors read with numpy, torch's layouts turned into keras' ----": "---- 실행의 가중치: numpy로 safetensors를 읽고 torch의 배치를 keras의 배치로 ----",
    "Every tensor of a .safetensors file: 8 bytes of header length, a JSON header, raw data.": ".safetensors 파일의 모든 텐서: 헤더 길이 8바이트, JSON 헤더, 원시 데이터.",
    "keras' res1-body-conv1 is cnnlab's res1.body.conv1": "keras의 res1-body-conv1은 cnnlab의 res1.body.conv1",
    "a byte range after the header": "헤더 뒤의 바이트 범위",
    "The last axis from torch's flatten order (C, H, W) to keras' (H, W, C).": "마지막 축을 torch의 평탄화 순서 (C, H, W)에서 keras의 순서 (H, W, C)로.",
    "Set each layer's weights from the run's state_dict, under the layer's name.": "실행의 state_dict에서 계층 이름으로 각 계층의 가중치를 설정.",
    "torch: (C * M, 1, KH, KW)": "torch 배치: (C * M, 1, KH, KW)",
    "keras: (KH, KW, C, M)": "keras 배치: (KH, KW, C, M)",
    "(O, I, KH, KW) to (KH, KW, I, O)": "(O, I, KH, KW)에서 (KH, KW, I, O)로",
    "torch: (out, in)": "torch 배치: (출력, 입력)",
    "keras: (in, out)": "keras 배치: (입력, 출력)",
    "gamma, beta, mean, variance": "감마, 베타, 평균, 분산",
    "---- Data: the images cnnlab used, split as the run split them ----": "---- 데이터: cnnlab이 쓴 이미지, 실행과 같이 나눔 ----",
    "train, val and test: uint8 images (N, H, W, C) and int64 labels (N,).": "학습, 검증, 테스트: uint8 이미지 (N, H, W, C)와 int64 레이블 (N,).",
    "from (N, C, H, W)": "(N, C, H, W)에서 바꿈",
    "uint8 (N, H, W, C) -> float32 (x / 255 - mean) / std per channel, as cnnlab computes it.": "uint8 (N, H, W, C) -> 채널마다 float32 (x / 255 - 평균) / 표준편차 (cnnlab과 같은 계산).",
    "---- The learning rate: a function of the step alone ----": "---- 학습률: 스텝만의 함수 ----",
    "The learning rate at optimizer step `step` (0-based): one cycle.": "옵티마이저 스텝 `step` (0부터)의 학습률: 원 사이클.",
    "The learning rate at optimizer step `step` (0-based): cosine.": "옵티마이저 스텝 `step` (0부터)의 학습률: 코사인.",
    "The learning rate at optimizer step `step` (0-based): steps down.": "옵티마이저 스텝 `step` (0부터)의 학습률: 계단식 감소.",
    "The learning rate at optimizer step `step` (0-based): constant.": "옵티마이저 스텝 `step` (0부터)의 학습률: 일정.",
    "---- Training: model.compile and model.fit ----": "---- 학습: model.compile과 model.fit ----",
    "Simpler than cnnlab's loop: keras decays weights apart from the gradient for every optimizer,": "cnnlab의 학습 루프보다 단순화: keras는 모든 옵티마이저에서 가중치 감쇠를 기울기와 따로 하고,",
    "each epoch ends with its partial batch, keras shuffles, and augmentation is left out.": "에포크마다 마지막 부분 배치까지 쓰고, 섞기는 keras가 하며, 데이터 증강은 뺐습니다.",
    "Fit `model` to the training images with the run's optimizer, loss and schedule.": "실행의 옵티마이저, 손실 함수, 학습률 일정으로 `model`을 학습.",
    "batches per epoch, the partial one included": "에포크 하나의 배치 수 (마지막 부분 배치 포함)",
    "no decay on these": "이것들에는 가중치 감쇠 없음",
    "one-hot labels, for label smoothing": "원-핫 레이블 (레이블 스무딩용)",
    "---- Prediction and evaluation ----": "---- 예측과 평가 ----",
    "The logits (N, classes) of uint8 images (N, H, W, C).": "uint8 이미지 (N, H, W, C)의 로짓 (N, 클래스 수).",
    "the mean of each image's logits and its mirror's": "이미지와 좌우 반전 이미지의 로짓 평균",
    "The share of images whose predicted class is their label.": "예측 클래스가 레이블과 같은 이미지의 비율 (정확도).",
    "---- Main ----": "---- 실행 ----",
    "Predict with the run's weights (default), or train from scratch (--train).": "실행의 가중치로 예측 (기본), 또는 처음부터 학습 (--train).",
    "the initial weights depend on the seed only": "초기 가중치는 시드로만 정해짐",
    # the lines written below
    "---- Settings: edit these ----": "---- 설정: 필요하면 고쳐 쓰세요 ----",
    "the images cnnlab used (train, validation, test), exported next to this script": "cnnlab이 쓴 이미지 (학습, 검증, 테스트)를 이 스크립트 옆에 내보냈습니다",
    "(height, width, channels) of one image: keras is channels_last, cnnlab (C, H, W)": "이미지 하나의 (높이, 너비, 채널): keras는 채널이 마지막, cnnlab은 (C, H, W)",
    "per channel, of pixels scaled to 0..1": "채널마다, 0..1로 바꾼 픽셀 기준",
    "score each image as the mean of its and its mirror's logits": "이미지와 좌우 반전 이미지의 로짓 평균으로 예측 (TTA)",
    "the run's model.safetensors, read with numpy alone": "실행의 model.safetensors (numpy만으로 읽음)",
    "no weights: this script trains the model from scratch": "가중치 없음: 이 스크립트는 모델을 처음부터 학습합니다",
    "---- The recipe: the run's training settings ----": "---- 학습 설정: 실행에서 쓴 값 ----",
    "peak learning rate": "최대 학습률",
    "Nesterov momentum": "네스테로프 모멘텀",
    "on conv and fc weights only": "합성곱과 완전 연결 계층의 가중치에만",
    "optimizer steps of warm-up": "워밍업 옵티마이저 스텝 수",
    "the learning rate is multiplied by GAMMA every STEP_EVERY epochs": "STEP_EVERY 에포크마다 학습률에 GAMMA를 곱함",
    "left out here, cnnlab's run used it too:": "cnnlab 실행에서는 썼지만 여기서는 뺀 것:",
    "---- The model: the layers named as cnnlab names them ----": "---- 모델: cnnlab과 같은 이름의 계층들 ----",
    "Shapes are channels_last: (height, width, channels) per image, H x W x C.": "모양은 채널이 마지막: 이미지 하나 기준 (높이, 너비, 채널), H x W x C.",
    "The run's model; input (N, H, W, C) normalised, output logits (N, classes).": "실행의 모델; 입력은 정규화한 (N, H, W, C), 출력은 로짓 (N, 클래스 수).",
    "softmax is left out: the loss takes logits": "소프트맥스는 뺌: 손실 함수는 로짓을 받음",
    "the inputs of these layers are flattened maps (C, H, W): their weights are reordered": "이 계층들의 입력은 평탄화한 특징 맵 (C, H, W): 가중치 순서를 바꿔 읽음",
    "min pooling as -maxpool(-x)": "최소 풀링: -maxpool(-x)",
    "the block's shortcut": "블록의 지름길",
    "the input itself is added": "입력 자체를 더함",
    **{word: comment(word, "ko") for word in set(KIND_WORDS.values())},
}

_MAIN_HELP = {
    "en": (
        "train from scratch with the run's recipe",
        "epochs to train (default: the run's)",
        "save the trained weights to this .weights.h5 file",
    ),
    "ko": (
        "실행의 학습 설정으로 처음부터 학습",
        "학습할 에포크 수 (기본: 실행과 같음)",
        "학습한 가중치를 이 .weights.h5 파일로 저장",
    ),
}


def _c(text: str, language: str) -> str:
    return comment(text, language, KOREAN)


def output_paths(out: str | Path, has_weights: bool) -> CodeFiles:
    """The script, NAME_weights.safetensors (a run) and NAME_data.npz beside it."""
    script = Path(out)
    if script.suffix != ".py":
        raise OutputError(
            _("--out {script} does not end in .py: name it e.g. train.py").format(script=script)
        )
    weights = script.with_name(f"{script.stem}_weights.safetensors") if has_weights else None
    return CodeFiles(script, weights, script.with_name(f"{script.stem}_data.npz"))


def write_keras_code(
    inputs: CodeInput, out: str | Path, language: str = "en", force: bool = False
) -> CodeFiles:
    """Write the Keras script, the run's weights and the split images; returns what was written."""
    from cnnlab.run.files import MODEL_FILE

    files = output_paths(out, inputs.run is not None)
    check_writable(files, force)
    text = keras_script_text(inputs, files, language)  # refuses layers keras lacks, first
    assert files.data is not None
    beside = [(files.data, lambda: _split_bytes(inputs))]
    if files.weights is not None and inputs.run is not None:
        weights = inputs.run.path / MODEL_FILE
        beside.append((files.weights, weights.read_bytes))
    return write_files(files, beside, text)


def _split_bytes(inputs: CodeInput) -> bytes:
    """train, val and test as the run split them: uint8 (N, C, H, W) images, int64 labels."""
    import io

    import numpy as np

    from cnnlab.data.source import load_source, split_source

    dataset = load_source(inputs.source)
    arrays = {}
    for split in ("train", "val", "test"):
        if split == "val" and inputs.source.val_split <= 0:  # no validation: empty arrays
            images, labels = arrays["train_images"][:0], arrays["train_labels"][:0]
        else:
            images, labels, _paths = split_source(dataset, inputs.source, split)
            images, labels = images.numpy(), labels.numpy()
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels.astype(np.int64)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


# --- the script's text ---------------------------------------------------------------


def keras_script_text(inputs: CodeInput, files: CodeFiles, language: str = "en") -> str:
    """The whole Keras script."""
    report = analyze(inputs.spec)
    r = inputs.recipe
    doc, warm, after = SCHEDULES[str(r.get("schedule", "onecycle"))]
    total = "epochs * per_epoch"
    if int(r.get("total_steps", 0)):
        total = "min(TOTAL_STEPS, epochs * per_epoch)"
    train_help, epochs_help, save_help = _MAIN_HELP["ko" if language == "ko" else "en"]
    body = [
        _settings(inputs, files, language),
        _recipe(inputs, language),
        _model(report, language),
        translated(WEIGHTS_BLOCK, language, KOREAN),
        translated(DATA_BLOCK, language, KOREAN),
        filled(SCHEDULE_BLOCK.replace("$doc", doc), language, KOREAN, warm=warm, after=after),
        filled(
            TRAIN_BLOCK,
            language,
            KOREAN,
            total_steps=total,
            optimizer=OPTIMIZERS[str(r["optimizer"])],
        ),  # fmt: skip
        translated(EVALUATE_BLOCK, language, KOREAN),
        filled(
            MAIN_BLOCK,
            language,
            KOREAN,
            train_help=train_help,
            epochs_help=epochs_help,
            save_help=save_help,
        ),  # fmt: skip
    ]
    # the constants a blank line apart, then two before each section of functions (PEP 8's)
    constants = body[0].strip("\n") + "\n\n" + body[1].strip("\n")
    code = "\n\n\n".join([constants, *(part.strip("\n") for part in body[2:] if part)])
    imports = translated(IMPORTS, language, KOREAN)
    return _header(inputs, files, language) + imports + "\n" + code + "\n"


def _header(inputs: CodeInput, files: CodeFiles, language: str) -> str:
    name = files.script.name
    if language == "ko":
        lines = [
            f"{inputs.title}을(를) Keras 3로: 모델, 데이터, 학습 설정.",
            "",
            f"`cnnlab code --style keras` (cnnlab {__version__})가 {inputs.origin}에서 만들었습니다.",
            "keras, numpy, Pillow만 있으면 되고 cnnlab은 import하지 않습니다 (KERAS_BACKEND 기본: torch).",
            "",
        ]
        usage = [f"    python {name}            실행의 가중치로 테스트 이미지마다 예측 클래스 출력",
                 f"    python {name} --train    실행의 학습 설정으로 처음부터 학습한 뒤 테스트"]  # fmt: skip
        scratch = "처음부터 학습한 뒤 테스트"
    else:
        lines = [
            f"{inputs.title} as Keras 3: the model, the data, the training recipe.",
            "",
            f"Written by `cnnlab code --style keras` (cnnlab {__version__}) from {inputs.origin}.",
            "It needs only keras and numpy (KERAS_BACKEND: torch unless set); it does not import cnnlab.",
            "",
        ]
        usage = [f"    python {name}            print the predicted class of each test image (the run's weights)",
                 f"    python {name} --train    train from scratch with the run's recipe, then test"]  # fmt: skip
        scratch = "train from scratch, then test"
    if inputs.run is None:
        usage = [f"    python {name}    {scratch}"]
    text = "\n".join(lines + usage).replace('"""', "'''").replace("\\", "/")
    return f'"""{text}\n"""\n\n'


def _settings(inputs: CodeInput, files: CodeFiles, language: str) -> str:
    c = lambda text: _c(text, language)  # noqa: E731
    pixels = inputs.pixels
    channels, height, width = inputs.spec.input_shape
    assert files.data is not None
    lines = [
        "",
        f"# {c('---- Settings: edit these ----')}",
        f"# {c('the images cnnlab used (train, validation, test), exported next to this script')}",
        f'DATA_FILE = Path(__file__).resolve().parent / "{files.data.name}"',
        f"CLASSES = [{', '.join(_text(name) for name in inputs.classes)}]",
        f"INPUT_SHAPE = {(height, width, channels)!r}  # {c('(height, width, channels) of one image: keras is channels_last, cnnlab (C, H, W)')}",
        f"MEAN = {tuple(pixels.mean)!r}  # {c('per channel, of pixels scaled to 0..1')}",
        f"STD = {tuple(pixels.std)!r}",
        f"TTA = {bool(pixels.tta)!r}  # {c('score each image as the mean of its and its mirror' + chr(39) + 's logits')}",
    ]  # fmt: skip
    if files.weights is not None:
        lines += [
            f"# {c('the run' + chr(39) + 's model.safetensors, read with numpy alone')}",
            f'WEIGHTS: Path | None = Path(__file__).resolve().parent / "{files.weights.name}"',
        ]
    else:
        lines += [
            f"WEIGHTS: Path | None = None  # {c('no weights: this script trains the model from scratch')}"
        ]
    return "\n".join(lines)


def _recipe(inputs: CodeInput, language: str) -> str:
    c = lambda text: _c(text, language)  # noqa: E731
    lines = recipe_constants(inputs.recipe, c)
    policy = inputs.policy
    used = any(getattr(policy, f.name) for f in fields(policy))
    left = [f"augment {inputs.recipe.get('augment')}"] if used else []
    left += _left_out(inputs)
    if left:
        lines += [
            f"# {c('left out here, cnnlab' + chr(39) + 's run used it too:')} {', '.join(left)}"
        ]
    return "\n".join(lines)


# --- the model ---------------------------------------------------------------------------


def _unsupported(name: str, layer: LayerReport, what: str) -> SpecError:
    return SpecError(
        _(
            "layer {name} ({layer}): keras has no {what}; write this model with --style torch"
        ).format(name=name, layer=layer.layer.text(), what=what)
    )


def _hwc(shape: tuple[int, ...]) -> str:
    """(32, 28, 28) -> '(28, 28, 32)'; (10,) -> '(10,)'."""
    if len(shape) == 3:
        shape = (shape[1], shape[2], shape[0])
    return f"({', '.join(map(str, shape))}{',' if len(shape) == 1 else ''})"


def keras_layers(name: str, layer: LayerReport) -> list[str]:
    """The keras expressions for one cnnlab layer (padding and min pooling take two or three)."""
    p, kind = layer.layer.params, layer.layer.kind
    plain = {
        "relu": "layers.ReLU", "relu6": "layers.ReLU", "flatten": "layers.Flatten",
        "gap": "layers.GlobalAveragePooling2D", "gmp": "layers.GlobalMaxPooling2D",
        "softmax": "layers.Softmax",
    }  # fmt: skip
    if kind in plain:
        args = "max_value=6.0, " if kind == "relu6" else ""
        return [f'{plain[kind]}({args}name="{name}")']
    if kind in ("sigmoid", "tanh", "gelu"):  # keras' gelu is the exact one, as torch's
        return [f'layers.Activation("{kind}", name="{name}")']
    if kind == "leakyrelu":
        return [f'layers.LeakyReLU(negative_slope={p["slope"]!r}, name="{name}")']
    if kind == "dropout":
        return [f'layers.Dropout({p["p"]!r}, name="{name}")']
    if kind == "batchnorm":
        momentum = round(1.0 - float(p["momentum"]), 10)  # keras keeps 1 - torch's momentum
        return [
            f'layers.BatchNormalization(epsilon={p["eps"]!r}, momentum={momentum!r}, name="{name}")'
        ]
    if kind == "fc":
        bias = "" if p["bias"] else ", use_bias=False"
        return [f'layers.Dense({p["out"]}{bias}, name="{name}")']
    if kind == "conv":
        return _conv(name, layer)
    if kind in ("maxpool", "minpool", "avgpool"):
        if p.get("dilation", (1, 1)) != (1, 1) or p["ceil_mode"]:
            raise _unsupported(name, layer, "pooling with dilation or ceil_mode")
        padded = p["padding"] != (0, 0)
        if padded and (kind != "avgpool" or p.get("count_include_pad", True) is False):
            raise _unsupported(name, layer, "max or min pooling over padding")
        cls = "layers.AveragePooling2D" if kind == "avgpool" else "layers.MaxPooling2D"
        pool = f'{cls}({_pair(p["kernel"])}, strides={_pair(p["stride"])}, name="{name}")'
        out = [_zero_pad(name, p["padding"])] if padded else []
        if kind == "minpool":
            return [f'layers.Rescaling(-1.0, name="{name}-negate")', pool,
                    f'layers.Rescaling(-1.0, name="{name}-back")']  # fmt: skip
        return [*out, pool]
    raise _unsupported(name, layer, f"{kind} layer")  # res is written by _model; kinds added later


def _zero_pad(name: str, padding: tuple[int, int]) -> str:
    ph, pw = padding
    return f'layers.ZeroPadding2D((({ph}, {ph}), ({pw}, {pw})), name="{name}-pad")'


def _conv(name: str, layer: LayerReport) -> list[str]:
    p, in_shape = layer.layer.params, layer.in_shape
    if p["padding_mode"] != "zeros":
        raise _unsupported(name, layer, f"padding_mode={p['padding_mode']} (only zeros)")
    padding = p["padding"]
    before = []
    if padding == "same":
        mode = "same"
    elif padding in ("valid", (0, 0)):
        mode = "valid"
    elif isinstance(padding, tuple) and len(padding) == 2:
        mode, before = "valid", [_zero_pad(name, padding)]
    else:
        raise _unsupported(name, layer, f"padding={padding}")
    if p["stride"] != (1, 1) and p["dilation"] != (1, 1):
        raise _unsupported(name, layer, "convolution with both a stride and a dilation")
    args = [f"kernel_size={_pair(p['kernel'])}"]
    args += [f"strides={_pair(p['stride'])}"] if p["stride"] != (1, 1) else []
    args += [f'padding="{mode}"'] if mode != "valid" else []
    args += [f"dilation_rate={_pair(p['dilation'])}"] if p["dilation"] != (1, 1) else []
    args += [] if p["bias"] else ["use_bias=False"]
    groups, channels, out = p["groups"], in_shape[0], p["out"]
    if groups > 1 and groups == channels:
        multiplier = out // channels
        args += [f"depth_multiplier={multiplier}"] if multiplier != 1 else []
        return [*before, f'layers.DepthwiseConv2D({", ".join(args)}, name="{name}")']
    args += [f"groups={groups}"] if groups != 1 else []
    return [*before, f'layers.Conv2D({out}, {", ".join(args)}, name="{name}")']


def _keras_name(name: str) -> str:
    """res1.body.conv1 -> res1-body-conv1: keras (on torch) refuses dots in layer names."""
    return name.replace(".", "-")


def _flat_inputs(report) -> dict[str, tuple[int, int, int]]:
    """fc and batchnorm layers whose input is a flattened (C, H, W) map (through shape-keeping
    layers): their weights are stored in torch's C, H, W order."""
    found, flat = {}, None
    for name, layer in zip(layer_names(report.spec), report.layers, strict=True):
        kind = layer.layer.kind
        if kind == "flatten":
            shape = layer.in_shape
            flat = (
                tuple(shape)
                if len(shape) == 3 and shape[0] > 1 and shape[1] * shape[2] > 1
                else None
            )
        elif kind in ("fc", "batchnorm") and flat:
            found[name] = flat
            flat = None if kind == "fc" else flat
        elif kind not in ("dropout", "relu", "relu6", "leakyrelu", "sigmoid", "tanh", "gelu"):
            flat = None
    return found


def _model(report, language: str) -> str:
    """build_model(): Sequential for a plain stack, the functional API with res blocks."""
    c = lambda text: _c(text, language)  # noqa: E731
    names = layer_names(report.spec)
    functional = any(layer.layer.kind == "res" for layer in report.layers)
    rows: list[str] = []  # Sequential items, or functional statements

    def note(layer: LayerReport) -> str:
        kind = c(KIND_WORDS[layer.layer.kind])
        return f"{kind} {layer.layer.text()} -> {_hwc(layer.out_shape)}"

    add = _row_adder(rows, functional)
    for name, layer in zip(names, report.layers, strict=True):
        if layer.layer.kind == "softmax" and layer is report.layers[-1]:
            rows.append(f"{'    ' if functional else '            '}# {name}: {c('softmax is left out: the loss takes logits')}")  # fmt: skip
            continue
        if layer.layer.kind != "res":
            add(keras_layers(name, layer), note(layer))
            continue
        rows.append(f"    # {name}: {note(layer)}")
        _res_rows(layer, rows, add, note, c)
        rows.append(f'    x = layers.Add(name="{name}")([y, s])')
    shape = _hwc(tuple(report.spec.input_shape))
    if functional:
        lines = [*_model_head(report, c), f'    inputs = keras.Input(shape=INPUT_SHAPE, name="input")  # {shape}', "    x = inputs", *rows,
                 '    return keras.Model(inputs, x, name="net")']  # fmt: skip
    else:
        lines = [*_model_head(report, c), "    return keras.Sequential(", "        [",
                 f'            keras.Input(shape=INPUT_SHAPE, name="input"),  # {shape}', *rows,
                 "        ],", '        name="net",', "    )"]  # fmt: skip
    return "\n".join(lines)


def _row_adder(rows: list[str], functional: bool):
    """add(exprs, text, var, source): one row per keras layer expression, the comment on the
    last; functional: `var = expr(source)` statements, else Sequential list items."""

    def add(exprs: list[str], text: str, var: str = "x", source: str = "x", indent: str = "    "):
        for i, expr in enumerate(exprs):
            tail = f"  # {text}" if i == len(exprs) - 1 else ""
            if functional:
                rows.append(f"{indent}{var} = {expr}({source if i == 0 else var}){tail}")
            else:
                rows.append(f"            {expr},{tail}")

    return add


def _res_rows(layer: LayerReport, rows: list[str], add, note, c) -> None:
    """A res block's branches as functional statements: its body into y, its shortcut (or the
    input itself) into s; the caller adds them."""
    body = [i for i in layer.inner if i.name.split(".")[1] == "body"]
    shortcut = [i for i in layer.inner if i.name.split(".")[1] == "shortcut"]
    for k, inner in enumerate(body):
        add(keras_layers(_keras_name(inner.name), inner), note(inner), "y", "x" if k == 0 else "y")
    if not body:
        rows.append("    y = x")
    for k, inner in enumerate(shortcut):
        add(keras_layers(_keras_name(inner.name), inner), note(inner), "s", "x" if k == 0 else "s")
    if not shortcut:
        rows.append(f"    s = x  # {c('the input itself is added')}")


def _model_head(report, c) -> list[str]:
    """The model section's heading, FLAT_INPUTS and build_model's first lines."""
    flat = _flat_inputs(report)
    doc = c("The run's model; input (N, H, W, C) normalised, output logits (N, classes).")
    return [
        "",
        "",
        f"# {c('---- The model: the layers named as cnnlab names them ----')}",
        f"# {c('Shapes are channels_last: (height, width, channels) per image, H x W x C.')}",
        f"# {c('the inputs of these layers are flattened maps (C, H, W): their weights are reordered')}",
        f"FLAT_INPUTS: dict[str, tuple[int, int, int]] = {{{', '.join(f'{_text(k)}: {v!r}' for k, v in flat.items())}}}",
        "",
        "",
        "def build_model() -> keras.Model:",
        f'    """{doc}"""',
    ]  # fmt: skip
