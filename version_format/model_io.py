"""What a version's model takes and gives: the contract between the exported graph and every runtime."""

from __future__ import annotations

IMAGE_SIZE = 150  # the talk's 150x150x3 input: every image is resized to it inside the graph
INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 3)

# the SavedModel's signatures: encoded image bytes -> scores, float pixels -> scores, and its labels
SERVING_SIGNATURE = "serving_default"
PIXELS_SIGNATURE = "serving_pixels"
LABELS_SIGNATURE = "labels"
IMAGE_INPUT = "image_bytes"
SCORES_OUTPUT = "scores"

NONE_LABEL = "none"  # the class a real-hands model answers when no hand is in view
