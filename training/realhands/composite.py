"""The real-hands augmentation: cut CGI hands out of their white background and put them in scenes.

Every function takes a numpy Generator, so a sample is a pure function of (seed, epoch, index):
the same seed renders the same images, and the label never changes (the hand is never dropped
from a hand sample, and a `none` sample never contains one).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from training.realhands.backgrounds import background

CUTOUT_HEIGHT = 176  # hands are stored at about the largest size they are drawn at (150 px output)


@dataclass(frozen=True)
class Style:
    """Variety for training scenes only. The default adds none and draws no random number for
    it, so validation and the real-like check render exactly the scenes they always did."""

    retone: float = 0.0  # share of hands given another skin tone (`retone`)


def _background_mask(rgb: np.ndarray) -> np.ndarray:
    """Near-white, colourless pixels: the studio backdrop and its soft grey shadows."""
    f = rgb.astype(np.int16)
    hi, lo = f.max(axis=-1), f.min(axis=-1)
    return (lo > 110) & (hi - lo < 20)


def has_white_background(rgb: np.ndarray) -> bool:
    """True for the dataset's CGI renders: most of the top, left and right border is backdrop."""
    mask = _background_mask(rgb)
    border = np.concatenate([mask[0], mask[:, 0], mask[:, -1]])
    return bool(border.mean() > 0.7)


