"""The peers: Fashion-MNIST recipes written as a tutorial user writes them, in plain code (not cnnlab).

- `seed000`: seed 000's PyTorch model (conv32-pool-conv64-pool-dropout-fc) with Adam lr 1e-3,
  batch 128, fed by a `DataLoader` over a `TensorDataset` (shuffle=True), pixels /255 (as ToTensor).
- `seed003`: seed 003's Keras model (two valid 3x3 convs, Dense 128, softmax) with Adam, batch 32:
  through Keras 3 on the torch backend when `keras` is importable, else the same model in plain
  PyTorch (Keras initialisation: Glorot-uniform kernels, zero biases; Adam eps 1e-7).
- `pytorch-examples`: the pytorch/examples MNIST recipe (two 3x3 convs 32/64, max pool, dropout
  0.25, fc 128, dropout 0.5, fc 10, log_softmax + NLL), Adadelta lr 1.0, StepLR gamma 0.7 each
  epoch, batch 64, Normalize((0.1307,), (0.3081,)) as in the example, `DataLoader` shuffle=True.

Each peer trains one epoch at a time (`train_epoch`), so bench/run.py can alternate them with
cnnlab; `evaluate` is timed apart from training. Pixels are converted to float once, up front
(what ToTensor/Normalize would give per image): this favours the peers slightly.
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench.common import reference_model
from cnnlab.spec.analysis import analyze
from cnnlab.spec.language import parse_spec

# The peers' architectures as cnnlab specs, only to count their FLOPs with analysis.analyze.
SPECS = {
    "seed000": "input(1x28x28) conv(32,3,padding=same) relu maxpool(2) conv(64,3,padding=same) relu "
    "maxpool(2) flatten dropout(0.5) fc(10)",
    "seed003": "input(1x28x28) conv(32,3) relu maxpool(2) conv(64,3) relu maxpool(2) flatten fc(128) "
    "relu fc(10) softmax",
    "pytorch-examples": "input(1x28x28) conv(32,3) relu conv(64,3) relu maxpool(2) dropout(0.25) "
    "flatten fc(128) relu dropout(0.5) fc(10)",
}


def forward_flops(name: str) -> int:
    """Forward FLOPs per image of a peer's model (2 per multiply-add), from cnnlab's analysis."""
    return analyze(parse_spec(SPECS[name])).total_flops


@dataclass
class EpochResult:
    """One epoch of a peer: training seconds, images, and test accuracy after it."""

    epoch: int
    train_seconds: float
    images: int
    eval_seconds: float
    test_accuracy: float
    load: float = 0.0  # 1-minute load average after the epoch (set by bench/run.py)


@dataclass
class Peer:
    """A recipe that trains one epoch at a time and evaluates on the test set."""

    name: str
    description: str
    batch_size: int
    flops_per_image: int
    history: list[EpochResult] = field(default_factory=list)

    def train_epoch(self, max_seconds: float = 0.0) -> tuple[float, int]:
        """Train one epoch (or until max_seconds); returns (seconds, images)."""
        raise NotImplementedError

    def accuracy(self) -> float:
        """Test accuracy of the current weights."""
        raise NotImplementedError

    def step(self, max_seconds: float = 0.0) -> EpochResult:
        """One epoch, then the test accuracy; both timed, separately."""
        seconds, images = self.train_epoch(max_seconds)
        started = time.perf_counter()
        accuracy = self.accuracy()
        result = EpochResult(
            len(self.history) + 1, seconds, images, time.perf_counter() - started, accuracy
        )
        self.history.append(result)
        return result


class TorchPeer(Peer):
    """A plain-PyTorch tutorial loop: DataLoader(TensorDataset, shuffle=True), zero_grad/backward/step."""

    def __init__(
        self,
        name: str,
        description: str,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        batch_size: int,
        train: tuple[torch.Tensor, torch.Tensor],
        test: tuple[torch.Tensor, torch.Tensor],
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        log_softmax: bool = False,
    ):
        super().__init__(name, description, batch_size, forward_flops(name))
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.log_softmax = log_softmax
        self.loader = DataLoader(TensorDataset(*train), batch_size=batch_size, shuffle=True)
        self.test = test

    def train_epoch(self, max_seconds: float = 0.0) -> tuple[float, int]:
        self.model.train()
        images = 0
        started = time.perf_counter()
        for x, y in self.loader:
            self.optimizer.zero_grad()
            out = self.model(x)
            if self.log_softmax:  # pytorch/examples: log_softmax in forward, then nll_loss
                loss = F.nll_loss(F.log_softmax(out, dim=1), y)
            else:
                loss = F.cross_entropy(out, y)
            loss.backward()
            self.optimizer.step()
            images += len(y)
            if max_seconds and time.perf_counter() - started > max_seconds:
                break
        if self.scheduler is not None:
            self.scheduler.step()
        return time.perf_counter() - started, images

    @torch.no_grad()
    def accuracy(self) -> float:
        self.model.eval()
        x, y = self.test
        correct = sum(
            int((self.model(x[i : i + 1000]).argmax(1) == y[i : i + 1000]).sum())
            for i in range(0, len(y), 1000)
        )
        return correct / len(y)


class ExamplesNet(nn.Module):
    """pytorch/examples mnist/main.py `Net`, verbatim except that log_softmax is in the loss."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return self.fc2(x)


