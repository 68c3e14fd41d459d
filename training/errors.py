"""The errors a training job reports to its user: each message says what is wrong and what to do.

They live here, apart from the modules that raise them, so any module can raise or catch one
without importing another's machinery (and no two modules import each other for an error type).
"""

from __future__ import annotations


class DataError(ValueError):
    """The training data cannot be used; the message says why and what to do."""


class ExportError(RuntimeError):
    """The model could not be published under the requested version."""


class FinetuneError(ValueError):
    """The fine-tune cannot run on these inputs; the message says why."""
