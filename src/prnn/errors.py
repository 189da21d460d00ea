"""The exceptions and warnings of prnn: one hierarchy, so the CLI can catch them all."""

from __future__ import annotations


class PrnnError(Exception):
    """Base of every error prnn raises on purpose (bad input, bad config, bad file)."""


class DataError(PrnnError, ValueError):
    """An input file or table is missing, malformed or inconsistent."""


class ConfigError(PrnnError, ValueError):
    """A configuration value or key is invalid."""


class NotFittedError(PrnnError, RuntimeError):
    """A model was asked to score before it was fitted or loaded."""


class ModelFormatError(PrnnError, ValueError):
    """A file is not a prnn model, or one of an unsupported format version."""


class TrainingError(PrnnError, RuntimeError):
    """Training diverged or could not proceed."""


class DataWarning(UserWarning):
    """Input data was usable but something in it was dropped or converted."""
