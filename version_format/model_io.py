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
# the pose classifier as a signature, for TF Serving: one hand's 21 landmarks (x, y, z in the picture's
# pixels, as the hand stage gives them) per row -> scores in the version's label order (0 for a label the
# pose classifier does not know, such as `none`)
POSE_SIGNATURE = "pose"
LANDMARKS_INPUT = "landmarks"

NONE_LABEL = "none"  # the class a real-hands model answers when no hand is in view
