"""Rotated rectangles in image pixels and the crops MediaPipe's ImageToTensorCalculator takes of them.

A `Region` maps the unit square of a crop onto the image: the crop's point (x, y) in [0, 1]^2 lands on
centre + R(rotation) . ((x - 0.5) * width, (y - 0.5) * height), y pointing down. The crop's corners sit
on the region's corners and image pixel centres on integer coordinates, as in MediaPipe's OpenCV path,
so that the landmarks land where MediaPipe's do."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Region:
    """A rectangle of width x height pixels centred on (cx, cy), turned by `rotation` radians."""

    cx: float
    cy: float
    width: float
    height: float
    rotation: float = 0.0

    def to_image(self, unit: np.ndarray) -> np.ndarray:
        """[..., 2] points of the crop's unit square -> the same points in image pixels."""
        cos, sin = math.cos(self.rotation), math.sin(self.rotation)
        dx = (unit[..., 0] - 0.5) * self.width
        dy = (unit[..., 1] - 0.5) * self.height
        return np.stack([self.cx + cos * dx - sin * dy, self.cy + sin * dx + cos * dy], axis=-1)

    def within(self, outer: Region) -> Region:
        """This region, given in the pixels of `outer`'s own frame (origin at its corner, x along its width,
        one unit per image pixel), placed on the image `outer` lies on."""
        centre = outer.to_image(np.array([self.cx / outer.width, self.cy / outer.height]))
        return Region(float(centre[0]), float(centre[1]), self.width, self.height,
                      normalize_angle(self.rotation + outer.rotation))


def normalize_angle(angle: float) -> float:
    """The same angle in [-pi, pi)."""
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def crop(image: Image.Image, region: Region, size: int, fill: int = 0) -> np.ndarray:
    """float32 [size, size, 3] in [0, 1]: the region resampled bilinearly (no smoothing, as MediaPipe), the
    parts outside the image filled with `fill` (0 to 255)."""
    cos, sin = math.cos(region.rotation), math.sin(region.rotation)
    sx, sy = region.width / size, region.height / size
    # output pixel (u, v) -> image point: corner + R . (u * sx, v * sy), with pixel centres on integers
    a, b = cos * sx, -sin * sy
    d, e = sin * sx, cos * sy
    corner = region.to_image(np.zeros(2))
    # Pillow samples at pixel centre + 0.5 on both sides: shift in and out by half a pixel
    c = float(corner[0]) - 0.5 * (a + b) + 0.5
    f = float(corner[1]) - 0.5 * (d + e) + 0.5
    out = image.transform((size, size), Image.Transform.AFFINE, (a, b, c, d, e, f),
                          resample=Image.Resampling.BILINEAR, fillcolor=(fill, fill, fill))
    return np.asarray(out, dtype=np.float32) * np.float32(1 / 255)


def tight_crop(rgb: np.ndarray, box: tuple[float, float, float, float], margin: float = 0.05) -> np.ndarray:
    """The part of the picture inside `box` (x_min, y_min, x_max, y_max) grown by `margin` of its size on
    every side, clipped to the picture: a close-up of what the box holds."""
    h, w = rgb.shape[:2]
    mx, my = (box[2] - box[0]) * margin, (box[3] - box[1]) * margin
    x0, y0 = max(0, int(box[0] - mx)), max(0, int(box[1] - my))
    x1, y1 = min(w, math.ceil(box[2] + mx)), min(h, math.ceil(box[3] + my))
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])
