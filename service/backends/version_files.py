"""What every local runtime shows of a version folder, read without TensorFlow: the TF signature defs of its
saved_model.pb and the images of its TF Serving warm-up file (a TFRecord file of PredictionLogs)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from service.grpc._generated.tensorflow.core.protobuf import saved_model_pb2
from service.grpc._generated.tensorflow_serving.apis import prediction_log_pb2
from version_format.layout import WARMUP_FILE


def read_signature_defs(path: Path) -> dict[str, Any]:
    """The version's signature defs by name, but TensorFlow's internal ones (`__saved_model_init_op`)."""
    proto = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    defs = proto.meta_graphs[0].signature_def
    return {k: defs[k] for k in defs if not k.startswith("__")}


def read_warmup_images(path: Path, limit: int = 8) -> list[bytes]:
    """The encoded images of the first `limit` warm-up records; none without a warm-up file."""
    file = path / WARMUP_FILE
    images: list[bytes] = []
    if not file.exists():
        return images
    for k, record in enumerate(read_tfrecords(file)):
        if k == limit:
            break
        entry = prediction_log_pb2.PredictionLog.FromString(record)
        images.extend(entry.predict_log.request.inputs["image_bytes"].string_val)
    return images


def read_tfrecords(file: Path) -> Iterator[bytes]:
    """The records of a TFRecord file: each is a little-endian uint64 length, the masked CRC-32C of those 8
    bytes, the data and its masked CRC-32C. ValueError for a truncated file or a CRC that does not match."""
    with file.open("rb") as f:
        while header := f.read(12):
            if len(header) < 12:
                raise ValueError(f"{file}: truncated record header")
            length_bytes, length_crc = header[:8], struct.unpack("<I", header[8:])[0]
            if _masked_crc32c(length_bytes) != length_crc:
                raise ValueError(f"{file}: corrupt record length")
            length = struct.unpack("<Q", length_bytes)[0]
            data, data_crc = f.read(length), f.read(4)
            if len(data) < length or len(data_crc) < 4:
                raise ValueError(f"{file}: truncated record")
            if _masked_crc32c(data) != struct.unpack("<I", data_crc)[0]:
                raise ValueError(f"{file}: corrupt record data")
            yield data


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # Castagnoli, reflected
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def _masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF  # TFRecord's mask
