"""The hand stage: MediaPipe Hands' palm detector and 21-landmark model on LiteRT, with MediaPipe's pre- and
post-processing written in numpy and Pillow. `HandStage().find(rgb)` gives the most confident hand or None."""

from service.hands.stage import Hand, HandStage

__all__ = ["Hand", "HandStage"]
