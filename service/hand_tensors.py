"""The hand stage's findings as named output tensors, for the protocols that answer with tensors (KServe V2,
TF Serving's Predict). A client gets them only by naming them: one that names no output gets the outputs it
always got, and official clients that check the outputs against the model's metadata are never surprised."""

from __future__ import annotations

import numpy as np

from service.core import CNN, ClassifyResult

# name -> (V2 datatype, the shape of one image's element); every tensor's first dimension is the images
HAND_OUTPUTS: dict[str, tuple[str, tuple[int, ...]]] = {
    "path": ("BYTES", ()),  # what answered: b"pose" or b"cnn"
    "hand_box": ("FP32", (4,)),  # x_min, y_min, x_max, y_max; zeros where no hand was found
    "hand_landmarks": ("FP32", (21, 3)),  # x, y, z per point; zeros where no hand was found
    "hand_score": ("FP32", ()),  # the landmark model's hand presence; 0 where no hand was found
    "handedness": ("BYTES", ()),  # b"Left" or b"Right"; empty where no hand was found
}


def hand_tensor(result: ClassifyResult, name: str) -> np.ndarray | list[bytes]:
    """The named output (one of HAND_OUTPUTS) for every image of `result`: float32 [n, *shape], or n byte
    strings. An image without a hand (or a request the hand stage did not run for) gets zeros or b""."""
    n = len(result.scores)
    hands = result.hands or (None,) * n
    if name == "path":
        return [p.encode() for p in result.paths or (CNN,) * n]
    if name == "handedness":
        return [h.handedness.encode() if h else b"" for h in hands]
    shape = HAND_OUTPUTS[name][1]
    out = np.zeros((n, *shape), np.float32)
    for i, hand in enumerate(hands):
        if hand is not None:
            out[i] = (hand.box if name == "hand_box" else hand.landmarks if name == "hand_landmarks"
                      else hand.score)
    return out

