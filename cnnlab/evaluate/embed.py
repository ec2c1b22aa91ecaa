"""A projector of the learned features: each image's penultimate features (the input of the
last fc layer) placed in 2-D by PCA or t-SNE, with its true and predicted class.

Numbers only: `figures/embed.py` draws an `Embedding`, `cnnlab embed` prints it, and a page
can serve `Embedding.to_json()`. t-SNE is scikit-learn's, imported only when asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from cnnlab.errors import ConfigError
from cnnlab.i18n import _, data_split
from cnnlab.model.cnn import CnnModel
from cnnlab.model.inference import normalize

if TYPE_CHECKING:
    from cnnlab.run.folder import Run

METHODS = ("pca", "tsne")
TSNE_MAX_POINTS = 2000  # t-SNE is O(N log N) per iteration but slow in practice: a seeded subsample
EXACT_PCA_SIZE = 512  # images or features up to which PCA is a full SVD; above: randomized
PCA_SUBSPACE, PCA_POWER_ITERATIONS = 12, 8  # of the randomized SVD
TSNE_PERPLEXITY = 30.0  # scikit-learn's default, lowered for small sets (it must be below N)


@dataclass
class LabelledImages:
    """Images to embed: (N, C, H, W) uint8, their (N,) int64 labels, and files if any."""

    images: torch.Tensor
    labels: torch.Tensor
    files: list[str] | None = None
    name: str = ""  # e.g. 'shapes test'

    @classmethod
    def of_run(cls, run: Run, split: str = "test", data: str | None = None) -> LabelledImages:
        """A split of the run's data, exactly as training saw it."""
        from cnnlab.evaluate.scores import split_with_files

        images, labels, name, files = split_with_files(run, data, split)
        return cls(images, labels, files, data_split(name, split))


@dataclass
class Embedding:
    """Points in 2-D, one per embedded image, with what each image is and was taken for."""

    method: str  # pca | tsne
    points: torch.Tensor  # (M, 2) float32
    indices: torch.Tensor  # (M,) the images' indices in the data (a subsample keeps order)
    labels: torch.Tensor  # (M,) true classes
    predictions: torch.Tensor  # (M,) predicted classes
    classes: list[str]
    layer: str  # the last fc layer, whose input the features are
    features: int  # penultimate feature count
    total: int  # images in the data before any subsampling
    files: list[str] | None = None  # (M,) where the data came from files
    explained: list[float] = field(default_factory=list)  # PCA: variance share of each axis
    data: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def wrong(self) -> torch.Tensor:
        """(M,) True where the prediction is not the true class."""
        return self.predictions != self.labels

    def axis_labels(self) -> tuple[str, str]:
        """'PC1 (41% of the variance)' ... for PCA ('PC1' with no points), in the current
        language (the figure's axes, the page's projector line); 't-SNE 1', 't-SNE 2' for t-SNE."""
        if self.method == "pca" and self.explained:
            label = _("PC{number} ({share} of the variance)")
            return tuple(  # type: ignore[return-value]
                label.format(number=i + 1, share=f"{share:.0%}")
                for i, share in enumerate(self.explained)
            )
        return (
            ("PC1", "PC2") if self.method == "pca" else ("t-SNE 1", "t-SNE 2")
        )  # no point: no shares

    def to_json(self) -> dict[str, Any]:
        """Everything for machines (a page's projector): a row per point."""
        rows = []
        for k, (x, y) in enumerate(self.points.tolist()):
            row = {
                "index": int(self.indices[k]),
                "x": x,
                "y": y,
                "label": self.classes[int(self.labels[k])],
                "predicted": self.classes[int(self.predictions[k])],
                "correct": bool(self.labels[k] == self.predictions[k]),
            }
            if self.files is not None:
                row["file"] = self.files[k]
            rows.append(row)
        return {
            "method": self.method,
            "layer": self.layer,
            "features": self.features,
            "data": self.data,
            "total": self.total,
            "shown": len(rows),
            "misclassified": int(self.wrong.sum()),
            "classes": self.classes,
            "axes": list(self.axis_labels()),
            "explained_variance": self.explained,
            "notes": self.notes,
            "points": rows,
        }


