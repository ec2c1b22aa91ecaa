"""cnnlab: convolutional neural networks for image classification, every shape explained."""

__version__ = "0.1.0"
