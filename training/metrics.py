"""The one confusion-matrix count, shared by training, evaluation and the real-like check."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def confusion(truth: Iterable[int], predicted: Iterable[int], num_classes: int) -> np.ndarray:
    """Rows are true labels, columns predicted ones."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    for t, p in zip(truth, predicted, strict=True):
        matrix[t, p] += 1
    return matrix