def keras_model_in_torch() -> nn.Module:
    """Seed 003's Keras model in plain PyTorch, initialised as Keras does (Glorot uniform, zero bias)."""
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 5 * 5, 128),
        nn.ReLU(),
        nn.Linear(128, 10),  # Keras' softmax output + sparse CE == cross_entropy on logits
    )
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return model


class KerasPeer(Peer):
    """Seed 003 verbatim through Keras 3 (torch backend): Sequential, compile('adam'), fit(batch 32)."""

    def __init__(self, train_u8: tuple[torch.Tensor, torch.Tensor], test_u8):
        super().__init__(
            "seed003",
            "seed 003's Keras model, Adam, batch 32 (Keras 3, torch backend)",
            32,
            forward_flops("seed003"),
        )
        import keras  # noqa: PLC0415 (only when installed; KERAS_BACKEND is set by keras_available)

        self.keras = keras
        # As the seed does: x / 255.0, reshape(-1, 28, 28, 1); numpy arrays in.
        self.x_train = (train_u8[0].float() / 255.0).permute(0, 2, 3, 1).numpy()
        self.y_train = train_u8[1].numpy()
        self.x_test = (test_u8[0].float() / 255.0).permute(0, 2, 3, 1).numpy()
        self.y_test = test_u8[1].numpy()
        layers = keras.layers
        self.model = keras.Sequential(
            [
                keras.Input((28, 28, 1)),
                layers.Conv2D(32, (3, 3), activation="relu"),
                layers.MaxPooling2D((2, 2)),
                layers.Conv2D(64, (3, 3), activation="relu"),
                layers.MaxPooling2D((2, 2)),
                layers.Flatten(),
                layers.Dense(128, activation="relu"),
                layers.Dense(10, activation="softmax"),
            ]
        )
        self.model.compile(
            optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )

    def train_epoch(self, max_seconds: float = 0.0) -> tuple[float, int]:
        x, y = self.x_train, self.y_train
        if max_seconds:  # quick mode: a slice sized from a short timed probe
            x, y = x[: self._images_for(max_seconds)], y[: self._images_for(max_seconds)]
        started = time.perf_counter()
        self.model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=True)
        return time.perf_counter() - started, len(y)

    def _images_for(self, seconds: float) -> int:
        if not hasattr(self, "_rate"):
            started = time.perf_counter()
            self.model.fit(self.x_train[:1024], self.y_train[:1024], batch_size=32, verbose=0)
            self._rate = 1024 / (time.perf_counter() - started)
        return min(len(self.y_train), max(1024, int(self._rate * seconds)))

    def accuracy(self) -> float:
        _, accuracy = self.model.evaluate(self.x_test, self.y_test, batch_size=1000, verbose=0)
        return float(accuracy)


def keras_available() -> bool:
    """Whether Keras 3 is importable; selects its torch backend before the first import."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return importlib.util.find_spec("keras") is not None


def make_peers(data, seed: int = 0, use_keras: bool = True) -> list[Peer]:
    """The three peers on a cnnlab Dataset (uint8 tensors), each from its own seeded start."""
    train_u8 = (data.train_images, data.train_labels)
    test_u8 = (data.test_images, data.test_labels)
    to_tensor = data.train_images.float() / 255.0, data.train_labels  # transforms.ToTensor()
    test_tensor = data.test_images.float() / 255.0, data.test_labels
    peers: list[Peer] = []

    torch.manual_seed(seed)
    model = reference_model(1, 10, 28)
    peers.append(
        TorchPeer(
            "seed000",
            "seed 000's PyTorch model, Adam lr 1e-3, batch 128, DataLoader(TensorDataset)",
            model,
            torch.optim.Adam(model.parameters(), lr=1e-3),
            128,
            to_tensor,
            test_tensor,
        )
    )

    torch.manual_seed(seed)
    if use_keras and keras_available():
        import keras  # noqa: PLC0415

        keras.utils.set_random_seed(seed)
        peers.append(KerasPeer(train_u8, test_u8))
    else:
        model = keras_model_in_torch()
        peers.append(
            TorchPeer(
                "seed003",
                "seed 003's Keras model in plain PyTorch (keras not installed), Adam, batch 32",
                model,
                torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7),
                32,
                to_tensor,
                test_tensor,
            )
        )

    torch.manual_seed(seed)
    model = ExamplesNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    normalized = (to_tensor[0] - 0.1307) / 0.3081, to_tensor[1]  # Normalize((0.1307,), (0.3081,))
    peers.append(
        TorchPeer(
            "pytorch-examples",
            "pytorch/examples MNIST recipe, Adadelta lr 1.0, StepLR 0.7, batch 64, DataLoader",
            model,
            optimizer,
            64,
            normalized,
            ((test_tensor[0] - 0.1307) / 0.3081, test_tensor[1]),
            scheduler=torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7),
            log_softmax=True,
        )
    )
    return peers
