"""The shipped model files: exactly the ones from the mediapipe 0.10.21 wheel, with their licence and notice,
and shipped as package data."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

from hands.runtime import LANDMARK_FILE, MODELS, PALM_FILE, SHA256

ROOT = Path(__file__).resolve().parents[2]


def test_files_are_the_wheels_own():
    expected = {PALM_FILE.name: ("1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54", 2_339_846),
                LANDMARK_FILE.name: ("11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3", 5_478_917)}
    notice = (MODELS / "NOTICE").read_text()
    for path in (PALM_FILE, LANDMARK_FILE):
        digest, size = expected[path.name]
        blob = path.read_bytes()
        assert hashlib.sha256(blob).hexdigest() == digest == SHA256[path.name]
        assert len(blob) == size
        assert digest in notice and path.name in notice
    assert "mediapipe==0.10.21" in notice


def test_licence_is_apache_2():
    text = (MODELS / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_package_data_ships_the_models():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "models/*" in config["tool"]["setuptools"]["package-data"]["hands"]
    assert any(p.startswith("hands") for p in config["tool"]["setuptools"]["packages"]["find"]["include"])
