"""cnnlab: convolutional neural networks for image classification, every shape explained.

import cnnlab
run = cnnlab.train(model="tutorial", data="shapes", epochs=2)
run.metrics["test_accuracy"]
model = cnnlab.load(run.path)              # or a run name, or "latest"
model.predict("photo.png", top_k=3)        # [{"class": ..., "index": ..., "probability": ...}, ...]
"""

import os

__version__ = "0.1.0"

# OpenMP threads that wait for work sleep instead of spinning. On a CPU shared with other
# processes a spinning team waits on descheduled members: 2-thread training ran 5-13x slower
# under a load of 5 (docs/performance.md). It is read once, when torch loads its OpenMP
# runtime, so it must come before the first `import torch`; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def train(*args, **kwargs):
    """Train a model and return its opened run folder; see cnnlab.training.loop.train."""
    from cnnlab.training.loop import train as _train

    return _train(*args, **kwargs)


def load(*args, **kwargs):
    """A trained run ready to predict from Python; see cnnlab.deploy.api.load."""
    from cnnlab.deploy.api import load as _load

    return _load(*args, **kwargs)
