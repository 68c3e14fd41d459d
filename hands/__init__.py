"""The hand stage: MediaPipe Hands' palm detector and 21-landmark model on LiteRT, with MediaPipe's pre- and
post-processing written in numpy and Pillow. `HandStage().find(rgb)` gives the most confident hand or None.

A package of its own beside version_format: the server runs it in front of the classifier and training runs
it over the training images, and it imports neither of them (numpy, Pillow and LiteRT only)."""

from hands.stage import Hand, HandStage

__all__ = ["Hand", "HandStage"]