def penultimate_layer(model: CnnModel) -> str:
    """The name of the model's last fc layer (whose input the embedded features are)."""
    fcs = [r.name for r in model.report.layers if r.layer.kind == "fc"]
    if not fcs:
        raise ConfigError(
            _(
                "the model has no fc layer, so there are no penultimate features to embed "
                "(embed takes the input of the last fc layer)"
            )
        )
    return fcs[-1]


@torch.inference_mode()
def features_and_logits(
    model: CnnModel,
    images: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    tta: bool = False,
    batch_size: int = 500,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The input of the last fc layer (N, F) and the logits (N, K) of uint8 images (N, C, H, W).

    `tta`: the logits are the mean of the image's and its mirror's, as `cnnlab eval` scores a
    run trained with tta=true; the features are the image's own.
    """
    names = [name for name, _ in model.named_children()]
    cut = names.index(penultimate_layer(model))
    modules = list(model.children())
    was_training = model.training
    model.eval()
    features, logits = [], []
    for begin in range(0, len(images), batch_size):
        x = normalize(images[begin : begin + batch_size], mean, std)
        mirror = x.flip(3) if tta else None
        for module in modules[:cut]:
            x = module(x)
        features.append(x.float().flatten(1))
        for module in modules[cut : model.logit_layers]:
            x = module(x)
        logits.append((x.float() + model(mirror).float()) / 2 if tta else x.float())
    model.train(was_training)
    return torch.cat(features), torch.cat(logits)


def _top_two_axes(centred: torch.Tensor, exact: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The first two principal axes (rows, up to 2) of centred (N, F) and their singular values."""
    if exact:
        _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
        return vh[:2], singular[:2]
    # A full SVD of 10,000 x 6,272 features costs minutes on two cores; the randomized one
    # (Halko et al., as scikit-learn's PCA does for large data) O(N F q), seeded for repeatable
    # pictures; its power iterations make the top two axes those of the full SVD.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        _, singular, v = torch.svd_lowrank(centred, q=PCA_SUBSPACE, niter=PCA_POWER_ITERATIONS)
    return v[:, :2].T, singular[:2]


def pca_2d(
    features: torch.Tensor, exact_up_to: int = EXACT_PCA_SIZE
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Project (N, F) onto its first two principal axes.

    Returns points (N, 2), the axes (2, F) as unit vectors (each signed so that its largest
    component is positive, for repeatable pictures) and each axis's share of the variance.
    A full SVD when N or F is at most `exact_up_to`, else a randomized one.
    """
    exact = min(features.shape) <= exact_up_to
    x = features.double() if exact else features.float()  # float64 would double 250 MB
    centred = x - x.mean(dim=0)
    axes, singular = _top_two_axes(centred, exact)
    if len(axes) < 2:  # one feature or one image: a second axis of zeros
        axes = torch.cat([axes, torch.zeros(2 - len(axes), x.shape[1], dtype=x.dtype)])
        singular = torch.cat([singular, torch.zeros(2 - len(singular), dtype=x.dtype)])
    signs = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
    axes = axes * torch.where(signs == 0, 1.0, signs)
    total = centred.double().square().sum()  # the variance of all axes together (times N - 1)
    shares = [float(v / total) if total > 0 else 0.0 for v in singular.double().square()]
    return (centred @ axes.T).float(), axes.float(), shares


def tsne_2d(features: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """(N, F) -> (N, 2) by scikit-learn's t-SNE, seeded, initialised by PCA."""
    from sklearn.manifold import TSNE

    n = len(features)
    if n < 4:
        raise ConfigError(
            _("t-SNE needs at least 4 images, got {count}: use --method pca").format(count=n)
        )
    perplexity = min(TSNE_PERPLEXITY, (n - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return torch.from_numpy(tsne.fit_transform(features.double().numpy())).float()


def _project(
    features: torch.Tensor, method: str, seed: int
) -> tuple[torch.Tensor, list[float], list[str]]:
    """(N, F) -> (N, 2) points by `method`, each axis's variance share (PCA) and notes. Rows
    with NaN or infinity (weights that hold NaN) get NaN points: the SVD cannot take them."""
    good = features.isfinite().all(dim=1)  # (N,)
    points = torch.full((len(features), 2), math.nan)
    explained: list[float] = []
    notes = []
    if not good.all():
        notes.append(
            f"{int((~good).sum())} of {len(features)} images have features that are NaN or "
            "infinite (do the run's weights hold NaN?): they have no point"
        )
    if good.any() and method == "pca":
        points[good], _, explained = pca_2d(features[good])
    elif good.any():
        points[good] = tsne_2d(features[good], seed)
    return points, explained, notes


def _subsample(total: int, limit: int, seed: int) -> torch.Tensor:
    """Sorted indices of at most `limit` of `total` images, the same for the same seed."""
    if total <= limit:
        return torch.arange(total)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=generator)[:limit].sort().values


def embed_features(
    run_or_model: Run | CnnModel,
    data: LabelledImages | None = None,
    method: str = "pca",
    *,
    classes: list[str] | None = None,
    norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    max_points: int | None = None,
    seed: int = 0,
) -> Embedding:
    """The penultimate features of `data` (default: the run's test split) in 2-D.

    A run brings its classes and normalisation; a bare model needs `classes` and `norm`
    (mean, std). t-SNE embeds a seeded subsample of at most TSNE_MAX_POINTS images unless
    `max_points` says otherwise; PCA embeds every image unless `max_points` is given.
    """
    if method not in METHODS:
        raise ConfigError(
            _("method '{method}' is not one of: {methods}").format(
                method=method, methods=", ".join(METHODS)
            )
        )
    model, classes, norm, data, tta = _resolve(run_or_model, data, classes, norm)
    if len(data.images) == 0:
        raise ConfigError(
            _("{data} has no images to embed").format(data=data.name or _("the data"))
        )
    limit = (
        max_points if max_points is not None else (TSNE_MAX_POINTS if method == "tsne" else None)
    )
    keep = _subsample(len(data.images), limit or len(data.images), seed)
    features, logits = features_and_logits(model, data.images[keep], *norm, tta=tta)
    points, explained, notes = _project(features, method, seed)
    embedding = Embedding(
        method=method,
        points=points,
        indices=keep,
        labels=data.labels[keep],
        predictions=logits.argmax(1),
        classes=list(classes),
        layer=penultimate_layer(model),
        features=features.shape[1],
        total=len(data.images),
        files=[data.files[i] for i in keep.tolist()] if data.files is not None else None,
        explained=explained,
        data=data.name,
    )
    embedding.notes += notes
    if len(keep) < len(data.images):
        embedding.notes.append(
            f"{len(keep)} of {len(data.images)} images, drawn at random (seed {seed})"
        )
    return embedding


def _resolve(
    run_or_model: Run | CnnModel,
    data: LabelledImages | None,
    classes: list[str] | None,
    norm: tuple[tuple[float, ...], tuple[float, ...]] | None,
) -> tuple[CnnModel, list[str], tuple[tuple[float, ...], tuple[float, ...]], LabelledImages, bool]:
    """The model, classes, normalisation, data and tta, from a run or from what the caller gave."""
    if isinstance(run_or_model, CnnModel):
        if classes is None or norm is None or data is None:
            raise ConfigError(_("embedding a bare model needs data, classes and norm=(mean, std)"))
        return run_or_model, classes, norm, data, False
    run = run_or_model
    data = data if data is not None else LabelledImages.of_run(run)
    # predictions as `cnnlab eval` makes them: with the mirror for a run trained with tta
    tta = run.record.pixels.tta
    return run.load_model(), classes or run.classes, norm or (run.mean, run.std), data, tta
