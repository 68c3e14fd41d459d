"""A quiet start for `imgclf serve`: the lines a user sees are imgclf's own.

Without this, every start printed TensorFlow's C++ start-up chatter (oneDNN and CUDA-stub notes, written
before TensorFlow's log level applies, and "failed call to cuInit" errors on machines without a GPU), and
matplotlib's "generated new fontManager" on a first run: `import tensorflow` loads Keras eagerly (TF 2.21
registers Keras' optimizers at import), and Keras imports matplotlib when it is installed.

Set TF_CPP_MIN_LOG_LEVEL yourself (0 shows everything) to see TensorFlow's C++ logs again.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Iterator, Sequence
from types import ModuleType

QUIET_LEVEL = "3"  # TensorFlow's C++ logs: 3 keeps even its errors out (cuInit on a machine with no GPU)


class _NoPlotting(importlib.abc.MetaPathFinder):
    """Makes matplotlib unimportable: Keras treats it as optional, and the server draws nothing."""

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("imgclf serve does not load matplotlib", name=name)
        return None


@contextlib.contextmanager
def _stderr_fd_silenced() -> Iterator[None]:
    """The process's file descriptor 2 goes to /dev/null (C++ code writes there directly), while Python's
    own sys.stderr (warnings, an import error's traceback) still reaches the real stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    python_stderr = sys.stderr
    try:
        sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        replacement, sys.stderr = sys.stderr, python_stderr
        replacement.close()
        os.close(saved)
        os.close(devnull)


def quiet_start() -> None:
    """Call before anything imports TensorFlow: sets its C++ log level unless the user did, keeps
    matplotlib out of the process, and imports TensorFlow with its start-up chatter silenced."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_LEVEL)
    if not any(isinstance(f, _NoPlotting) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPlotting())
    if "tensorflow" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"] != QUIET_LEVEL:
        return  # the user asked for TensorFlow's logs
    if importlib.util.find_spec("tensorflow") is None:
        return  # an installation without TensorFlow serves the LiteRT runtimes alone
    with _stderr_fd_silenced():
        import tensorflow  # noqa: F401  (its chatter is printed at import)
