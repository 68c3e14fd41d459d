"""KServe V2 (Open Inference Protocol) tensors over the core, shared by the REST and gRPC transports."""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from service.core import ClassifyResult, InferStats, ServingCore
from service.errors import InvalidInputError, PayloadTooLargeError
from service.hand_tensors import HAND_OUTPUTS, hand_tensor

INPUT = "image_bytes"
OUTPUTS = ("scores", "label")  # what a request that names no output gets
EXTENSIONS = ["classification", "binary_tensor_data", "model_repository", "statistics"]


def server_version() -> str:
    try:
        return version("imgclf")
    except PackageNotFoundError:
        return "0"


def pack_bytes(items: Sequence[bytes]) -> bytes:
    """BYTES elements in raw form, as Triton defines it: a 4-byte little-endian length, then the bytes."""
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


def unpack_bytes(raw: bytes, where: str, limit: int | None = None) -> list[bytes]:
    """The inverse of pack_bytes; stops at `limit` elements (a tail of empty elements is cheap to send)."""
    items: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if limit is not None and len(items) >= limit:
            raise PayloadTooLargeError(f"{where}: more than {limit} elements; the limit is {limit} images "
                                       "per request")
        if offset + 4 > len(raw):
            raise InvalidInputError(f"{where}: truncated BYTES element length at byte {offset}")
        (n,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + n > len(raw):
            raise InvalidInputError(f"{where}: BYTES element of {n} bytes runs past the end of the "
                                    f"{len(raw)} byte tensor")
        items.append(raw[offset:offset + n])
        offset += n
    return items


def check_input(name: str, datatype: str, shape: Sequence[int], count: int) -> None:
    """The one input this model takes: BYTES `image_bytes`, one element per image."""
    if name != INPUT or datatype != "BYTES":
        raise InvalidInputError(f"expected one BYTES input {INPUT!r} of encoded images, got "
                                f"{name!r} ({datatype})")
    if any(d < 0 for d in shape) or math.prod(shape) != count:
        raise InvalidInputError(f"input shape {list(shape)} does not match its {count} data elements")


@dataclass(frozen=True)
class Requested:
    """An output the client asked for: its name, Triton's `classification` count, `binary_data`."""

    name: str
    classification: int = 0
    binary: bool | None = None


def requested(name: str, parameters: Mapping[str, Any] | None) -> Requested:
    """Checked before any inference, so a bad request costs no model call."""
    if name not in OUTPUTS and name not in HAND_OUTPUTS:
        raise InvalidInputError(f"unknown output {name!r}; outputs are {[*OUTPUTS, *HAND_OUTPUTS]}")
    params = parameters or {}
    k = params.get("classification", 0)
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise InvalidInputError(f"output {name!r}: parameter 'classification' must be a "
                                f"non-negative integer, got {k!r}")
    if k and name in HAND_OUTPUTS:
        raise InvalidInputError(f"output {name!r}: parameter 'classification' applies to 'scores' and "
                                "'label' only")
    binary = params.get("binary_data")
    if binary is not None and not isinstance(binary, bool):
        raise InvalidInputError(f"output {name!r}: parameter 'binary_data' must be true or false")
    return Requested(name, k, binary)


@dataclass
class OutputTensor:
    name: str
    datatype: str
    shape: list[int]
    values: np.ndarray | list[bytes]  # float32 for FP32, bytes elements for BYTES

    def raw(self) -> bytes:
        if isinstance(self.values, np.ndarray):
            return self.values.astype("<f4").tobytes()
        return pack_bytes(self.values)

    def json_data(self) -> list[Any]:
        if isinstance(self.values, np.ndarray):
            return list(self.values.ravel().tolist())
        return [x.decode() for x in self.values]


def outputs(result: ClassifyResult, wanted: Sequence[Requested]) -> list[OutputTensor]:
    n = len(result.scores)
    out = []
    for req in wanted or [Requested(name) for name in OUTPUTS]:
        if req.classification > 0:  # Triton's classification extension: "score:index:label", best first
            k = min(req.classification, len(result.labels))
            rows = [f"{row[j]:.6f}:{j}:{result.labels[j]}".encode()
                    for row in result.scores for j in np.argsort(-row)[:k]]
            out.append(OutputTensor(req.name, "BYTES", [n, k], rows))
        elif req.name == "scores":
            out.append(OutputTensor("scores", "FP32", list(result.scores.shape),
                                    result.scores.astype(np.float32)))
        elif req.name in HAND_OUTPUTS:
            datatype, shape = HAND_OUTPUTS[req.name]
            out.append(OutputTensor(req.name, datatype, [n, *shape], hand_tensor(result, req.name)))
        else:
            out.append(OutputTensor("label", "BYTES", [n], [p.label.encode() for p in result.predictions]))
    return out


def parse_version(text: str) -> int | None:
    """V2 versions are strings; "" means the newest available."""
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise InvalidInputError(f"model version must be a positive integer, got {text!r}")
    return int(text)


def model_metadata(core: ServingCore, model: str, ver: int | None) -> dict[str, Any]:
    info = core.model_info(model, ver)
    return {
        "name": model, "versions": [str(v) for v in core.available_versions(model)],
        "platform": info.platform,  # what answers it: the SavedModel, or a LiteRT model of it
        "inputs": [{"name": INPUT, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, len(info.labels)]},
                    {"name": "label", "datatype": "BYTES", "shape": [-1]}],
        # the hand outputs, sent only to a request that names them (V2's tensor metadata has no "optional")
        "parameters": {"labels": list(info.labels), "runtime": info.runtime,
                       "optional_outputs": list(HAND_OUTPUTS)},
    }


def server_metadata() -> dict[str, Any]:
    return {"name": "imgclf", "version": server_version(), "extensions": list(EXTENSIONS)}


def statistics(core: ServingCore, model: str | None, ver: int | None) -> list[dict[str, Any]]:
    """Triton's statistics extension: request outcomes and images per model version."""
    names = [model] if model is not None else core.models()
    out = []
    for name in names:
        versions = core.available_versions(name)
        if ver is not None:
            core.model_info(name, ver)  # 404 for a version that is not available
            versions = [ver]
        for v in versions:
            s = core.stats.get((name, v), InferStats())
            out.append({
                "name": name, "version": str(v), "last_inference": s.last_inference_ms,
                "inference_count": s.inference_count,
                "inference_stats": {"success": {"count": s.success_count, "ns": s.success_ns},
                                    "fail": {"count": s.fail_count, "ns": s.fail_ns}},
            })
    return out


def repository_index(core: ServingCore, only_ready: bool) -> list[dict[str, Any]]:
    """Triton's repository index: every version seen, with its state and, for a failed one, why."""
    out = []
    for name in core.models():
        for s in core.statuses(name, allow_empty=True):
            if only_ready and s.state != "AVAILABLE":
                continue
            out.append({"name": name, "version": str(s.version),
                        "state": "READY" if s.state == "AVAILABLE" else s.state,
                        "reason": s.error or ""})
    return out
