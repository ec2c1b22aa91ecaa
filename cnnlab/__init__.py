"""cnnlab: convolutional neural networks for image classification, every shape explained.

import cnnlab
run = cnnlab.train(model="tutorial", data="shapes", epochs=2)
run.metrics["test_accuracy"]
"""

__version__ = "0.1.0"


def train(*args, **kwargs):
    """Train a model and return its opened run folder; see cnnlab.training.train."""
    from cnnlab.training import train as _train

    return _train(*args, **kwargs)
