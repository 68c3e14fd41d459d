"""The TF Serving and TensorFlow protos vendored under proto/ (printed by scripts/vendor_tf_protos.py)
register exactly the descriptors of the locked tensorflow and tensorflow-serving-api packages, so both can
live in one process; each check runs in a process of its own, whose descriptor pool is fresh."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
GENERATED = ROOT / "service" / "grpc" / "_generated"
TOPS = ("tensorflow", "tensorflow_serving", "xla")


def vendored_modules() -> list[str]:
    return sorted(".".join(p.relative_to(ROOT).with_suffix("").parts)
                  for top in TOPS for p in (GENERATED / top).rglob("*_pb2.py"))


# argv[1]: "vendored" or "installed"; prints {proto file name: serialized descriptor (latin-1)} for every
# vendored file, read from modules of that side only
_DUMP = """
import importlib, json, sys
from google.protobuf import descriptor_pool
side, modules = sys.argv[1], json.loads(sys.argv[2])
if side == "vendored":
    names = [importlib.import_module(m).DESCRIPTOR.name for m in modules]
else:
    names = [importlib.import_module(m.removeprefix("service.grpc._generated.")).DESCRIPTOR.name
             for m in modules if not m.startswith("service.grpc._generated.xla.")]
    import tensorflow_serving.apis.prediction_service_pb2, tensorflow.core.protobuf.saved_model_pb2  # noqa
    names += [m.removeprefix("service.grpc._generated.").replace(".", "/").removesuffix("_pb2") + ".proto"
              for m in modules if m.startswith("service.grpc._generated.xla.")]
assert side == "installed" or "tensorflow" not in sys.modules, "the vendored protos imported tensorflow"
pool = descriptor_pool.Default()
print(json.dumps({n: pool.FindFileByName(n).serialized_pb.decode("latin-1") for n in names}))
"""


def dump(side: str) -> dict[str, str]:
    r = subprocess.run([sys.executable, "-c", _DUMP, side, json.dumps(vendored_modules())], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": "3",
                                                                          "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_every_vendored_descriptor_is_the_installed_one() -> None:
    vendored, installed = dump("vendored"), dump("installed")
    assert len(vendored) >= 50 and vendored.keys() == installed.keys()
    differ = sorted(name for name in vendored if vendored[name] != installed[name])
    assert not differ, f"vendored protos differ from the installed packages: {differ}"


_BOTH = """
import json, sys
modules = json.loads(sys.argv[1])
import importlib
for m in modules:
    importlib.import_module(m)
assert "tensorflow" not in sys.modules
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2
from service.grpc._generated.tensorflow_serving.apis import predict_pb2 as vendored_predict
request = vendored_predict.PredictRequest()
request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0, 2.0]))
decoded = predict_pb2.PredictRequest.FromString(request.SerializeToString())
assert tf.make_ndarray(decoded.inputs["x"]).tolist() == [1.0, 2.0]
assert prediction_log_pb2.PredictionLog().predict_log.request.model_spec.name == ""
assert model_server_config_pb2.ModelServerConfig().model_config_list.config is not None
print("ok")
"""


def test_vendored_then_real_packages_in_one_process() -> None:
    r = subprocess.run([sys.executable, "-c", _BOTH, json.dumps(vendored_modules())], cwd=ROOT,
                       capture_output=True, text=True, timeout=300,
                       env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
