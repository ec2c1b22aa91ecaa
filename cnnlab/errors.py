"""Errors a user can fix. The CLI prints their message (no traceback) and exits 2; the server answers
JSON: 4xx for what the client sent, 500 for a damaged run folder (`CheckpointError`, see server/errors.py)."""


class CnnlabError(Exception):
    """Base class: the message names the problem and the fix."""


class SpecError(CnnlabError):
    """A model spec that cannot be parsed or cannot work (shapes, channels, sizes)."""


class DataError(CnnlabError):
    """A data set, data file or image that is missing, corrupt or of the wrong kind."""


class CheckpointError(CnnlabError):
    """A run folder or checkpoint that is missing, damaged or does not fit the model."""


class ConfigError(CnnlabError):
    """A configuration key or value that does not exist or does not make sense."""


class OutputError(CnnlabError):
    """An output file that cannot be written: its folder is missing, read-only or not a folder."""
