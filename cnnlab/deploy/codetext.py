"""The pieces of the script `cnnlab code` writes: plain-PyTorch code blocks, their comments in
English and Korean.

The blocks are the script's text with `$name` holes (string.Template) that `deploy/code.py`
fills with the run's values. Comments are written in English here; `translated` swaps each one
for its entry in `KOREAN` when the script is asked for in Korean (the seeds' words: 합성곱,
풀링, 활성화 함수, 특징 맵), so a comment without its translation fails loudly, in tests, not
in a learner's file. Pure text: no torch.
"""

from __future__ import annotations

import re
from string import Template

# A comment (after code or alone on its line), or a one-line docstring.
_COMMENT = re.compile(r"^(?P<code>.*?)(?P<mark>(?:^|  )# )(?P<text>.+)$")
_DOCSTRING = re.compile(r'^(?P<indent>\s*)"""(?P<text>[^"]+)"""$')
_WORD = re.compile(
    r"[A-Za-z]{3,}"
)  # a comment without one, e.g. "(N, H)", is the same in any language

SPECIAL_LAYERS = {
    "minpool": '''
class MinPool2d(nn.MaxPool2d):
    """Min pooling: the smallest value of each window, as -maxpool(-x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -super().forward(-x)
''',
    "sameconv": '''
class SameConv2d(nn.Conv2d):
    """A convolution with Keras-style 'same' padding for a stride above 1 (torch refuses it)."""

    def __init__(self, *args, same_pads: tuple[int, int, int, int], **kwargs):
        super().__init__(*args, padding=0, **kwargs)
        self.same_pads = same_pads  # (left, right, top, bottom): the odd pixel goes right/bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        x = F.pad(x, self.same_pads, mode=mode)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
''',
    "gap": '''
class GlobalAvgPool2d(nn.Module):
    """The mean of each channel: (N, C, H, W) -> (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))
''',
    "res": '''
class Residual(nn.Module):
    """A residual block: its layers' output plus its input (or plus its shortcut's output)."""

    def __init__(self, body: nn.Sequential, shortcut: nn.Sequential) -> None:
        super().__init__()
        self.body = body  # the block's own layers
        self.shortcut = shortcut  # empty: the input itself is added

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)  # the two have one shape (cnnlab checked it)
''',
    "gmp": '''
class GlobalMaxPool2d(nn.Module):
    """The largest value of each channel: (N, C, H, W) -> (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(2, 3))
''',
}

SPLITS = '''

# ---- Splits: the same images as cnnlab's, picked with the same seeded rules ----


def stratified_pick(labels: torch.Tensor, counts: torch.Tensor, seed: int) -> torch.Tensor:
    """Sorted indices taking counts[k] random examples of each class k."""
    n = labels.numel()
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    order = perm[torch.argsort(labels[perm], stable=True)]  # grouped by class, random within
    per_class = torch.bincount(labels, minlength=counts.numel())
    starts = torch.cumsum(per_class, 0) - per_class
    sorted_labels = labels[order]
    rank = torch.arange(n) - starts[sorted_labels]  # position within its class
    return torch.sort(order[rank < counts[sorted_labels]]).values


def held_out(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept indices, held-out indices): `fraction` of each class held out."""
    per_class = torch.bincount(labels)
    want = torch.round(per_class.double() * fraction).long()
    # At least one held out of a class with two, and at least one kept.
    want = torch.where(per_class >= 2, want.clamp(1), want).clamp(max=(per_class - 1).clamp(min=0))
    out = stratified_pick(labels, want, seed)
    keep = torch.ones(labels.numel(), dtype=torch.bool)
    keep[out] = False
    return torch.nonzero(keep).squeeze(1), out


def balanced_subset(labels: torch.Tensor, size: int, seed: int = 0) -> torch.Tensor:
    """Sorted indices of `size` examples, each class in proportion to its count."""
    n = labels.numel()
    if size >= n:
        return torch.arange(n)
    per_class = torch.bincount(labels)
    exact = per_class.double() * size / n
    want = exact.floor().long()
    rest = size - int(want.sum())
    if rest:  # the rounding remainder goes to the largest fractions first
        want[torch.argsort(exact - want, descending=True)[:rest]] += 1
    return stratified_pick(labels, want, seed)
'''

