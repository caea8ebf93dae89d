"""Errors that vaelab reports to the user as one line, before any training starts."""


class ConfigError(ValueError):
    """A config value is invalid or incompatible; the message names the key and the fix."""


class DataError(RuntimeError):
    """A data file is missing, corrupt or of the wrong format; the message names the file."""


class DivergenceError(RuntimeError):
    """The loss or a gradient became NaN/Inf."""
