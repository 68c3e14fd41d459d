"""Scenes without hands: photos that ship inside installed packages, and procedural clutter.

They are what the real-hands recipe puts behind the cut-out CGI hands, and what the `none`
label learns. The photos are split once, by name, into a training pool and a held-out pool
that only the real-like check (training/realhands/reallike.py) ever sees.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


@dataclass(frozen=True)
class Photo:
    name: str
    package: str
    file: str  # relative to the package's data folder
    licence: str


# Only images whose own documentation states public domain or CC0; `held_out` never trains.
TRAIN_PHOTOS = (
    Photo("astronaut", "skimage", "astronaut.png", "public domain (NASA)"),
    Photo("camera", "skimage", "camera.png", "CC0 (Lav Varshney)"),
    Photo("chelsea", "skimage", "chelsea.png", "CC0 (Stefan van der Walt)"),
    Photo("brick", "skimage", "brick.png", "CC0 (CC0Textures)"),
    Photo("grass", "skimage", "grass.png", "CC0 (CC0Textures)"),
    Photo("hubble", "skimage", "hubble_deep_field.jpg", "public domain (NASA)"),
    Photo("clock", "skimage", "clock_motion.png", "public domain (Stefan van der Walt)"),
    Photo("text", "skimage", "text.png", "public domain"),
    Photo("horse", "skimage", "horse.png", "CC0 (Andreas Preuss)"),
    Photo("coins", "skimage", "coins.png", "no known copyright restrictions"),
)
HELD_OUT_PHOTOS = (
    Photo("grace_hopper", "matplotlib", "sample_data/grace_hopper.jpg", "public domain (US Navy)"),
    Photo("coffee", "skimage", "coffee.png", "CC0 (Rachel Michetti)"),
    Photo("rocket", "skimage", "rocket.jpg", "public domain (SpaceX)"),
    Photo("gravel", "skimage", "gravel.png", "CC0 (CC0Textures)"),
)


def _data_dir(package: str) -> Path:
    if package == "skimage":
        import skimage

        return Path(skimage.__file__).parent / "data"
    import matplotlib

    return Path(matplotlib.get_data_path())


@functools.cache
def load_photos(held_out: bool = False) -> tuple[np.ndarray, ...]:
    """RGB uint8 arrays of the pool; a photo missing from an installed package is skipped."""
    photos = []
    for photo in HELD_OUT_PHOTOS if held_out else TRAIN_PHOTOS:
        path = _data_dir(photo.package) / photo.file
        if path.exists():
            with Image.open(path) as img:
                photos.append(np.asarray(img.convert("RGB")))
    return tuple(photos)


def photo_crop(photo: np.ndarray, size: int, rng: np.random.Generator) -> Image.Image:
    """A random square crop (20% to 100% of the short side), maybe mirrored, at `size`."""
    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(0.2, 1.0))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    img = Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size), Image.Resampling.BILINEAR)
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else img


def _rgb(rng: np.random.Generator, skin: bool = False) -> tuple[int, int, int]:
    if skin:  # skin-coloured things that are not hands: faces, arms at rest, furniture
        base = rng.uniform([90, 55, 40], [250, 215, 190])
        return tuple(int(c) for c in base)  # type: ignore[return-value]
    return tuple(int(c) for c in rng.integers(0, 256, size=3))  # type: ignore[return-value]


def procedural(size: int, rng: np.random.Generator) -> Image.Image:
    """A room-like scene: a lit wall or gradient, blurred clutter, boxes, windows, a person."""
    a = rng.uniform(0, 255, 3)
    b = np.clip(a + rng.normal(0, 60, 3), 0, 255)
    t = np.linspace(0, 1, size)[:, None, None]
    arr = np.broadcast_to(a * (1 - t) + b * t, (size, size, 3)).copy()
    arr = np.rot90(arr, k=int(rng.integers(4))).copy()
    if rng.random() < 0.5:  # low-frequency texture: out-of-focus clutter
        cells = int(rng.integers(3, 12))
        noise = rng.uniform(-60, 60, (cells, cells, 3)).astype(np.float32)
        noise_img = Image.fromarray(np.clip(noise + 128, 0, 255).astype(np.uint8)).resize(
            (size, size), Image.Resampling.BICUBIC)
        arr = arr + (np.asarray(noise_img, np.float32) - 128)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 6))):
        x0, y0 = rng.integers(-size // 4, size, size=2)
        w, h = rng.integers(size // 10, int(size // 1.5), size=2)
        box = (int(x0), int(y0), int(x0 + w), int(y0 + h))
        kind = rng.random()
        if kind < 0.45:
            draw.rectangle(box, fill=_rgb(rng))
        elif kind < 0.6:  # a bright window with a frame
            draw.rectangle(box, fill=tuple(int(v) for v in rng.uniform(200, 255, 3)),
                           outline=_rgb(rng), width=int(rng.integers(1, 6)))
        elif kind < 0.85:
            draw.ellipse(box, fill=_rgb(rng, skin=rng.random() < 0.3))
        else:
            draw.line(box, fill=_rgb(rng), width=int(rng.integers(1, max(2, size // 30))))
    if rng.random() < 0.3:  # head and shoulders: a person with no hand in view
        cx, cy, r = rng.uniform(0.2, 0.8) * size, rng.uniform(0.15, 0.5) * size, rng.uniform(0.1, 0.25) * size
        draw.rectangle((cx - 2.2 * r, cy + 1.1 * r, cx + 2.2 * r, size), fill=_rgb(rng))
        draw.ellipse((cx - r, cy - 1.25 * r, cx + r, cy + 1.25 * r), fill=_rgb(rng, skin=True))
        draw.ellipse((cx - r, cy - 1.3 * r, cx + r, cy - 0.2 * r), fill=_rgb(rng) if rng.random() < 0.3
                     else tuple(int(v) for v in rng.uniform(10, 90, 3)))
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 3.0))))
    return img


def background(size: int, rng: np.random.Generator, *, held_out: bool = False,
               photo_share: float = 0.5) -> Image.Image:
    """One scene without a hand: a crop of a package photo or a procedural room."""
    photos = load_photos(held_out)
    if photos and rng.random() < photo_share:
        img = photo_crop(photos[int(rng.integers(len(photos)))], size, rng)
        return img.convert("RGB")
    return procedural(size, rng)