IDX = '''

# ---- Data: IDX files (the MNIST family) ----


def read_idx(path: Path) -> np.ndarray:
    """An IDX file, gzip-compressed or not: images (N, H, W) or labels (N,), uint8."""
    raw = path.read_bytes()
    if raw[:2] == b"\\x1f\\x8b":  # gzip's magic number
        raw = gzip.decompress(raw)
    dims = raw[3]  # the 4th byte of the header: how many dimensions
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_split(images_file: str, labels_file: str, size: int) -> Split:
    """uint8 images (N, 1, 28, 28) and int64 labels (N,); a class-balanced subset if size > 0."""
    images = torch.from_numpy(read_idx(DATA_DIR / images_file).copy()).unsqueeze(1)
    labels = torch.from_numpy(read_idx(DATA_DIR / labels_file).astype(np.int64))
    if size:
        pick = balanced_subset(labels, size)
        images, labels = images[pick], labels[pick]
    return images, labels


def load_data() -> tuple[Split, Split]:
    """(train, test) as cnnlab loads them."""
    train = load_split(TRAIN_FILES[0], TRAIN_FILES[1], TRAIN_SIZE)
    test = load_split(TEST_FILES[0], TEST_FILES[1], TEST_SIZE)
    return train, test
'''

NPZ = '''

# ---- Data: the images cnnlab loaded, exported next to this script ----


def load_data() -> tuple[Split, Split]:
    """(train, test): uint8 images (N, C, H, W) and int64 labels (N,)."""
    with np.load(DATA_FILE) as data:
        train = torch.from_numpy(data["train_images"]), torch.from_numpy(data["train_labels"])
        test = torch.from_numpy(data["test_images"]), torch.from_numpy(data["test_labels"])
    return train, test
'''

FOLDER = '''

# ---- Data: an image folder, one sub-folder per class ----


def class_files(root: Path) -> list[tuple[Path, int]]:
    """(file, label) of every image under root/<class>/, sorted; hidden files left out."""
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(CLASSES):
        folder = root / name
        found = sorted(folder.rglob("*")) if folder.is_dir() else []
        for f in found:
            hidden = any(part.startswith(".") for part in f.relative_to(folder).parts)
            if f.is_file() and not hidden:
                files.append((f, label))
    return files


def fit_image(image: Image.Image, width: int, height: int) -> Image.Image:
    """The image at width x height: stretched, padded (letterbox) or centre-cropped."""
    iw, ih = image.size
    if KEEP_ASPECT == "crop" and iw * height != ih * width:
        if iw * height > ih * width:  # wider than the target: keep the middle columns
            cw = max(1, round(ih * width / height))
            image = image.crop(((iw - cw) // 2, 0, (iw - cw) // 2 + cw, ih))
        else:
            ch = max(1, round(iw * height / width))
            image = image.crop((0, (ih - ch) // 2, iw, (ih - ch) // 2 + ch))
    if KEEP_ASPECT == "pad" and iw * height != ih * width:
        scale = min(width / iw, height / ih)
        nw = max(1, min(width, round(iw * scale)))
        nh = max(1, min(height, round(ih * scale)))
        inner = image if (nw, nh) == (iw, ih) else image.resize((nw, nh), Image.Resampling.LANCZOS)
        canvas = Image.new(image.mode, (width, height))  # black bars
        canvas.paste(inner, ((width - nw) // 2, (height - nh) // 2))
        return canvas
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)  # keeps thin strokes
    return image


def load_image(path: Path) -> torch.Tensor:
    """One image file as uint8 (C, H, W) at the model's input size."""
    image = ImageOps.exif_transpose(Image.open(path))  # turned as the camera says
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if has_alpha:  # transparent pixels become white
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    image = image.convert("L" if INPUT_SHAPE[0] == 1 else "RGB")
    image = fit_image(image, INPUT_SHAPE[2], INPUT_SHAPE[1])
    array = np.asarray(image, dtype=np.uint8).reshape(INPUT_SHAPE[1], INPUT_SHAPE[2], -1)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def load_files(files: list[tuple[Path, int]]) -> tuple[Split, list[Path]]:
    """The images and labels of `files`, and the files themselves."""
    images = torch.stack([load_image(path) for path, _ in files])
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return (images, labels), [path for path, _ in files]


def load_data() -> tuple[Split, Split]:
    """(train, test): a test/ (or val/) folder, else a seeded share of each class held out."""
    root = FOLDER / "train" if (FOLDER / "train").is_dir() else FOLDER
    test_root = next((FOLDER / n for n in ("test", "val") if (FOLDER / n).is_dir()), None)
    (train, train_files) = load_files(class_files(root))
    if root != FOLDER and test_root is not None:
        test, test_files = load_files(class_files(test_root))
    else:
        kept, out = held_out(train[1], TEST_FRACTION, 0)
        test, test_files = (train[0][out], train[1][out]), [train_files[i] for i in out]
        train = train[0][kept], train[1][kept]
    if TRAIN_SIZE:
        pick = balanced_subset(train[1], TRAIN_SIZE)
        train = train[0][pick], train[1][pick]
    TEST_FILES.extend(test_files)
    return train, test
'''

