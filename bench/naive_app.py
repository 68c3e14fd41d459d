"""The baseline the benchmark compares against: FastAPI calling model.predict once per request.

This is the shape of most tutorials: decode with Pillow, resize, `model.predict` on a batch of
one, in FastAPI's thread pool. Run: `uvicorn bench.naive_app:app` with IMGCLF_NAIVE_MODEL set
to a `.keras` file.
"""

from __future__ import annotations

import io
import os

import keras
import numpy as np
from fastapi import FastAPI, Request
from PIL import Image

app = FastAPI()
_model = keras.models.load_model(os.environ["IMGCLF_NAIVE_MODEL"])
_labels = ["paper", "rock", "scissors"]


@app.post("/predict")
def predict(request: Request) -> dict[str, object]:
    import anyio

    body = anyio.from_thread.run(request.body)
    image = Image.open(io.BytesIO(body)).convert("RGB").resize((150, 150))
    x = np.asarray(image, dtype=np.float32)[None] / 255.0
    scores = _model.predict(x, verbose=0)[0]
    best = int(np.argmax(scores))
    return {"label": _labels[best], "confidence": float(scores[best])}
