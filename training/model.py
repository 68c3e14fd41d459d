"""The talk's convolutional network for 150x150x3 rock / paper / scissors images."""

from __future__ import annotations

import keras

from training.preprocessing import INPUT_SHAPE


def make_model(input_shape: tuple[int, int, int] = INPUT_SHAPE, num_classes: int = 3,
               learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 3e-4,
               ) -> keras.Model:
    """Conv2D+MaxPool x4 (64, 64, 128, 128), Flatten, Dropout 0.5, Dense 512, softmax.

    Inputs are pixels in [0, 1]; decoding and scaling live in the exported graph.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input(shape=input_shape, name="pixels"),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(128, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(128, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(512, activation="relu"),
            layers.Dense(num_classes, activation="softmax", name="scores"),
        ],
        name="rps_cnn",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