NORMALIZE = '''

# ---- Pixels to model input ----


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float (x / 255 - mean) / std per channel, as cnnlab computes it."""
    mean = torch.tensor(MEAN).view(1, -1, 1, 1)
    std = torch.tensor(STD).view(1, -1, 1, 1)
    # one multiply-add per pixel: x * 1 / (255 std) - mean / std
    return torch.addcmul(-mean / std, images.float(), 1.0 / (255.0 * std))


def validation_split(train: Split) -> tuple[Split, Split | None]:
    """(train, validation): VAL_SPLIT of each class held out with SPLIT_SEED, as the run did."""
    if VAL_SPLIT <= 0:
        return train, None
    kept, out = held_out(train[1], VAL_SPLIT, SPLIT_SEED)
    return (train[0][kept], train[1][kept]), (train[0][out], train[1][out])
'''

AUGMENT = '''

# ---- Augmentation: random changes to each training batch, drawn from one generator ----


def shift(x: torch.Tensor, t: int, g: torch.Generator) -> torch.Tensor:
    """Each image moved by its own (dy, dx) in [-t, t]; the pixels moved in are zeros."""
    n, _, h, w = x.shape
    padded = F.pad(x, (t, t, t, t))
    dy = torch.randint(0, 2 * t + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * t + 1, (n,), generator=g)
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def mirror(x: torch.Tensor, dim: int, g: torch.Generator) -> torch.Tensor:
    """Each image mirrored along `dim` (3: left-right, 2: up-down) with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=g) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(dim), x)


def cutout(x: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """One size x size square of each image set to zero, centred anywhere."""
    n, _, h, w = x.shape
    top = torch.randint(0, h, (n, 1), generator=g) - size // 2
    left = torch.randint(0, w, (n, 1), generator=g) - size // 2
    ys, xs = torch.arange(h), torch.arange(w)
    rows = (ys >= top) & (ys < top + size)  # (N, H)
    cols = (xs >= left) & (xs < left + size)  # (N, W)
    return x.masked_fill((rows[:, :, None] & cols[:, None, :]).unsqueeze(1), 0)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The run's augmentation of a uint8 batch (N, C, H, W)."""
    if SHIFT:
        x = shift(x, SHIFT, g)
    if FLIP:
        x = mirror(x, 3, g)
    if VFLIP:
        x = mirror(x, 2, g)
    if CUTOUT:
        x = cutout(x, CUTOUT, g)
    return x
'''

