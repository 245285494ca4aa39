"""User-facing errors: each message names the file / video / field and what was expected."""

from __future__ import annotations


class AmnetError(Exception):
    """Base of every error the CLI reports as one line instead of a traceback."""


class ConfigError(AmnetError, ValueError):
    """A params file or override that does not fit the schema (names the key and file)."""


class DataError(AmnetError, ValueError):
    """A feature file, annotation file or split that does not fit the expected layout."""


class PredictionError(AmnetError, ValueError):
    """A predictions JSON that cannot be scored (reversed segment, NaN score, unknown label...)."""


class ModelLoadError(AmnetError):
    """A checkpoint or registered model that cannot be loaded."""
