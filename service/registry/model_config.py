"""Which models to serve: the settings' one model, or TF Serving's models.config (model_config_list)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from service.settings import ServeSettings


class ConfigError(ValueError):
    """A models.config that cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class ModelSpec:
    """One served model: where its versions live, which to serve, and its version labels."""

    name: str
    base_path: Path
    policy: str = "latest"  # latest | all | specific
    latest_versions: int = 1
    specific_versions: tuple[int, ...] = ()
    labels: dict[str, int] = field(default_factory=dict, hash=False)


def from_settings(settings: ServeSettings) -> list[ModelSpec]:
    """The zero-config default: one model, `<model_root>/<model_name>`, the IMGCLF_* policy and labels."""
    return [ModelSpec(settings.model_name, settings.model_root / settings.model_name,
                      settings.version_policy, settings.latest_versions,
                      tuple(settings.specific_versions), dict(settings.version_labels))]


def parse(text: str, where: Path) -> list[ModelSpec]:
    """TF Serving's text format, read with its own protos; relative base paths are from the file."""
    from google.protobuf import text_format

    from service.grpc._generated.tensorflow_serving.config import model_server_config_pb2

    try:
        config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if config.WhichOneof("config") != "model_config_list" or not config.model_config_list.config:
        raise ConfigError(f"{where}: no model_config_list with at least one config")
    specs: list[ModelSpec] = []
    for entry in config.model_config_list.config:
        specs.append(_spec(entry, where))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: a model name appears twice: {names}")
    return specs


def _spec(entry: object, where: Path) -> ModelSpec:
    from service.settings import _LABEL, _NAME

    name, base = entry.name, entry.base_path  # type: ignore[attr-defined]
    if not _NAME.match(name):
        raise ConfigError(f"{where}: model name {name!r} may only hold letters, digits, '_', '-', '.'")
    if not base:
        raise ConfigError(f"{where}: model {name!r} has no base_path")
    platform = entry.model_platform  # type: ignore[attr-defined]
    if platform not in ("", "tensorflow"):
        raise ConfigError(f"{where}: model {name!r}: model_platform {platform!r} is not served here")
    policy = entry.model_version_policy  # type: ignore[attr-defined]
    which = policy.WhichOneof("policy_choice") or "latest"
    latest = policy.latest.num_versions or 1
    specific = tuple(sorted(policy.specific.versions))
    if which == "specific" and not specific:
        raise ConfigError(f"{where}: model {name!r}: the specific policy lists no versions")
    labels = dict(entry.version_labels)  # type: ignore[attr-defined]
    for label, version in labels.items():
        if not _LABEL.match(label) or label.isdigit() or version < 1:
            raise ConfigError(f"{where}: model {name!r}: bad version label {label!r} -> {version}")
    path = Path(base)
    return ModelSpec(name, path if path.is_absolute() else (where.parent / path).resolve(),
                     which, latest, specific, labels)


def read(path: Path) -> tuple[str, list[ModelSpec]]:
    """The file's content hash (to notice edits) and its models."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read model config {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return hashlib.sha256(data).hexdigest(), parse(text, path)