SCHEDULES = {
    "onecycle": '''

# ---- The learning rate: a function of the step alone ----


def lr_factor(step: int, total_steps: int, per_epoch: int) -> float:
    """The peak learning rate's multiplier at optimizer step `step` (0-based): one cycle."""
    if step < WARMUP_STEPS:  # warm-up: linearly from 0.1 to 1
        return 0.1 + 0.9 * (step + 1) / WARMUP_STEPS
    progress = (step - WARMUP_STEPS) / max(1, total_steps - WARMUP_STEPS)
    return max(0.0, 1.0 - progress)  # then linearly down to 0 at the last step
''',
    "cosine": '''

# ---- The learning rate: a function of the step alone ----


def lr_factor(step: int, total_steps: int, per_epoch: int) -> float:
    """The peak learning rate's multiplier at optimizer step `step` (0-based): cosine."""
    if step < WARMUP_STEPS:  # warm-up: linearly from 0 to 1
        return (step + 1) / WARMUP_STEPS
    progress = (step - WARMUP_STEPS) / max(1, total_steps - WARMUP_STEPS)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))  # half a cosine from 1 to 0
''',
    "step": '''

# ---- The learning rate: a function of the step alone ----


def lr_factor(step: int, total_steps: int, per_epoch: int) -> float:
    """The peak learning rate's multiplier at optimizer step `step` (0-based): steps down."""
    if step < WARMUP_STEPS:  # warm-up: linearly from 0 to 1
        return (step + 1) / WARMUP_STEPS
    return GAMMA ** (step // (STEP_EVERY * per_epoch))  # times GAMMA every STEP_EVERY epochs
''',
    "constant": '''

# ---- The learning rate: a function of the step alone ----


def lr_factor(step: int, total_steps: int, per_epoch: int) -> float:
    """The peak learning rate's multiplier at optimizer step `step` (0-based): constant."""
    if step < WARMUP_STEPS:  # warm-up: linearly from 0 to 1
        return (step + 1) / WARMUP_STEPS
    return 1.0
''',
}

OPTIMIZERS = {
    "sgd": "torch.optim.SGD(groups, lr=LR, momentum=MOMENTUM, nesterov=MOMENTUM > 0)",
    "adam": "torch.optim.Adam(groups, lr=LR)",
    "adamw": "torch.optim.AdamW(groups, lr=LR)",
}

TRAIN = '''

# ---- Training ----


def steps_per_epoch(images: int) -> int:
    """Optimizer steps in an epoch: the last partial batch counts if it holds over 2% of the data."""
    full, rest = divmod(images, BATCH_SIZE)
    return full + 1 if rest > 0.02 * images and rest >= 2 else full


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer; weight decay on conv and fc weights only, not on biases or BatchNorm."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    free = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": WEIGHT_DECAY},
        {"params": free, "weight_decay": 0.0},
    ]
    return $optimizer


def train(model: nn.Module, train_set: Split, val_set: Split | None, epochs: int) -> None:
    """Train `model` in place with the run's recipe."""
    images, labels = train_set
    per_epoch = steps_per_epoch(len(images))
    total_steps = $total_steps
    optimizer = make_optimizer(model)
    g = torch.Generator().manual_seed(SEED)  # draws the augmentation
    step = 0
    for epoch in range(epochs):
        model.train()
        # a new order each epoch, a function of the seed and the epoch
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(SEED * 1_000_003 + epoch))
        loss_sum, correct, seen = 0.0, 0, 0
        for i in range(min(per_epoch, total_steps - step)):
            batch = order[i * BATCH_SIZE : (i + 1) * BATCH_SIZE]
            x = normalize(augment(images[batch], g))  # (B, C, H, W)
            y = labels[batch]
            for group in optimizer.param_groups:
                group["lr"] = LR * lr_factor(step, total_steps, per_epoch)
            logits = model(x)  # (B, classes)
            loss = F.cross_entropy(logits, y, label_smoothing=LABEL_SMOOTHING)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
        line = f"epoch {epoch + 1}/{epochs}  loss {loss_sum / max(seen, 1):.4f}  acc {correct / max(seen, 1):.2%}"
        if val_set is not None:
            line += f"  val acc {accuracy(model, val_set):.2%}"
        print(line)
'''

EVALUATE = '''

# ---- Prediction and evaluation ----


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The predicted class (N,) of uint8 images (N, C, H, W)."""
    model.eval()
    predictions = []
    for start in range(0, len(images), 256):
        x = normalize(images[start : start + 256])
        logits = model(x)
        if TTA:  # the mean of each image's logits and its mirror's
            logits = (logits + model(x.flip(3))) / 2
        predictions.append(logits.argmax(1))
    return torch.cat(predictions) if predictions else torch.zeros(0, dtype=torch.int64)


def accuracy(model: nn.Module, split: Split) -> float:
    """The share of images whose predicted class is their label."""
    return (predict(model, split[0]) == split[1]).float().mean().item()
'''

