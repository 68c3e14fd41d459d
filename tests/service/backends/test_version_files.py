"""Version files read without TensorFlow: the TFRecord reader against TensorFlow's writer, its CRC checks, and
the signature defs against TensorFlow's own reading of saved_model.pb."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.backends.version_files import read_signature_defs, read_tfrecords

tf = pytest.importorskip("tensorflow")

RECORDS = [b"", b"x", bytes(range(256)) * 40, b"\xff" * 70_000]


def write_records(path: Path) -> Path:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in RECORDS:
            writer.write(record)
    return path


def test_reads_what_tensorflow_writes(tmp_path: Path) -> None:
    assert list(read_tfrecords(write_records(tmp_path / "r"))) == RECORDS


@pytest.mark.parametrize("change, message", [
    (lambda data: data[:-3], "truncated record"),
    (lambda data: data[:5], "truncated record header"),
    (lambda data: data[:50] + b"?" + data[51:], "corrupt record data"),  # in the third record's data
    (lambda data: b"\x07" + data[1:], "corrupt record length"),
])
def test_damaged_files_are_refused(tmp_path: Path, change, message: str) -> None:
    path = write_records(tmp_path / "r")
    path.write_bytes(change(path.read_bytes()))
    with pytest.raises(ValueError, match=message):
        list(read_tfrecords(path))


def test_signature_defs_are_tensorflows(trained_model_root: Path) -> None:
    from tensorflow.core.protobuf import saved_model_pb2

    version = trained_model_root / "rps" / "1"
    theirs = saved_model_pb2.SavedModel.FromString((version / "saved_model.pb").read_bytes())
    ours = read_signature_defs(version)
    assert "serving_default" in ours and not any(name.startswith("__") for name in ours)
    for name, signature in ours.items():
        assert signature.SerializeToString() == theirs.meta_graphs[0].signature_def[name].SerializeToString()
