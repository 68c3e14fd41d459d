"""In-process backend: version folders on the local file system, each served by the runtime IMGCLF_RUNTIME
chooses: TensorFlow (tensorflow_runtime.py) or LiteRT, int8 or float (litert.py). TensorFlow is imported
only when a version is served on it: a LiteRT server never loads it."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from service.backends.litert import LiteRTRuntime, Precision, int8_gate
from service.backends.pose import local_pose
from service.backends.version_files import read_signature_defs, read_warmup_images
from version_format.card import read_card
from version_format.layout import INT8_FILE, TFLITE_FILE, scan_versions

if TYPE_CHECKING:
    from service.backends.tensorflow_runtime import TensorFlowRuntime

log = logging.getLogger(__name__)
# the runtimes that read each LiteRT file of a version
_READS = {"int8": ("litert", "auto"), "float": ("litert-float", "auto")}


def _tensorflow_runtime(name: str, version: int, path: Path, reason: str) -> TensorFlowRuntime:
    if importlib.util.find_spec("tensorflow") is None:  # the serve image: this version fails, the others serve
        raise ValueError(f"{path}: {reason}: the tensorflow runtime needs TensorFlow, which this install leaves "
                         "out; serve it with the imgclf:full image")
    from service.backends.tensorflow_runtime import TensorFlowRuntime  # imports TensorFlow: only when asked

    return TensorFlowRuntime(name, version, path, reason)


class LocalBackend:
    """Reads `<base path>/<int>/` from the local file system; a model's base path defaults to
    `<model_root>/<name>` and comes from models.config when one is used."""

    kind = "local"

    def __init__(self, model_root: Path, *, runtime: str = "tensorflow", int8_max_drop_points: float = 0.5,
                 litert_threads: int = 1, litert_max_batch_size: int | None = None):
        self.model_root = Path(model_root)
        self.base_paths: dict[str, Path] = {}
        self.runtime = runtime
        self.int8_max_drop_points = int8_max_drop_points
        self.litert_threads = litert_threads
        # int8 on XNNPACK gains nothing from big batches; they only make the requests behind them wait
        # (c=32: p99 76 ms at 8 images a call against 90-99 ms at 32, for the same throughput)
        self.litert_max_batch_size = litert_max_batch_size

    unreachable: str | None = None  # files are always there to look at

    def base_path(self, name: str) -> Path:
        return self.base_paths.get(name, self.model_root / name)

    def set_base_path(self, name: str, path: Path) -> None:
        self.base_paths[name] = Path(path)

    def close(self) -> None:
        """Nothing held between versions: each runtime is closed by the registry."""

    def discover(self, name: str) -> dict[int, str]:
        base = self.base_path(name)
        found = {}
        for version in scan_versions(base):
            pb = base / str(version) / "saved_model.pb"
            try:
                st = pb.stat()
                found[version] = f"{st.st_mtime_ns}:{st.st_size}"
            except FileNotFoundError:
                found[version] = "missing saved_model.pb"
                continue
            # a LiteRT model added later (imgclf quantize) reloads the version on the runtimes that read it
            for kind, file in (("int8", INT8_FILE), ("float", TFLITE_FILE)):
                if self.runtime in _READS[kind]:
                    try:
                        st = (base / str(version) / file).stat()
                        found[version] += f"+{kind}:{st.st_mtime_ns}:{st.st_size}"
                    except FileNotFoundError:
                        pass
        return found

    def load(self, name: str, version: int) -> TensorFlowRuntime | LiteRTRuntime:
        path = self.base_path(name) / str(version)
        runtime = self._runtime(name, version, path)
        try:
            runtime.info.pose = local_pose(path, runtime.info.labels)
        except Exception:
            runtime.close()
            raise
        return runtime

    def _runtime(self, name: str, version: int, path: Path) -> TensorFlowRuntime | LiteRTRuntime:
        if self.runtime == "tensorflow":
            return _tensorflow_runtime(name, version, path, "IMGCLF_RUNTIME=tensorflow")
        if self.runtime == "litert-float":
            return self._litert(name, version, path, "float", "the float LiteRT model")
        card = read_card(path)
        ok, why = int8_gate(card, (path / INT8_FILE).exists(), self.int8_max_drop_points)
        if self.runtime == "auto" and not ok:
            return self._auto_float(name, version, path, why)
        return self._litert(name, version, path, "int8", why)

    def _auto_float(self, name: str, version: int, path: Path, why: str) -> TensorFlowRuntime | LiteRTRuntime:
        """`auto` without an int8 model it may serve: the SavedModel in float on LiteRT (its own accuracy,
        with LiteRT's calls and decoding beside the model), or on TensorFlow when it cannot be converted."""
        try:
            return self._litert(name, version, path, "float", f"{why}; the float LiteRT model instead")
        except Exception as exc:  # no serving_pixels signature, an op LiteRT lacks: TensorFlow still can
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.info("version %d of %s: not served on LiteRT (%s); TensorFlow answers", version, name, reason)
            return _tensorflow_runtime(name, version, path, f"IMGCLF_RUNTIME=auto: {why}; not convertible to LiteRT "
                                                   f"({reason})")

    def _litert(self, name: str, version: int, path: Path, precision: Precision, why: str) -> LiteRTRuntime:
        if not (path / "saved_model.pb").exists():  # the same version layout, whichever runtime answers
            raise ValueError(f"{path} has no saved_model.pb")
        return LiteRTRuntime(name, version, path, threads=self.litert_threads,
                             max_batch_size=self.litert_max_batch_size, precision=precision,
                             reason=f"IMGCLF_RUNTIME={self.runtime}: {why}",
                             signature_defs=read_signature_defs(path), warmup_images=read_warmup_images(path))