MAIN = '''

# ---- Main ----


def main() -> None:
    """Predict with the run's weights (default), or train from scratch (--train)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", action="store_true", help="$train_help")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="$epochs_help")
    parser.add_argument("--save", type=Path, help="$save_help")
    args = parser.parse_args()
    train_set, test_set = load_data()
    train_set, val_set = validation_split(train_set)
    torch.manual_seed(SEED)  # the initial weights depend on the seed only
    model = Net()
    if args.train or WEIGHTS is None:
        train(model, train_set, val_set, args.epochs)
        if args.save:
            torch.save(model.state_dict(), args.save)
    else:
        # weights_only: plain tensors, no pickled code is run
        model.load_state_dict(torch.load(WEIGHTS, weights_only=True))
        for i, label in enumerate(predict(model, test_set[0]).tolist()):
            print(f"{i}\\t{CLASSES[label]}$file_column")
    score = accuracy(model, test_set)
    print(f"test accuracy: {score:.2%} ({round(score * len(test_set[1]))}/{len(test_set[1])})")


if __name__ == "__main__":
    main()
'''

# Each English comment and docstring of the blocks above (and of the lines `deploy/code.py`
# writes) in Korean, in the seeds' words.
KOREAN: dict[str, str] = {
    "Min pooling: the smallest value of each window, as -maxpool(-x).": "최소 풀링: 각 창에서 가장 작은 값 (-maxpool(-x)로 계산).",
    "A convolution with Keras-style 'same' padding for a stride above 1 (torch refuses it).": "스트라이드가 1보다 클 때 Keras 방식의 'same' 패딩을 쓰는 합성곱 (torch는 지원하지 않음).",
    "(left, right, top, bottom): the odd pixel goes right/bottom": "(왼쪽, 오른쪽, 위, 아래): 홀수로 남는 한 픽셀은 오른쪽/아래에",
    "The mean of each channel: (N, C, H, W) -> (N, C).": "채널마다 평균: (N, C, H, W) -> (N, C).",
    "The largest value of each channel: (N, C, H, W) -> (N, C).": "채널마다 가장 큰 값: (N, C, H, W) -> (N, C).",
    "---- Splits: the same images as cnnlab's, picked with the same seeded rules ----": "---- 데이터 분할: cnnlab과 같은 시드, 같은 규칙으로 같은 이미지를 고름 ----",
    "Sorted indices taking counts[k] random examples of each class k.": "클래스 k마다 무작위로 counts[k]개를 고른 정렬된 인덱스.",
    "grouped by class, random within": "클래스별로 모으고, 클래스 안에서는 무작위",
    "position within its class": "클래스 안에서의 순서",
    "(kept indices, held-out indices): `fraction` of each class held out.": "(남길 인덱스, 떼어 낸 인덱스): 클래스마다 `fraction` 비율을 떼어 냄.",
    "At least one held out of a class with two, and at least one kept.": "두 개 이상인 클래스는 적어도 하나를 떼어 내고, 적어도 하나는 남김.",
    "Sorted indices of `size` examples, each class in proportion to its count.": "클래스마다 개수에 비례하게 뽑은 `size`개의 정렬된 인덱스.",
    "the rounding remainder goes to the largest fractions first": "반올림하고 남은 몫은 소수 부분이 큰 클래스부터",
    "---- Data: IDX files (the MNIST family) ----": "---- 데이터: IDX 파일 (MNIST 계열) ----",
    "An IDX file, gzip-compressed or not: images (N, H, W) or labels (N,), uint8.": "IDX 파일 (gzip 압축 여부 무관): 이미지 (N, H, W) 또는 레이블 (N,), uint8.",
    "gzip's magic number": "gzip 파일의 시작 바이트",
    "the 4th byte of the header: how many dimensions": "헤더의 네 번째 바이트: 차원의 수",
    "uint8 images (N, 1, 28, 28) and int64 labels (N,); a class-balanced subset if size > 0.": "uint8 이미지 (N, 1, 28, 28)와 int64 레이블 (N,); size > 0이면 클래스 균형을 맞춘 일부.",
    "(train, test) as cnnlab loads them.": "cnnlab이 읽는 그대로의 (학습, 테스트) 데이터.",
    "---- Data: the images cnnlab loaded, exported next to this script ----": "---- 데이터: cnnlab이 읽은 이미지를 이 스크립트 옆에 내보낸 파일 ----",
    "(train, test): uint8 images (N, C, H, W) and int64 labels (N,).": "(학습, 테스트): uint8 이미지 (N, C, H, W)와 int64 레이블 (N,).",
    "---- Data: an image folder, one sub-folder per class ----": "---- 데이터: 이미지 폴더 (클래스마다 하위 폴더 하나) ----",
    "(file, label) of every image under root/<class>/, sorted; hidden files left out.": "root/<클래스>/ 아래 모든 이미지의 (파일, 레이블), 정렬됨; 숨김 파일은 제외.",
    "The image at width x height: stretched, padded (letterbox) or centre-cropped.": "width x height 크기의 이미지: 늘이기, 여백 채우기(레터박스) 또는 가운데 자르기.",
    "wider than the target: keep the middle columns": "목표보다 넓으면 가운데 열만 남김",
    "black bars": "검은 여백",
    "keeps thin strokes": "가는 획을 살림",
    "One image file as uint8 (C, H, W) at the model's input size.": "이미지 파일 하나를 모델 입력 크기의 uint8 (C, H, W)로.",
    "turned as the camera says": "카메라의 EXIF 방향대로 회전",
    "transparent pixels become white": "투명한 픽셀은 흰색으로",
    "The images and labels of `files`, and the files themselves.": "`files`의 이미지와 레이블, 그리고 파일 목록.",
    "(train, test): a test/ (or val/) folder, else a seeded share of each class held out.": "(학습, 테스트): test/ (또는 val/) 폴더, 없으면 클래스마다 시드로 고른 일부를 떼어 냄.",
    "---- Pixels to model input ----": "---- 픽셀을 모델 입력으로 ----",
    "uint8 (N, C, H, W) -> float (x / 255 - mean) / std per channel, as cnnlab computes it.": "uint8 (N, C, H, W) -> 채널마다 (x / 255 - 평균) / 표준편차 (cnnlab과 같은 계산).",
    "one multiply-add per pixel: x * 1 / (255 std) - mean / std": "픽셀마다 곱셈-덧셈 한 번: x * 1 / (255 std) - mean / std",
    "(train, validation): VAL_SPLIT of each class held out with SPLIT_SEED, as the run did.": "(학습, 검증): 실행과 같이 SPLIT_SEED로 클래스마다 VAL_SPLIT 비율을 검증용으로 떼어 냄.",
    "---- Augmentation: random changes to each training batch, drawn from one generator ----": "---- 데이터 증강: 학습 배치마다 무작위 변형 (난수 생성기 하나에서 뽑음) ----",
    "Each image moved by its own (dy, dx) in [-t, t]; the pixels moved in are zeros.": "이미지마다 [-t, t] 범위의 (dy, dx)만큼 이동; 새로 들어온 픽셀은 0.",
    "Each image mirrored along `dim` (3: left-right, 2: up-down) with probability 1/2.": "이미지마다 1/2 확률로 `dim` 방향 뒤집기 (3: 좌우, 2: 상하).",
    "One size x size square of each image set to zero, centred anywhere.": "이미지마다 size x size 정사각형 하나를 0으로 (중심은 아무 곳).",
    "The run's augmentation of a uint8 batch (N, C, H, W).": "uint8 배치 (N, C, H, W)에 실행의 데이터 증강 적용.",
    "---- The learning rate: a function of the step alone ----": "---- 학습률: 스텝만의 함수 ----",
    "The peak learning rate's multiplier at optimizer step `step` (0-based): one cycle.": "옵티마이저 스텝 `step` (0부터)에서 최대 학습률에 곱할 값: 원 사이클.",
    "The peak learning rate's multiplier at optimizer step `step` (0-based): cosine.": "옵티마이저 스텝 `step` (0부터)에서 최대 학습률에 곱할 값: 코사인.",
    "The peak learning rate's multiplier at optimizer step `step` (0-based): steps down.": "옵티마이저 스텝 `step` (0부터)에서 최대 학습률에 곱할 값: 계단식 감소.",
    "The peak learning rate's multiplier at optimizer step `step` (0-based): constant.": "옵티마이저 스텝 `step` (0부터)에서 최대 학습률에 곱할 값: 일정.",
    "warm-up: linearly from 0.1 to 1": "워밍업: 0.1에서 1까지 선형으로",
    "warm-up: linearly from 0 to 1": "워밍업: 0에서 1까지 선형으로",
    "then linearly down to 0 at the last step": "그다음 마지막 스텝에서 0이 되도록 선형으로 감소",
    "half a cosine from 1 to 0": "1에서 0까지 코사인 반 주기",
    "times GAMMA every STEP_EVERY epochs": "STEP_EVERY 에포크마다 GAMMA를 곱함",
    "---- Training ----": "---- 학습 ----",
    "Optimizer steps in an epoch: the last partial batch counts if it holds over 2% of the data.": "에포크 하나의 옵티마이저 스텝 수: 마지막 배치가 데이터의 2%를 넘으면 포함.",
    "The optimizer; weight decay on conv and fc weights only, not on biases or BatchNorm.": "옵티마이저; 가중치 감쇠는 합성곱과 완전 연결 계층의 가중치에만 (편향, 배치 정규화 제외).",
    "Train `model` in place with the run's recipe.": "실행의 학습 설정으로 `model`을 학습.",
    "draws the augmentation": "데이터 증강의 난수",
    "a new order each epoch, a function of the seed and the epoch": "에포크마다 새 순서 (시드와 에포크로 정해짐)",
    "(B, classes)": "(B, 클래스 수)",
    "---- Prediction and evaluation ----": "---- 예측과 평가 ----",
    "The predicted class (N,) of uint8 images (N, C, H, W).": "uint8 이미지 (N, C, H, W)의 예측 클래스 (N,).",
    "the mean of each image's logits and its mirror's": "이미지와 좌우 반전 이미지의 로짓 평균",
    "The share of images whose predicted class is their label.": "예측 클래스가 레이블과 같은 이미지의 비율 (정확도).",
    "---- Main ----": "---- 실행 ----",
    "Predict with the run's weights (default), or train from scratch (--train).": "실행의 가중치로 예측 (기본), 또는 처음부터 학습 (--train).",
    "the initial weights depend on the seed only": "초기 가중치는 시드로만 정해짐",
    "weights_only: plain tensors, no pickled code is run": "weights_only: 텐서만 읽고, pickle된 코드는 실행하지 않음",
    # deploy/code.py's lines
    "convolution": "합성곱",
    "max pooling": "최대 풀링",
    "min pooling": "최소 풀링",
    "average pooling": "평균 풀링",
    "global average pooling": "전역 평균 풀링",
    "global max pooling": "전역 최대 풀링",
    "batch normalisation": "배치 정규화",
    "activation": "활성화 함수",
    "dropout": "드롭아웃",
    "flatten": "평탄화",
    "fully connected": "완전 연결 계층",
    "residual block": "잔차 블록",
    "A residual block: its layers' output plus its input (or plus its shortcut's output).": "잔차 블록: 블록 안 층들의 출력에 입력을 (또는 지름길의 출력을) 더합니다.",
    "the block's own layers": "블록 안의 층들",
    "empty: the input itself is added": "비어 있으면 입력 자체를 더함",
    "the two have one shape (cnnlab checked it)": "두 텐서의 모양이 같음 (cnnlab이 확인함)",
    "softmax": "소프트맥스",
    "---- Settings: edit these ----": "---- 설정: 필요하면 고쳐 쓰세요 ----",
    "(channels, height, width) of one image": "이미지 하나의 (채널, 높이, 너비)",
    "per channel, of pixels scaled to 0..1": "채널마다, 0..1로 바꾼 픽셀 기준",
    "score each image as the mean of its and its mirror's logits": "이미지와 좌우 반전 이미지의 로짓 평균으로 예측 (TTA)",
    "share of each class held out for validation, and its seed": "클래스마다 검증용으로 떼어 낼 비율과 그 시드",
    "where cnnlab found the files: change it if yours are elsewhere": "cnnlab이 파일을 찾은 곳: 다른 곳에 있으면 고치세요",
    "cnnlab's generated set is long to write out: its images are exported next to this script": "cnnlab이 만들어 내는 데이터셋은 생성 코드가 길어서, 이미지를 이 스크립트 옆에 내보냈습니다",
    "this data set's images, as cnnlab loaded them, exported next to this script": "cnnlab이 읽은 이 데이터셋의 이미지를 이 스크립트 옆에 내보냈습니다",
    "the image folder: one sub-folder per class": "이미지 폴더: 클래스마다 하위 폴더 하나",
    "how images meet the input's aspect ratio: stretch, pad or crop": "가로세로 비율이 다른 이미지 처리: stretch(늘이기), pad(여백), crop(자르기)",
    "share of each class held out as test when there is no test/ folder": "test/ 폴더가 없을 때 클래스마다 테스트용으로 떼어 낼 비율",
    "training images kept (a class-balanced subset); 0: all": "남길 학습 이미지 수 (클래스 균형 부분집합); 0: 전부",
    "test images kept (a class-balanced subset); 0: all": "남길 테스트 이미지 수 (클래스 균형 부분집합); 0: 전부",
    "the files of the test images, in order (filled by load_data)": "테스트 이미지의 파일, 순서대로 (load_data가 채움)",
    "the run's weights: a state_dict of plain tensors (torch.save), not safetensors, so that only torch is needed": "실행의 가중치: 텐서만 담은 state_dict (torch.save). safetensors가 아니라서 torch만 있으면 됨",
    "no weights: this script trains the model from scratch": "가중치 없음: 이 스크립트는 모델을 처음부터 학습합니다",
    "---- The recipe: the run's training settings ----": "---- 학습 설정: 실행에서 쓴 값 ----",
    "peak learning rate": "최대 학습률",
    "Nesterov momentum": "네스테로프 모멘텀",
    "on conv and fc weights only": "합성곱과 완전 연결 계층의 가중치에만",
    "optimizer steps of warm-up": "워밍업 옵티마이저 스텝 수",
    "the run stops after this many optimizer steps (a --budget run)": "이 옵티마이저 스텝 수에서 학습을 멈춤 (--budget 실행)",
    "the learning rate is multiplied by GAMMA every STEP_EVERY epochs": "STEP_EVERY 에포크마다 학습률에 GAMMA를 곱함",
    "augmentation: shift in pixels, mirrors, cutout side in pixels": "데이터 증강: 이동 픽셀 수, 뒤집기, 컷아웃 한 변의 픽셀 수",
    "left out here, cnnlab's run used it too:": "cnnlab 실행에서는 썼지만 여기서는 뺀 것:",
    "(N, C, H, W) uint8 images, (N,) int64 labels": "(N, C, H, W) uint8 이미지, (N,) int64 레이블",
    "---- Layers torch lacks ----": "---- torch에 없는 계층 ----",
    "---- The model: the layers named as cnnlab names them ----": "---- 모델: cnnlab과 같은 이름의 계층들 ----",
    "The run's model; input (N, C, H, W) normalised, output logits (N, classes).": "실행의 모델; 입력은 정규화한 (N, C, H, W), 출력은 로짓 (N, 클래스 수).",
    "per image: (channels, height, width) after flatten (features,)": "이미지 하나 기준: (채널, 높이, 너비), 평탄화 뒤에는 (특징 수,)",
    "logits: the loss takes them as they are; softmax gives probabilities": "로짓: 손실 함수는 그대로 받고, 소프트맥스를 하면 확률",
    "softmax is left out of forward: cross-entropy takes logits": "소프트맥스는 forward에서 뺌: 교차 엔트로피는 로짓을 받음",
}


