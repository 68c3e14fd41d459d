"""Small REST and gRPC clients behind `imgclf predict` (and handy in scripts)."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
from rich.console import Console
from rich.table import Table

DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024


class ClientError(RuntimeError):
    """The server is unreachable or answered with an error."""


def classify_rest(url: str, images: list[bytes], names: list[str], *, version: int | None = None,
                  label: str | None = None, model: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
    params: dict[str, Any] = {k: v for k, v in (("version", version), ("label", label), ("model", model)) if v}
    files = [("file", (n, data, "application/octet-stream")) for n, data in zip(names, images, strict=True)]
    try:
        r = httpx.post(f"{url.rstrip('/')}/predict", files=files, params=params, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ClientError(f"cannot reach {url}: {exc}") from None
    if r.status_code != 200:
        try:
            message = r.json().get("error", r.text)
        except ValueError:
            message = r.text
        raise ClientError(f"server answered {r.status_code}: {message}")
    return r.json()


def classify_grpc(target: str, images: list[bytes], *, version: int | None = None,
                  label: str | None = None, model: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
    from service.grpc._generated.imgclf.v1 import classifier_pb2 as pb
    from service.grpc._generated.imgclf.v1 import classifier_pb2_grpc

    options = [("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE),
               ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE)]
    request = pb.ClassifyRequest(images=images, model_name=model or "")
    if version:
        request.version = version
    elif label:
        request.version_label = label
    with grpc.insecure_channel(target, options=options) as channel:
        try:
            reply = classifier_pb2_grpc.ImageClassifierStub(channel).Classify(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise ClientError(f"{target}: {exc.code().name}: {exc.details()}") from None
    return {"model_name": reply.model_name, "model_version": reply.model_version,
            "predictions": [{"label": p.label, "confidence": p.confidence,
                             "scores": dict(zip(reply.labels, p.scores, strict=True)),
                             "path": p.path or "cnn", "hand": _hand(p.hand) if p.HasField("hand") else None}
                            for p in reply.predictions]}


def _hand(hand: Any) -> dict[str, Any]:
    """A gRPC Hand as /predict's JSON carries it."""
    return {"box": list(hand.box), "landmarks": [[p.x, p.y, p.z] for p in hand.landmarks],
            "handedness": hand.handedness, "score": hand.score}


def hand_cell(hand: dict[str, Any] | None) -> str:
    """The hand column: handedness and presence, or "-" where no hand was found (or none was looked for)."""
    return f"{hand['handedness']} {hand['score']:.2f}" if hand else "-"


def print_table(reply: dict[str, Any], names: list[str]) -> None:
    preds = reply["predictions"]
    labels = list(preds[0]["scores"]) if preds else []
    table = Table(title=f"{reply['model_name']} version {reply['model_version']}")
    table.add_column("image")
    table.add_column("label", style="bold")
    for lab in labels:
        table.add_column(lab, justify="right")
    table.add_column("path")  # what answered: pose (on the hand found) or cnn
    table.add_column("hand")
    for name, p in zip(names, preds, strict=True):
        table.add_row(name, p["label"], *(f"{p['scores'][lab]:.3f}" for lab in labels),
                      p.get("path", "cnn"), hand_cell(p.get("hand")))
    Console().print(table)
