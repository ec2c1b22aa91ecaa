"""`cnnlab code`: a run, or a model spec, as one standalone PyTorch script."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

from cnnlab.cli.common import MODEL_HELP, examples, printable, say
from cnnlab.i18n import _, current_language


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the code command."""
    p = subparsers.add_parser(
        "code",
        help=_("write a run (or a model) as one standalone, readable PyTorch (or Keras) script"),
        description=_(
            "Write one Python script that needs only torch, numpy and Pillow: the model "
            "as an nn.Module with cnnlab's layer names and each output shape, the data read and split "
            "as cnnlab does, the normalisation, the training recipe as a plain loop, and (for a run) "
            "its weights beside it as a .pt state_dict. `python train.py` prints the predicted class "
            "of each test image; `python train.py --train` trains from scratch. Comments follow "
            "--lang (en or ko). --style keras writes it as Keras 3 (keras and numpy) instead."
        ),
        epilog=examples(
            "cnnlab code latest",
            "cnnlab code runs/demo --out demo.py --lang ko",
            "cnnlab code tutorial --data mnist",
        ),
    )
    p.add_argument(
        "source",
        metavar="RUN|SPEC",
        help=_("a run folder, a run name or 'latest'; or {model_help}").format(
            model_help=_(MODEL_HELP)
        ),
    )
    p.add_argument(
        "--out",
        default="train.py",
        metavar="PATH",
        help=_("the script (default: %(default)s); NAME_weights.pt and NAME_data.npz go beside it"),
    )
    p.add_argument(
        "--data",
        help=_(
            "for a SPEC: the data set or folder to train on (default: shapes; cifar10 for 3x32x32 inputs)"
        ),
    )
    p.add_argument(
        "--style",
        choices=("torch", "keras"),
        default="torch",
        help=_(
            "torch (default): plain PyTorch; keras: Keras 3 (Sequential, or the functional API "
            "for res blocks) with the run's model.safetensors and split images beside it"
        ),
    )
    p.add_argument("--force", action="store_true", help=_("replace files that exist"))
    p.set_defaults(handler=run_code)


def _is_run(source: str) -> bool:
    """Whether SOURCE names a run folder (a folder with model.json, a run name, 'latest')."""
    from cnnlab.run import RUNS_DIR
    from cnnlab.run.files import MODEL_META

    if source == "latest":
        return True
    return any((folder / MODEL_META).is_file() for folder in (Path(source), RUNS_DIR / source))


def run_code(args: argparse.Namespace) -> int:
    """Write the script and the files beside it; say what was written and how to run it."""
    from cnnlab.deploy.code import input_for_run, write_code
    from cnnlab.run.folder import Run

    if _is_run(args.source):
        inputs = input_for_run(Run.open(args.source))
    else:
        inputs = _spec_input(args.source, args.data)
    if args.style == "keras":
        from cnnlab.deploy.codekeras import write_keras_code

        files = write_keras_code(inputs, args.out, current_language(), force=args.force)
    else:
        files = write_code(inputs, args.out, current_language(), force=args.force)
    extra = [path for path in (files.weights, files.data) if path is not None]
    say(_("wrote {path}").format(path=printable(files.script)))
    for path in extra:
        say(_("wrote {path}").format(path=printable(path)))
    say(_("run it with: python {script}").format(script=printable(files.script)))
    return 0


def _spec_input(model: str, data: str | None):
    """The CodeInput of a model spec: the data set planned as `cnnlab train` would plan it."""
    import torch

    from cnnlab.deploy.code import CodeInput
    from cnnlab.model.cnn import model_for_data
    from cnnlab.model.presets import resolve_model
    from cnnlab.training.config import resolve_config
    from cnnlab.training.plan import plan
    from cnnlab.training.setup import load_data, run_record

    if data is None:  # the data set that fits the spec's input
        shape = tuple(resolve_model(model).input_shape or (1, 28, 28))
        data = "cifar10" if shape == (3, 32, 32) else "shapes"
    config = resolve_config({"model": model, "data": data})
    loaded = load_data(config, torch.device("cpu"))
    planned = plan(config, loaded)
    record = run_record(planned.config, loaded)
    images = len(loaded.train[0])
    spec, _notes = model_for_data(config.model, loaded.image_shape, len(loaded.classes), images)
    values = tomllib.loads(planned.config.to_toml())
    return CodeInput(
        f"model {model}", spec.text(), spec, list(loaded.classes), record.pixels, record.source,
        values, planned.policy,
    )  # fmt: skip