def comment(text: str, language: str, table: dict[str, str] | None = None) -> str:
    """`text` (an English comment or docstring) in `language`: itself, or its Korean entry (in
    `table`, KOREAN by default)."""
    return (KOREAN if table is None else table)[text] if language == "ko" else text


def translated(block: str, language: str, table: dict[str, str] | None = None) -> str:
    """A block with each comment and one-line docstring in `language` (KeyError: not in KOREAN,
    or in `table` when given)."""
    if language != "ko":
        return block
    korean = KOREAN if table is None else table
    lines = []
    for line in block.split("\n"):
        doc = _DOCSTRING.match(line)
        note = _COMMENT.match(line)
        if doc:
            line = f'{doc["indent"]}"""{korean[doc["text"]]}"""'
        elif note and not _in_string(note["code"]) and _WORD.search(note["text"]):
            line = f"{note['code']}{note['mark']}{korean[note['text']]}"
        lines.append(line)
    return "\n".join(lines)


def _in_string(code: str) -> bool:
    """Whether a `#` after `code` sits inside a string literal (an odd number of quotes before)."""
    return code.count('"') % 2 == 1


def filled(block: str, language: str, table: dict[str, str] | None = None, **values: object) -> str:
    """A block translated, then its $holes filled."""
    return Template(translated(block, language, table)).substitute(values)