def cutout(rgb: np.ndarray, height: int = CUTOUT_HEIGHT) -> np.ndarray | None:
    """RGBA of the hand (alpha = soft mask), cropped to it and scaled to `height`; None if no hand.

    The backdrop is the near-white region connected to the image border; the hand is the largest
    remaining component with its holes filled (pale highlights inside the hand stay opaque).
    """
    # the mask is found at half resolution (4x cheaper) and scaled back up as a soft edge
    small = np.asarray(Image.fromarray(rgb).reduce(2)) if min(rgb.shape[:2]) >= 200 else rgb
    bg = _background_mask(small)
    regions, _ = ndimage.label(bg)
    border_ids = np.unique(np.concatenate([regions[0], regions[:, 0], regions[:, -1], regions[-1]]))
    backdrop = np.isin(regions, border_ids[border_ids > 0])
    fg = ndimage.binary_opening(~backdrop)
    parts, n = ndimage.label(fg)
    if n == 0:
        return None
    sizes = ndimage.sum(fg, parts, index=range(1, n + 1))
    hand = ndimage.binary_fill_holes(parts == int(np.argmax(sizes)) + 1)
    if hand.sum() < 0.02 * hand.size:
        return None
    alpha_img = Image.fromarray((hand * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.7))
    alpha = np.asarray(alpha_img.resize((rgb.shape[1], rgb.shape[0]), Image.Resampling.BILINEAR))
    # pull the edge inwards: the outermost pixels are mixed with the white backdrop and would
    # leave a bright halo, a cue no real photo has
    alpha = np.clip((alpha.astype(np.int16) - 150) * 3, 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(alpha > 127)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    rgba = np.dstack([rgb, alpha])[y0:y1, x0:x1]
    # the renders' wrist leaves at the bottom edge: remember it so the forearm can be extended
    img = Image.fromarray(rgba, "RGBA")
    scale = height / img.height
    img = img.resize((max(1, round(img.width * scale)), height), Image.Resampling.LANCZOS)
    out = np.asarray(img).copy()
    out[..., 3] = np.where(out[..., 3] < 8, 0, out[..., 3])
    return out


def _extend_forearm(rgba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stretch the wrist row downwards so the arm reaches the frame edge, as in a real photo."""
    last = rgba[-1]
    opaque = np.flatnonzero(last[:, 3] > 128)
    if len(opaque) < 4:
        return rgba
    length = int(rgba.shape[0] * rng.uniform(0.6, 1.2))
    taper = np.linspace(1.0, rng.uniform(1.0, 1.25), length)[:, None]  # forearms widen to the elbow
    centre, width = opaque.mean(), rgba.shape[1]
    src = np.clip(((np.arange(width)[None, :] - centre) / taper + centre).round().astype(np.int64), 0, width - 1)
    arm = last[src].astype(np.float32)
    arm[..., :3] *= np.linspace(1.0, rng.uniform(0.75, 1.05), length)[:, None, None]
    return np.concatenate([rgba, arm.astype(np.uint8)])


def _jitter_colour(rgb: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """White balance, brightness, contrast, saturation and gamma: lighting and skin tone."""
    x = rgb.astype(np.float32) / 255.0
    x = x * rng.uniform(1 - 0.12 * strength, 1 + 0.12 * strength, 3)  # white balance
    grey = x.mean(axis=-1, keepdims=True)
    x = grey + (x - grey) * rng.uniform(1 - 0.45 * strength, 1 + 0.35 * strength)
    x = (x - 0.5) * rng.uniform(1 - 0.3 * strength, 1 + 0.2 * strength) + 0.5
    x = x * rng.uniform(1 - 0.35 * strength, 1 + 0.25 * strength)
    x = np.clip(x, 0, 1) ** rng.uniform(1 - 0.3 * strength, 1 + 0.3 * strength)
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


# The Monk Skin Tone scale's ten swatches, lightest to darkest (sRGB)
SKIN_TONES = np.array([[0xF6, 0xED, 0xE4], [0xF3, 0xE7, 0xDB], [0xF7, 0xEA, 0xD0], [0xEA, 0xDA, 0xBA],
                       [0xD7, 0xBD, 0x96], [0xA0, 0x7E, 0x56], [0x82, 0x5C, 0x43], [0x60, 0x41, 0x34],
                       [0x3A, 0x31, 0x2A], [0x29, 0x24, 0x20]], np.float32)


def retone(rgba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same hand with another skin tone: its mean colour moved to a point on the skin-tone
    scale, its shading kept (with random contrast), its mask untouched.

    The renders have few hands per class, so a class's tones are a cue that does not carry over
    to new hands (a very dark open hand was read as rock and scissors when held out).
    """
    opaque = rgba[..., 3] > 127
    if opaque.sum() < 16:
        return rgba
    rgb = rgba[..., :3].astype(np.float32) + 1.0
    # half the swatches are near-white, so the draw leans dark to spread lightness evenly
    t = (len(SKIN_TONES) - 1) * rng.uniform() ** 0.6
    i = min(int(t), len(SKIN_TONES) - 2)
    target = SKIN_TONES[i] + (SKIN_TONES[i + 1] - SKIN_TONES[i]) * (t - i)
    target = target * rng.uniform(0.7, 1.05) * rng.uniform(0.9, 1.1, 3)  # exposure, the light's colour
    shading = (rgb / rgb[opaque].mean(axis=0)) ** rng.uniform(0.7, 1.4)
    out = rgba.copy()
    out[..., :3] = np.clip(shading * target, 0, 255).astype(np.uint8)
    return out


def _place_hand(scene: Image.Image, hand: np.ndarray, rng: np.random.Generator, style: Style = Style()) -> Image.Image:
    size = scene.width
    rgba = hand.copy()
    retoned = style.retone > 0 and rng.random() < style.retone
    if retoned:
        rgba = retone(rgba, rng)
    rgba[..., :3] = _jitter_colour(rgba[..., :3], rng, strength=0.5 if retoned else 1.0)
    rgba = _extend_forearm(rgba, rng)
    img = Image.fromarray(rgba, "RGBA")
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    # hand height relative to the frame: small and far, to close up and cut off by the edges
    scale = size * rng.uniform(0.45, 1.15) / hand.shape[0]
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                     Image.Resampling.BILINEAR)
    # mostly upright, sometimes from the side; the arm always trails away from the fingers
    angle = float(rng.normal(0, 30)) if rng.random() < 0.8 else float(rng.uniform(-110, 110))
    # paste upright on a transparent canvas twice the frame, then rotate it about the hand's
    # centre: the frame is the canvas's middle, so the arm still reaches its edge when turned
    cx, cy = rng.uniform(0.2, 0.8) * size, rng.uniform(0.25, 0.75) * size
    half = size // 2
    pad = Image.new("RGBA", (2 * size, 2 * size), (0, 0, 0, 0))
    pad.paste(img, (int(half + cx - img.width / 2), int(half + cy - hand.shape[0] * scale / 2)), img)
    pad = pad.rotate(angle, resample=Image.Resampling.BILINEAR, center=(half + cx, half + cy))
    canvas = pad.crop((half, half, half + size, half + size))
    if rng.random() < 0.3:  # a soft contact shadow: hands cast them on near walls
        shadow = canvas.getchannel("A").filter(ImageFilter.GaussianBlur(size / 30))
        dark = Image.new("RGB", (size, size), (0, 0, 0))
        offset = (int(rng.integers(-size // 25, size // 25 + 1)), int(rng.integers(0, size // 20 + 1)))
        shadow = shadow.point(lambda v: int(v * 0.35))
        scene = Image.composite(dark, scene, shadow.transform(
            shadow.size, Image.Transform.AFFINE, (1, 0, -offset[0], 0, 1, -offset[1])))
    scene.paste(canvas, (0, 0), canvas)
    return scene


def _occlude(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A small object in front (a mug, a sleeve, another finger): at most ~12% of the frame."""
    size = img.width
    draw = ImageDraw.Draw(img)
    w, h = rng.uniform(0.08, 0.3, 2) * size
    x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
    fill = tuple(int(c) for c in rng.integers(0, 256, 3))
    if rng.random() < 0.5:
        draw.rectangle((x, y, x + w, y + h), fill=fill)
    else:
        draw.ellipse((x, y, x + w, y + h), fill=fill)
    return img


def _camera(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """What a webcam adds: uneven light, low resolution, blur, sensor noise, JPEG, grey."""
    size = img.width
    arr: np.ndarray = np.asarray(img, np.float32)
    if rng.random() < 0.5:  # light from one side
        ramp = np.linspace(rng.uniform(0.6, 1.0), rng.uniform(1.0, 1.3), size)
        ramp = ramp[None, :, None] if rng.random() < 0.5 else ramp[:, None, None]
        arr = arr * ramp
    arr = _jitter_colour(np.clip(arr, 0, 255).astype(np.uint8), rng, strength=0.5)
    img = Image.fromarray(arr)
    if rng.random() < 0.35:
        low = int(size * rng.uniform(0.35, 0.9))
        img = img.resize((low, low), Image.Resampling.BILINEAR).resize((size, size), Image.Resampling.BILINEAR)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.5))))
    if rng.random() < 0.4:
        noisy = np.asarray(img, np.float32) + rng.normal(0, rng.uniform(2, 10), (size, size, 3))
        img = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    if rng.random() < 0.1:
        img = img.convert("L").convert("RGB")
    if rng.random() < 0.5:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(rng.integers(30, 95)))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return img


def hand_scene(hand: np.ndarray, size: int, rng: np.random.Generator, *,
               held_out: bool = False, style: Style = Style()) -> np.ndarray:
    """A cut-out hand (RGBA from `cutout`) with its forearm, in a scene, through a webcam."""
    scene = background(size, rng, held_out=held_out)
    img = _place_hand(scene, hand, rng, style)
    if rng.random() < 0.2:
        img = _occlude(img, rng)
    return np.asarray(_camera(img, rng))


def empty_scene(size: int, rng: np.random.Generator, *, held_out: bool = False) -> np.ndarray:
    """The `none` class: a scene with no hand, through the same camera."""
    return np.asarray(_camera(background(size, rng, held_out=held_out), rng))


def photo_view(rgb: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A photo that is not a CGI render (e.g. a webcam capture): crop, mirror, light, camera."""
    img = Image.fromarray(rgb)
    w, h = img.size
    side = int(min(w, h) * rng.uniform(0.75, 1.0))
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    img = img.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = img.rotate(float(rng.normal(0, 12)), resample=Image.Resampling.BILINEAR)
    return np.asarray(_camera(img, rng))
