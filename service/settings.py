"""All serving settings in one typed class (env prefix IMGCLF_), validated at start-up."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, FilePath, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_LABEL = re.compile(r"^[A-Za-z0-9_]+$")  # TF Serving's rule for version labels


def env_name(field: str) -> str:
    """The environment variable of a setting."""
    return "IMGCLF_MODEL_CONFIG" if field == "model_config_file" else f"IMGCLF_{field.upper()}"


class StartupError(ValueError):
    """Settings that are valid one by one but must not start a server: `str()` is the one line to show."""


def is_loopback(host: str) -> bool:
    """Only this machine can reach `host` (a name other than localhost may resolve anywhere)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServeSettings(BaseSettings):
    """Every knob of `imgclf serve`; each field is also `IMGCLF_<FIELD>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="IMGCLF_", extra="forbid")

    model_root: Path = Field(Path("models"), description="Folder holding <name>/<version>/")
    model_name: str = Field("rps", description="The served model's name; with IMGCLF_MODEL_CONFIG, the model "
                            "that requests without a model name get")
    model_config_file: Path | None = Field(
        None, validation_alias=AliasChoices("IMGCLF_MODEL_CONFIG", "model_config_file"),
        description="A TF Serving models.config (model_config_list: name, base_path, "
                    "model_version_policy, version_labels) of the models to serve; re-read every poll "
                    "interval, so edits apply without a restart")
    host: str = Field("0.0.0.0", description="Address both servers bind")
    rest_port: int = Field(8000, ge=0, le=65535, description="REST port (0 = any free port)")
    grpc_port: int = Field(8500, ge=0, le=65535, description="gRPC port (0 = any free port)")
    backend: Literal["local", "tfserving"] = Field("local", description="Where inference runs")
    runtime: Literal["tensorflow", "litert", "litert-float", "auto"] = Field(
        "tensorflow", description="What runs a local version: tensorflow (the SavedModel, decoding in its "
        "graph), litert (the version's int8 model on LiteRT with XNNPACK, decoding in Pillow; a version "
        "without one fails to load), litert-float (the version's float LiteRT model, or for a version "
        "without one its SavedModel converted at load, decoding in Pillow: the SavedModel's accuracy, and model "
        "calls faster than int8's on CPUs without VNNI), or auto "
        "(litert where the int8 model's measured accuracy drop in the card is within "
        "IMGCLF_INT8_MAX_DROP_POINTS, else litert-float, or tensorflow for a SavedModel LiteRT cannot take)")
    int8_max_drop_points: float = Field(
        0.5, ge=0, le=100, description="auto: the largest top-1 drop (percentage points, worst measured "
        "set in the card) that still serves the int8 model")
    litert_threads: int = Field(
        1, ge=1, le=64, description="Threads of each LiteRT interpreter (one interpreter per inference "
        "thread)")
    decode_threads: int = Field(
        2, ge=1, le=64, description="litert: threads decoding and resizing images, beside the model calls")
    hands: Literal["auto", "on", "off"] = Field(
        "auto", description="The hand stage in front of the classifier (palm detection and 21 landmarks, in the "
        "decode threads): auto runs it for versions with a pose classifier, which then answers wherever a hand "
        "is found (the CNN where none is); on runs it for every version (the hand is reported, the pose "
        "classifier answers where the version has one); off never runs it")
    hands_budget_ms: float = Field(
        30.0, gt=0, le=1000, description="The hand stage's time per picture: a retry for a close-up (a padded "
        "or turned view) starts only if it can end within it")
    gil_switch_interval_ms: float = Field(
        0.5, gt=0, le=100, description="Python's thread switch interval: how long a thread back from "
        "a model or decode call may wait for the interpreter lock (Python's default is 5)")
    tfserving_target: str = Field("localhost:8500", description="TF Serving gRPC host:port")
    tfserving_timeout_s: float = Field(10.0, gt=0, description="Deadline of one TF Serving call")
    tfserving_retries: int = Field(3, ge=0, le=10, description="Retries on UNAVAILABLE")
    version_policy: Literal["latest", "all", "specific"] = Field(
        "latest", description="Which versions to serve")
    latest_versions: int = Field(1, ge=1, description="N for the `latest` policy")
    specific_versions: Annotated[list[int], NoDecode] = Field(
        default_factory=list, validate_default=True,
        description="Versions for the `specific` policy, e.g. 1,3")
    version_labels: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict, description="Labels for versions, e.g. stable=1,canary=2")
    poll_interval_s: float = Field(2.0, gt=0, description="How often the model folder is scanned")
    warmup_requests: int = Field(3, ge=0, description="Inference calls before a version is ready")
    max_batch_size: int = Field(32, ge=1, le=1024, description="Images per model call")
    litert_max_batch_size: int = Field(
        8, ge=1, le=1024, description="Images per model call on the litert runtime (IMGCLF_MAX_BATCH_SIZE "
        "caps it too): XNNPACK scores an image about as fast alone as in a batch, so shorter calls cut the wait "
        "of the requests behind them (p99 at c=32), at some throughput when far more clients than that wait")
    max_batch_delay_ms: float = Field(
        5.0, ge=0, le=1000, description="Longest wait for a batch to fill")
    max_queue_size: int = Field(
        128, ge=1, description="Queued images per version before requests get 429 (bounds the wait: "
        "~0.5 s at full speed on 2 cores); it also bounds the REST classify requests in progress per "
        "version, counted from their head")
    request_timeout_s: float = Field(30.0, gt=0, description="Per-request deadline")
    inference_threads: int = Field(
        2, ge=1, le=64, description="Threads running model calls (batches in flight)")
    inference_nice: int = Field(
        10, ge=0, le=19, description="How much lower the CPU priority of the model's threads (runtime pools, "
        "inference and loading) is than that of the threads answering requests (0: the same), so a busy "
        "model never delays reading or refusing a request")
    max_body_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="Largest accepted request body (413 above)")
    max_image_pixels: int = Field(
        16_000_000, ge=1, description="Largest width x height accepted (decompression bombs; a 16 MP "
        "image takes ~200 MB while it is decoded)")
    min_image_side: int = Field(8, ge=1, description="Smallest accepted width or height")
    max_images_per_request: int = Field(64, ge=1, description="Images in one request")
    max_request_pixels: int = Field(
        64_000_000, ge=1, description="Sum of width x height over one request's images (413 above)")
    max_batch_pixels: int = Field(
        16_000_000, ge=1, description="Pixels decoded in one model call, which bounds its memory "
        "(~12 bytes a pixel; one image over it runs alone)")
    max_header_bytes: int = Field(
        65536, ge=1024, description="Largest request line plus headers (431 above)")
    read_timeout_s: float = Field(
        10.0, gt=0, description="Time to send the headers, and longest pause inside a body (408)")
    grpc_max_message_bytes: int = Field(
        64 * 1024 * 1024, ge=4 * 1024 * 1024, description="gRPC send/receive message limit")
    shutdown_grace_s: float = Field(20.0, ge=0, description="Time in-flight requests get on SIGTERM")
    bootstrap: bool = Field(
        True, description="Install the demo version shipped with imgclf as version 1 when the model has "
        "no version (local backend, writable model root)")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Comma-separated API keys (several for rotation); when set, "
        "REST needs `Authorization: Bearer <key>` or `X-API-Key`, gRPC the same metadata")
    auth_exempt_paths: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["/healthz", "/readyz", "/v2/health/", "/metrics", "/grpc.health.v1.Health/",
                                 "/inference.GRPCInferenceService/ServerLive",
                                 "/inference.GRPCInferenceService/ServerReady"],
        description="REST paths and gRPC methods open without a key (the health checks of both transports and "
        "/metrics); a trailing / matches a prefix (but `/` alone is the page's path only)")
    auth_exempt_reflection: bool = Field(
        False, description="gRPC server reflection answers without a key, so grpcurl can list and describe "
        "the services without one; off by default, as it reveals the API's shape")
    tls_cert_file: FilePath | None = Field(None, description="PEM certificate (chain): REST and gRPC use TLS")
    tls_key_file: FilePath | None = Field(
        None, validate_default=True, description="PEM private key of that certificate")
    tls_client_ca_file: FilePath | None = Field(
        None, validate_default=True,
        description="PEM CA bundle: clients must present a certificate it signed (mutual TLS)")
    teach: bool = Field(
        False, description="Serve the teach endpoints (examples, fine-tune jobs, rollback) and the page's Teach "
        "tab; they need an API key when IMGCLF_API_KEYS is set")
    unsafe_open_teach: bool = Field(
        False, description="Start with the teach endpoints on a non-loopback IMGCLF_HOST and no IMGCLF_API_KEYS, "
        "open to anyone who reaches the port (otherwise the server refuses to start that way)")
    data_root: Path = Field(Path("data"), description="Folder holding <name>/examples/<label>/ (taught examples) "
                            "and <name>/jobs/ (fine-tune job records)")
    teach_max_example_bytes: int = Field(
        2 * 1024 * 1024, ge=1024, description="Largest taught example (413 above)")
    teach_max_examples_per_label: int = Field(
        200, ge=2, description="Taught examples kept per label (413 past it)")
    teach_base_data: str = Field(
        "synthetic", description="Base data mixed into fine-tunes and sliced for the gate's reference set: "
        "synthetic, or a folder of class folders")
    teach_job_threads: int = Field(
        1, ge=0, le=64, description="TensorFlow threads of a fine-tune job (0: one per core); the job also runs "
        "at a lower priority (nice 10)")
    teach_epochs: int = Field(40, ge=1, le=1000, description="Passes of a fine-tune's classifier layer")
    gate_tolerance_points: float = Field(
        1.0, ge=0, le=100, description="A new version is promoted only if its reference accuracy drops by at most "
        "this many points (a fine-tune's held-back examples must improve too)")
    gate_reference: Path | None = Field(
        None, description="A folder of label folders: every new version that would become the default is scored on "
        "it against the serving one after its warm-up, and never takes traffic if it loses more than "
        "IMGCLF_GATE_TOLERANCE_POINTS")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level")
    log_format: Literal["text", "json"] = Field(
        "text", description="text, or json: JSON lines, with one line per request (model, version, status, "
                            "latency, batch size, request id)")

    @field_validator("model_name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"model name {v!r} may only hold letters, digits, '_', '-', '.'")
        return v

    @field_validator("api_keys", "auth_exempt_paths", mode="before")
    @classmethod
    def _parse_list(cls, v: object) -> object:
        if isinstance(v, str):
            return [x.strip() for x in v.split(",") if x.strip()]
        return v

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, v: list[SecretStr]) -> list[SecretStr]:
        if any(len(k.get_secret_value()) < 16 for k in v):
            raise ValueError("API keys must be at least 16 characters (e.g. `openssl rand -hex 24`)")
        return v

    @field_validator("tls_key_file", "tls_client_ca_file")
    @classmethod
    def _check_tls(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        # on these fields (validated by default), so the error names the variable to set
        cert = info.data.get("tls_cert_file")
        if info.field_name == "tls_key_file" and (cert is None) != (v is None):
            raise ValueError("TLS needs both IMGCLF_TLS_CERT_FILE and IMGCLF_TLS_KEY_FILE")
        if info.field_name == "tls_client_ca_file" and v is not None and cert is None:
            raise ValueError("mutual TLS needs IMGCLF_TLS_CERT_FILE and IMGCLF_TLS_KEY_FILE too")
        return v

    @field_validator("specific_versions", mode="before")
    @classmethod
    def _parse_versions(cls, v: object) -> object:
        if isinstance(v, str):
            return [int(x) for x in v.replace(" ", "").split(",") if x]
        return v

    @field_validator("version_labels", mode="before")
    @classmethod
    def _parse_labels(cls, v: object) -> object:
        if isinstance(v, str):
            pairs = [p.split("=", 1) for p in v.replace(" ", "").split(",") if p]
            if any(len(p) != 2 for p in pairs):
                raise ValueError("version labels look like stable=1,canary=2")
            return {k: int(n) for k, n in pairs}
        return v

    @field_validator("version_labels")
    @classmethod
    def _check_labels(cls, v: dict[str, int]) -> dict[str, int]:
        for label, version in v.items():
            if not _LABEL.match(label) or label.isdigit():
                raise ValueError(f"version label {label!r} must match [A-Za-z0-9_]+ and not be a number")
            if version < 1:
                raise ValueError(f"label {label!r} points at version {version}; versions start at 1")
        return v

    @field_validator("specific_versions")
    @classmethod
    def _check_policy(cls, v: list[int], info: ValidationInfo) -> list[int]:
        # checked on this field, not the model, so the error names IMGCLF_SPECIFIC_VERSIONS
        if info.data.get("version_policy") == "specific" and not v:
            raise ValueError("version_policy=specific needs specific_versions, e.g. 1,2")
        if any(x < 1 for x in v):
            raise ValueError(f"specific versions {v} must all be at least 1")
        return v

    def check_exposure(self) -> None:
        """Refuse teach endpoints that anyone on the network could use (raises StartupError)."""
        if self.teach and not self.api_keys and not is_loopback(self.host) and not self.unsafe_open_teach:
            raise StartupError(
                f"the teach endpoints would be open to anyone who reaches {self.host}: set IMGCLF_API_KEYS "
                "(e.g. `openssl rand -hex 24`), or IMGCLF_HOST=127.0.0.1, or IMGCLF_UNSAFE_OPEN_TEACH=true "
                "to serve them without keys anyway")

    @property
    def max_batch_delay_s(self) -> float:
        return self.max_batch_delay_ms / 1000.0
