"""The one image preprocessing, used by training and baked into the exported serving graph."""

from __future__ import annotations

import tensorflow as tf

from version_format.model_io import IMAGE_SIZE


def decode_and_resize(image_bytes: tf.Tensor, size: int = IMAGE_SIZE) -> tf.Tensor:
    """Encoded JPEG/PNG/GIF/BMP -> float32 [size, size, 3] in [0, 1].

    Grayscale becomes RGB and alpha is dropped (channels=3); a GIF gives its first frame.
    Training and serving both call this, so the model never sees skewed inputs.
    """
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image = tf.image.convert_image_dtype(image, tf.float32)
    image = tf.image.resize(image, (size, size), antialias=True)
    return tf.clip_by_value(tf.ensure_shape(image, (size, size, 3)), 0.0, 1.0)
