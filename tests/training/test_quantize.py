"""The LiteRT models: float and int8, exported by every training run with their measured accuracy, and added to
old versions."""

from __future__ import annotations

import json
import shutil

import numpy as np
import tensorflow as tf

from training.data import load_synthetic
from training.quantize import convert_float, pixels_of, quantize_version
from version_format.layout import CARD_FILE, INT8_FILE, TFLITE_FILE
from version_format.litert import LiteRTScorer, xnnpack_took


def test_training_writes_the_int8_model_and_its_accuracy(trained_result):
    path = trained_result.path
    card = json.loads((path / CARD_FILE).read_text())
    record = card["int8"]
    model = (path / INT8_FILE).read_bytes()
    assert record["bytes"] == len(model) and record["file"] == INT8_FILE
    # fp32 was measured on the same validation images as the card's own figure
    assert record["fp32_accuracy"]["validation"] == card["val_accuracy"]
    drop = round((record["fp32_accuracy"]["validation"] - record["int8_accuracy"]["validation"]) * 100, 2)
    assert record["drop_points"]["validation"] == drop == record["max_drop_points"]
    assert trained_result.int8 == record
    assert LiteRTScorer(model).xnnpack  # XNNPACK takes the int8 graph


def test_int8_scores_follow_the_savedmodel(trained_result):
    path = trained_result.path
    fp32 = tf.saved_model.load(str(path))
    pixels = np.concatenate(pixels_of(load_synthetic(4, seed=77).images))
    expected = fp32.signatures["serving_pixels"](pixels=tf.constant(pixels))["scores"].numpy()
    got = LiteRTScorer((path / INT8_FILE).read_bytes())(pixels)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 0.08  # int8 steps of the softmax output, not another model


def test_training_writes_the_float_model_and_its_agreement(trained_result):
    path = trained_result.path
    card = json.loads((path / CARD_FILE).read_text())
    record = card["float"]
    model = (path / TFLITE_FILE).read_bytes()
    assert record["bytes"] == len(model) and record["file"] == TFLITE_FILE and trained_result.float == record
    # measured on the same validation images as the card's own figure, and the same answers
    assert record["savedmodel_accuracy"]["validation"] == card["val_accuracy"] == record["float_accuracy"]["validation"]
    assert record["top1_agreement"] == {"validation": 1.0}
    assert record["images"] == {"validation": sum(map(sum, card["confusion_matrix"]))}
    assert 0 <= record["max_score_difference"] < 1e-4 and record["convert_seconds"] > 0
    # the float file holds the weights once, in float32, and a little graph (no optimizer, no second copy)
    weights = sum(f.stat().st_size for f in (path / "variables").iterdir())
    assert len(model) < 1.1 * weights + 100_000


def test_float_scores_follow_the_savedmodel(trained_result):
    path = trained_result.path
    fp32 = tf.saved_model.load(str(path))
    pixels = np.concatenate(pixels_of(load_synthetic(4, seed=77).images))
    expected = fp32.signatures["serving_pixels"](pixels=tf.constant(pixels))["scores"].numpy()
    got = LiteRTScorer((path / TFLITE_FILE).read_bytes())(pixels)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def _older_version(trained_result, tmp_path):
    """A copy of the tiny version as exported before the LiteRT models: neither file, neither card entry."""
    version = tmp_path / "rps" / "1"
    shutil.copytree(trained_result.path, version)
    (version / INT8_FILE).unlink()
    (version / TFLITE_FILE).unlink()
    card = json.loads((version / CARD_FILE).read_text())
    del card["int8"], card["float"]
    (version / CARD_FILE).write_text(json.dumps(card))
    return version, card


def test_quantize_adds_both_models_to_an_existing_version(trained_result, tmp_path):
    version, card = _older_version(trained_result, tmp_path)

    records = quantize_version(version, data="synthetic", per_class=6)

    record, floats = records["int8"], records["float"]
    assert (version / INT8_FILE).stat().st_size == record["bytes"]
    assert (version / TFLITE_FILE).stat().st_size == floats["bytes"]
    saved = json.loads((version / CARD_FILE).read_text())
    assert saved["int8"] == record and saved["float"] == floats and saved["val_accuracy"] == card["val_accuracy"]
    assert set(record["fp32_accuracy"]) == set(floats["top1_agreement"]) == {"validation"}
    assert "18 fresh synthetic" in record["measured_on"]["validation"] == floats["measured_on"]["validation"]
    assert floats["images"] == {"validation": 18} and floats["top1_agreement"]["validation"] == 1.0
    assert floats["float_accuracy"] == floats["savedmodel_accuracy"] == record["fp32_accuracy"]
    assert floats["max_score_difference"] < 1e-4 and "imgclf quantize" in floats["added"]
    assert not [p for p in version.rglob(".tmp-*")]  # written beside, then renamed


def test_quantize_no_int8_adds_the_float_model_and_keeps_the_int8_one(trained_result, tmp_path):
    version = tmp_path / "rps" / "1"
    shutil.copytree(trained_result.path, version)
    (version / TFLITE_FILE).unlink()
    int8_before = (version / INT8_FILE).read_bytes()
    card = json.loads((version / CARD_FILE).read_text())

    records = quantize_version(version, data="synthetic", per_class=4, int8=False)

    assert set(records) == {"float"} and (version / TFLITE_FILE).stat().st_size == records["float"]["bytes"]
    assert (version / INT8_FILE).read_bytes() == int8_before
    saved = json.loads((version / CARD_FILE).read_text())
    assert saved["int8"] == card["int8"] and saved["float"] == records["float"] != card["float"]


def test_imgclf_quantize_command(trained_result, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    version = tmp_path / "rps" / "1"
    shutil.copytree(trained_result.path, version)
    card = json.loads((version / CARD_FILE).read_text())
    card["data_source"] = str(tmp_path / "gone")  # the training folder is not on this machine
    (version / CARD_FILE).write_text(json.dumps(card))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "COLUMNS": "200", "NO_COLOR": "1"}
    imgclf = str(Path(sys.executable).parent / "imgclf")

    refused = subprocess.run([imgclf, "quantize", str(version)], env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "pass --data FOLDER" in refused.stderr, refused.stderr

    done = subprocess.run([imgclf, "quantize", str(version), "--data", "synthetic", "--samples-per-class", "4"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    saved = json.loads((version / CARD_FILE).read_text())
    assert f"max_drop_points={saved['int8']['max_drop_points']}" in done.stdout
    assert f"top1_agreement={saved['float']['top1_agreement']}" in done.stdout
    assert "validation" in done.stderr and "fp32" in done.stderr  # the side-by-side tables
    assert "top-1 agreement" in done.stderr and "SavedModel" in done.stderr


def test_the_private_litert_call_behind_xnnpack_took_still_answers():
    # ai-edge-litert has no public list of a graph's nodes (checked: 2.3.0); this fails if the private
    # one goes away or stops naming the delegate, with either answer
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    model = convert_float(lambda x: tf.nn.softmax(tf.reduce_mean(x, axis=[1, 2])))
    with_xnnpack = Interpreter(model_content=model)
    without = Interpreter(model_content=model,
                          experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    for interpreter in (with_xnnpack, without):
        interpreter.allocate_tensors()
    assert xnnpack_took(with_xnnpack) and not xnnpack_took(without)
