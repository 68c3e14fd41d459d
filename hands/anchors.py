"""SSD anchors of the palm detector: the centres MediaPipe's SsdAnchorsCalculator makes for its 4-layer,
192x192 configuration (fixed anchor size, so every anchor is 1 x 1 and only its centre matters)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AnchorConfig:
    """The palm model's anchor options (palm_detection_cpu.pbtxt)."""

    input_size: int = 192
    strides: tuple[int, ...] = (8, 16, 16, 16)
    aspect_ratios: tuple[float, ...] = (1.0,)
    # an extra anchor per aspect ratio list, at the geometric mean of this layer's and the next scale
    interpolated_scale: bool = True
    offset: float = 0.5


PALM_ANCHORS = AnchorConfig()


def anchor_centres(config: AnchorConfig = PALM_ANCHORS) -> np.ndarray:
    """float32 [n, 2]: each anchor's (x, y) centre in [0, 1], in the order of the model's outputs.

    Consecutive layers of the same stride share one grid: each cell of that grid holds the anchors of
    all those layers (per layer: one per aspect ratio, plus the interpolated one), row by row."""
    per_cell = len(config.aspect_ratios) + (1 if config.interpolated_scale else 0)
    rows: list[np.ndarray] = []
    layer = 0
    while layer < len(config.strides):
        stride = config.strides[layer]
        same = 0
        while layer + same < len(config.strides) and config.strides[layer + same] == stride:
            same += 1
        size = math.ceil(config.input_size / stride)
        grid = (np.arange(size, dtype=np.float32) + config.offset) / size
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        rows.append(np.repeat(cells, same * per_cell, axis=0))
        layer += same
    return np.concatenate(rows).astype(np.float32)
