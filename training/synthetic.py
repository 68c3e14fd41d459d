"""Rendered rock / paper / scissors hands: the embedded dataset that needs no network."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Sorted like folder names so that synthetic and real data share one label order.
LABELS: tuple[str, ...] = ("paper", "rock", "scissors")

_SKIN_TONES = np.array(
    [
        (255, 224, 196), (241, 194, 167), (224, 172, 138), (198, 134, 96),
        (161, 102, 70), (120, 75, 50), (89, 56, 38), (250, 210, 170),
    ],
    dtype=np.float64,
)
_SUPERSAMPLE = 2  # draw at 2x and downsample: anti-aliased edges like a photo


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, size=3))  # type: ignore[return-value]


def _skin(rng: np.random.Generator) -> tuple[int, int, int]:
    base = _SKIN_TONES[rng.integers(len(_SKIN_TONES))]
    jitter = rng.normal(0, 10, size=3)
    return tuple(int(c) for c in np.clip(base + jitter, 0, 255))  # type: ignore[return-value]


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A gradient with clutter: shapes and colours that carry no class information."""
    a, b = np.array(_colour(rng), float), np.array(_colour(rng), float)
    if rng.random() < 0.5:  # many real photos are on a plain, light background
        a = np.full(3, rng.uniform(200, 255))
        b = a - rng.uniform(0, 40)
    t = np.linspace(0, 1, size)[:, None, None]
    grad = a * (1 - t) + b * t
    arr = np.broadcast_to(grad, (size, size, 3)).copy()
    if rng.random() < 0.5:
        arr = np.rot90(arr, k=int(rng.integers(4))).copy()
    img = Image.fromarray(arr.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 4))):
        x0, y0 = rng.integers(0, size, size=2)
        w, h = rng.integers(size // 20, size // 3, size=2)
        colour = _skin(rng) if rng.random() < 0.1 else _colour(rng)
        shape = rng.choice(3, p=[0.45, 0.45, 0.1])  # few lines: they look like fingers
        box = (int(x0), int(y0), int(x0 + w), int(y0 + h))
        if shape == 0:
            draw.ellipse(box, fill=colour)
        elif shape == 1:
            draw.rectangle(box, fill=colour)
        else:
            draw.line(box, fill=colour, width=int(rng.integers(2, size // 25)))
    return img


def _finger(draw: ImageDraw.ImageDraw, base: np.ndarray, angle_deg: float, length: float,
            width: float, fill: tuple[int, ...]) -> np.ndarray:
    """A capsule from base pointing at angle (0 = up); returns the tip."""
    a = math.radians(angle_deg)
    tip = base + length * np.array([math.sin(a), -math.cos(a)])
    draw.line([tuple(base), tuple(tip)], fill=fill, width=int(width))
    r = width / 2
    for p in (base, tip):
        draw.ellipse((p[0] - r, p[1] - r, p[0] + r, p[1] + r), fill=fill)
    return tip


def _hand_layer(kind: str, rng: np.random.Generator, canvas: int) -> Image.Image:
    """Draw one hand (palm, wrist, fingers for `kind`) upright and centred on a clear layer."""
    layer = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    skin = _skin(rng)
    shade = tuple(int(c * rng.uniform(0.55, 0.75)) for c in skin)
    palm_w = canvas * rng.uniform(0.26, 0.32)
    palm_h = palm_w * rng.uniform(1.0, 1.2)
    cx, cy = canvas / 2, canvas / 2 + palm_h * 0.25
    top = cy - palm_h / 2
    finger_w = palm_w * rng.uniform(0.2, 0.25)
    xs = np.array([-0.37, -0.12, 0.12, 0.37]) * palm_w + cx
    lengths = np.array([0.85, 1.0, 0.95, 0.72]) * palm_w * rng.uniform(0.85, 1.1)
    # The extended fingers of each class; curled ones show only a knuckle above the palm.
    extended = {"paper": [0, 1, 2, 3], "rock": [], "scissors": [0, 1]}[kind]
    spread = rng.uniform(6, 14) if kind == "paper" else rng.uniform(9, 20)
    angles_by_kind: dict[str, list[float]] = {
        "paper": [-1.5 * spread, -0.5 * spread, 0.5 * spread, 1.5 * spread],
        "scissors": [-spread, spread, 0, 0],
        "rock": [0, 0, 0, 0],
    }
    angles = angles_by_kind[kind]
    thumb_out = kind == "paper" or (kind == "scissors" and rng.random() < 0.3)

    def body(fill: tuple[int, ...], grow: float) -> None:
        # wrist / forearm leaving the frame at the bottom
        wrist_w = palm_w * 0.75 + 2 * grow
        draw.rectangle((cx - wrist_w / 2, cy, cx + wrist_w / 2, canvas * 1.2), fill=fill)
        draw.rounded_rectangle(
            (cx - palm_w / 2 - grow, top - grow, cx + palm_w / 2 + grow, cy + palm_h / 2 + grow),
            radius=palm_w * 0.3, fill=fill)
        for i in range(4):
            base = np.array([xs[i], top + finger_w * 0.6])
            if i in extended:
                _finger(draw, base, angles[i] + rng.normal(0, 2), lengths[i], finger_w + 2 * grow,
                        fill)
            else:  # curled: a short stub, the knuckle
                _finger(draw, base, rng.normal(0, 5), finger_w * 0.35, finger_w + 2 * grow, fill)
        thumb_base = np.array([cx - palm_w * 0.45, cy + palm_h * 0.1])
        if thumb_out:
            _finger(draw, thumb_base, -rng.uniform(45, 75), palm_w * 0.6, finger_w * 1.1 + 2 * grow,
                    fill)
        else:  # folded across the palm
            _finger(draw, thumb_base, rng.uniform(50, 80), palm_w * 0.5, finger_w * 1.1 + 2 * grow,
                    fill)

    outline = max(1.0, canvas / 150)
    body((*shade, 255), outline)
    body((*skin, 255), 0)
    # creases between fingers and the fold of curled fingers, so edges carry the shape
    for i in range(4):
        if i not in extended:
            y = top + finger_w * 0.35
            draw.arc((xs[i] - finger_w / 2, y - finger_w / 2, xs[i] + finger_w / 2, y + finger_w / 2),
                     200, 340, fill=(*shade, 255), width=int(outline))
    return layer


def render(kind: str, rng: np.random.Generator, size: int = 150) -> Image.Image:
    """Render one RGB image of a `kind` hand with random pose, skin, background and lighting."""
    if kind not in LABELS:
        raise ValueError(f"unknown hand shape {kind!r}; expected one of {', '.join(LABELS)}")
    canvas = size * _SUPERSAMPLE
    img = _background(rng, canvas).convert("RGBA")
    hand = _hand_layer(kind, rng, canvas)
    if rng.random() < 0.5:
        hand = hand.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    scale = rng.uniform(0.85, 1.15)
    hand = hand.resize((int(canvas * scale),) * 2, Image.Resampling.BILINEAR)
    angle = rng.uniform(-40, 40) + (90 if rng.random() < 0.5 else 0)  # upright or from the side
    hand = hand.rotate(angle, resample=Image.Resampling.BILINEAR, expand=False)
    offset = (rng.uniform(-0.12, 0.12, size=2) * canvas).astype(int)
    pos = ((canvas - hand.width) // 2 + offset[0], (canvas - hand.height) // 2 + offset[1])
    placed = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 0))
    placed.paste(hand, (int(pos[0]), int(pos[1])), hand)  # paste clips at the borders
    img.alpha_composite(placed)
    rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    if rng.random() < 0.3:
        rgb = rgb.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    arr = np.asarray(rgb, dtype=np.float64)
    # lighting: overall exposure and a directional falloff
    gx, gy = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size))
    a = rng.uniform(0, 2 * math.pi)
    light = rng.uniform(0.7, 1.2) * (1 + rng.uniform(0, 0.3) * (np.cos(a) * gx + np.sin(a) * gy))
    arr = arr * light[..., None] + rng.normal(0, rng.uniform(2, 10), size=arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def sample_rng(seed: int, class_index: int, index: int) -> np.random.Generator:
    """One generator per image: sample i is the same whatever N per class is."""
    return np.random.default_rng([seed, class_index, index])


def generate(samples_per_class: int, seed: int = 0, size: int = 150,
             quality: int = 90) -> Iterator[tuple[bytes, int]]:
    """Yield (JPEG bytes, label index) pairs, class-interleaved, deterministic for a seed."""
    for i in range(samples_per_class):
        for c, kind in enumerate(LABELS):
            buf = io.BytesIO()
            render(kind, sample_rng(seed, c, i), size).save(buf, format="JPEG", quality=quality)
            yield buf.getvalue(), c


def held_still(kind: str, count: int, seed: int = 0, person: int = 42,
               size: tuple[int, int] = (320, 240)) -> list[bytes]:
    """JPEG frames of one person's hand held up to a webcam: the same rendered hand and room (`person`),
    frame to frame a small shift, turn, zoom, light change and sensor noise, as holding a button gives."""
    from PIL import ImageEnhance

    side = 240
    base = render(kind, np.random.default_rng([person, LABELS.index(kind)]), size=side)
    rng = np.random.default_rng([seed, LABELS.index(kind)])
    frames = []
    for _ in range(count):
        dx, dy = rng.uniform(-14, 14, size=2)
        img = base.rotate(rng.uniform(-12, 12), resample=Image.Resampling.BILINEAR, translate=(dx, dy),
                          fillcolor=(120, 110, 100))
        zoom = int(side * rng.uniform(0.9, 1.1))
        img = img.resize((zoom, zoom), Image.Resampling.BILINEAR)
        left = (zoom - side) // 2
        img = img.crop((left, left, left + side, left + side)).resize(size, Image.Resampling.BILINEAR)
        img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.85, 1.15))
        pixels = np.asarray(img, dtype=np.float32) + rng.normal(0, 4, size=(size[1], size[0], 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=85)
        frames.append(buf.getvalue())
    return frames
