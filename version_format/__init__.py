"""The model version on disk: what training writes and serving reads, and nothing else.

A version is a folder `<model root>/<name>/<integer>/` in TensorFlow Serving's layout, published by an
atomic rename of a `.tmp-` folder. This package is the one both sides import for it, and it imports
neither of them (nor TensorFlow):

- layout.py: the files inside a version, the temporary prefix, version numbers.
- model_io.py: what the model takes and gives: image size, signatures, tensor names, the `none` label.
- card.py: the model card's keys, and reading a version's labels and card.
- exif.py: which way up a camera's picture is (the same for training and serving).
- atomic.py: writing a file or publishing a folder so a reader sees all of it or nothing.
- litert.py: the LiteRT scorer that runs a version's `.tflite` models.
"""
