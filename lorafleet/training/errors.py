"""The training package's root exception and its children."""

from __future__ import annotations

from lorafleet.core.errors import LorafleetError

__all__ = ["TrainingError", "DataCheckError", "TrainConfigError", "JobFailed", "GateFailed"]


class TrainingError(LorafleetError):
    """Root of every training error."""


class TrainConfigError(TrainingError, ValueError):
    """A training config (or --set override) that does not validate; names the field."""


class DataCheckError(TrainingError, ValueError):
    """Data that fails a hard check; the message names the file and the row numbers."""


class JobFailed(TrainingError):
    """The Ray Train job failed after its retries."""


class GateFailed(TrainingError):
    """The evaluation gate did not hold and --force was not given."""
