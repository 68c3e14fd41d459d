"""ServeSettings from IMGCLF_* variables: parsing, validation, and `imgclf serve` refusing bad values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import ServeSettings

IMGCLF = Path(sys.executable).parent / "imgclf"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Only the variables a test sets count."""
    for key in list(os.environ):
        if key.startswith("IMGCLF_"):
            monkeypatch.delenv(key)


def test_defaults():
    s = ServeSettings()
    assert (s.rest_port, s.grpc_port, s.model_name, s.backend) == (8000, 8500, "rps", "local")
    assert s.version_policy == "latest" and s.specific_versions == [] and s.version_labels == {}
    assert s.grpc_max_message_bytes == 64 * 1024 * 1024
    assert s.max_batch_delay_s == pytest.approx(0.005)


def test_environment_is_parsed(monkeypatch, tmp_path):
    env = {"IMGCLF_MODEL_ROOT": str(tmp_path), "IMGCLF_MODEL_NAME": "hands.v2", "IMGCLF_REST_PORT": "9001",
           "IMGCLF_GRPC_PORT": "0", "IMGCLF_VERSION_POLICY": "specific", "IMGCLF_SPECIFIC_VERSIONS": "1, 3",
           "IMGCLF_VERSION_LABELS": "stable=1, canary=3", "IMGCLF_MAX_BATCH_DELAY_MS": "2.5",
           "IMGCLF_BOOTSTRAP": "true", "IMGCLF_BACKEND": "tfserving", "IMGCLF_LOG_LEVEL": "warning"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = ServeSettings()
    assert s.model_root == tmp_path and s.model_name == "hands.v2"
    assert (s.rest_port, s.grpc_port) == (9001, 0)
    assert s.version_policy == "specific" and s.specific_versions == [1, 3]
    assert s.version_labels == {"stable": 1, "canary": 3}
    assert s.max_batch_delay_s == pytest.approx(0.0025)
    assert s.bootstrap is True and s.backend == "tfserving" and s.log_level == "warning"


def test_arguments_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("IMGCLF_REST_PORT", "9001")
    assert ServeSettings(rest_port=9002).rest_port == 9002


def test_strings_parse_as_arguments_too():
    s = ServeSettings(version_labels="stable=2", specific_versions="2", version_policy="specific")
    assert s.version_labels == {"stable": 2} and s.specific_versions == [2]
    assert ServeSettings(version_labels="").version_labels == {}


@pytest.mark.parametrize(("var", "value", "fragment"), [
    ("IMGCLF_REST_PORT", "abc", "integer"),
    ("IMGCLF_REST_PORT", "70000", "65535"),
    ("IMGCLF_GRPC_PORT", "-1", "0"),
    ("IMGCLF_VERSION_LABELS", "stable", "stable=1"),
    ("IMGCLF_VERSION_LABELS", "stable=one", "int"),
    ("IMGCLF_VERSION_LABELS", "1=1", "not be a number"),
    ("IMGCLF_VERSION_LABELS", "can-ary=2", "A-Za-z0-9_"),
    ("IMGCLF_VERSION_LABELS", "stable=0", "start at 1"),
    ("IMGCLF_SPECIFIC_VERSIONS", "1,x", "int"),
    ("IMGCLF_SPECIFIC_VERSIONS", "0", "at least 1"),
    ("IMGCLF_VERSION_POLICY", "newest", "latest"),
    ("IMGCLF_BACKEND", "onnx", "tfserving"),
    ("IMGCLF_MODEL_NAME", "../etc", "letters"),
    ("IMGCLF_MODEL_NAME", "a/b", "letters"),
    ("IMGCLF_MAX_BATCH_SIZE", "0", "greater than or equal to 1"),
    ("IMGCLF_GRPC_MAX_MESSAGE_BYTES", "1000", "4194304"),
    ("IMGCLF_MAX_BODY_BYTES", "10", "1024"),
    ("IMGCLF_POLL_INTERVAL_S", "0", "greater than 0"),
    ("IMGCLF_LOG_LEVEL", "loud", "debug"),
])
def test_bad_values_raise(monkeypatch, var, value, fragment):
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError) as info:
        ServeSettings()
    (error,) = info.value.errors()
    assert error["loc"] == (var.removeprefix("IMGCLF_").lower(),)
    assert fragment in str(info.value)


def test_specific_policy_needs_versions(monkeypatch):
    monkeypatch.setenv("IMGCLF_VERSION_POLICY", "specific")
    with pytest.raises(ValidationError) as info:
        ServeSettings()
    assert info.value.errors()[0]["loc"] == ("specific_versions",)
    assert "needs specific_versions" in str(info.value)


def test_unknown_setting_is_refused():
    with pytest.raises(ValidationError):
        ServeSettings(rest_prot=1)  # type: ignore[call-arg]


def _serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IMGCLF_")}
    # a valid model root and free ports: if validation wrongly passed, the server would start (and time out)
    full = {**clean, "IMGCLF_MODEL_ROOT": str(tmp_path), "IMGCLF_GRPC_PORT": "0", **env}
    return subprocess.run([str(IMGCLF), "serve"], capture_output=True, text=True, timeout=60, env=full)


@pytest.mark.parametrize(("var", "value"), [("IMGCLF_REST_PORT", "abc"),
                                            ("IMGCLF_VERSION_LABELS", "stable"),
                                            ("IMGCLF_MAX_BATCH_SIZE", "-3")])
def test_serve_refuses_a_bad_variable_in_one_line(tmp_path, var, value):
    extra = {} if var == "IMGCLF_REST_PORT" else {"IMGCLF_REST_PORT": "0"}
    proc = _serve(tmp_path, **{var: value}, **extra)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and var in lines[0]


def test_serve_names_the_variable_a_cross_check_needs(tmp_path):
    proc = _serve(tmp_path, IMGCLF_REST_PORT="0", IMGCLF_VERSION_POLICY="specific")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "IMGCLF_SPECIFIC_VERSIONS" in lines[0], proc.stderr
