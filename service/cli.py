"""The `imgclf` command: train, evaluate, serve, predict."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from service.quiet import quiet_start
from training.cli import evaluate_command, quantize_command, train_command, use_onednn

if TYPE_CHECKING:
    from service.settings import ServeSettings

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train the rock-paper-scissors CNN and serve it over REST and gRPC.")
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
app.command("quantize")(quantize_command)


def _print_version(value: bool) -> None:
    if value:
        from service.v2 import server_version

        typer.echo(f"imgclf {server_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit")] = False,
) -> None:
    """Train the rock-paper-scissors CNN and serve it over REST and gRPC."""
    if ctx.invoked_subcommand != "serve":  # serve goes quieter still (service/quiet.py)
        # TensorFlow's C++ start-up chatter hides the lines a user needs; errors still show
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@app.command()
def serve(
    model_root: Annotated[Path | None, typer.Option(help="[IMGCLF_MODEL_ROOT] Folder of <name>/<version>/")] = None,
    name: Annotated[str | None, typer.Option(help="[IMGCLF_MODEL_NAME] Model name")] = None,
    host: Annotated[str | None, typer.Option(help="[IMGCLF_HOST] Bind address")] = None,
    rest_port: Annotated[int | None, typer.Option(help="[IMGCLF_REST_PORT] REST port")] = None,
    grpc_port: Annotated[int | None, typer.Option(help="[IMGCLF_GRPC_PORT] gRPC port")] = None,
    backend: Annotated[str | None, typer.Option(help="[IMGCLF_BACKEND] local | tfserving")] = None,
    runtime: Annotated[str | None, typer.Option(
        help="[IMGCLF_RUNTIME] tensorflow | litert | litert-float | auto")] = None,
    bootstrap: Annotated[bool | None, typer.Option(
        "--bootstrap/--no-bootstrap",
        help="[IMGCLF_BOOTSTRAP] Install the shipped demo version when the model has none (default on)")]
    = None,
) -> None:
    """Serve REST and gRPC from one process; every setting also reads IMGCLF_* variables."""
    use_onednn()
    quiet_start()
    from pydantic import ValidationError

    from service.settings import ServeSettings, StartupError, env_name

    flags: dict[str, Any] = {"model_root": model_root, "model_name": name, "host": host,
                             "rest_port": rest_port, "grpc_port": grpc_port, "backend": backend,
                             "runtime": runtime, "bootstrap": bootstrap}
    try:
        settings = ServeSettings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"]) or "settings"
        typer.echo(f"error: invalid setting {field} ({env_name(field)}): {err['msg']}", err=True)
        raise typer.Exit(2) from None
    try:  # before the model is installed or TensorFlow starts: a refusal takes no time
        settings.check_exposure()
        _check_tensorflow(settings)
        from service.tls import load_tls

        load_tls(settings)
    except StartupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    from service import heap, request_log

    heap.tune_malloc()  # before TensorFlow starts its threads and allocates
    request_log.configure(settings.log_level, settings.log_format)
    if settings.bootstrap and settings.backend == "local" and settings.model_config_file is None:
        _bootstrap(settings.model_root, settings.model_name)
    from service.registry.model_config import ConfigError
    from service.server import ImgclfServer

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(ImgclfServer(settings).run_until_signal())
    except ConfigError as exc:
        typer.echo(f"error: {env_name('model_config_file')}: {exc}", err=True)
        raise typer.Exit(2) from None
    except StartupError as exc:  # a TLS file changed since the check above
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _check_tensorflow(settings: ServeSettings) -> None:
    """The serve image (and a pip install without the train extra) leaves TensorFlow out: a setting that
    needs it is refused at start in one line naming the image that has it."""
    from service.settings import StartupError

    if settings.backend == "tfserving":
        needs, instead = "IMGCLF_BACKEND=tfserving (the TF Serving backend)", "IMGCLF_BACKEND=local"
    elif settings.runtime == "tensorflow":
        needs, instead = "IMGCLF_RUNTIME=tensorflow (the tensorflow runtime)", "IMGCLF_RUNTIME=litert"
    else:
        return
    if importlib.util.find_spec("tensorflow") is None:
        raise StartupError(f"{needs} needs TensorFlow, which this install leaves out: use the imgclf:full image "
                           f"(or `pip install imgclf[train]`), or {instead} here")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (it comes with uvicorn[standard]): every request's parsing, routing
    and socket writes run on this one loop, and uvloop's are several times cheaper."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _bootstrap(model_root: Path, name: str) -> None:
    """Install the shipped demo version when there is none: ready in seconds, no network, no training."""
    from service.demo import DemoError, install_demo

    try:
        path = install_demo(model_root, name)
    except DemoError as exc:
        typer.echo(f"warning: no demo version installed: {exc}", err=True)
        return
    if path is not None:
        typer.echo(f"no version under {model_root / name}: installed the demo version shipped with imgclf "
                   f"as {path} (train your own with `imgclf train`; the server swaps it in)", err=True)


@app.command()
def demo(
    model_root: Annotated[Path, typer.Option(help="Versions live in MODEL_ROOT/NAME/N/")] = Path("models"),
    name: Annotated[str, typer.Option(help="Model name")] = "rps",
) -> None:
    """Install the demo version shipped with imgclf as version 1 when NAME has no version."""
    from service.demo import DemoError, install_demo

    try:
        path = install_demo(model_root, name)
    except DemoError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"installed {path}" if path else f"{model_root / name} already has a version; nothing to do")


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files", exists=True, dir_okay=False)],
    url: Annotated[str, typer.Option(help="REST base URL")] = "http://localhost:8000",
    grpc_target: Annotated[str | None, typer.Option("--grpc", help="gRPC host:port instead of "
                                                                    "REST")] = None,
    version: Annotated[int | None, typer.Option(min=1, help="Pin a version")] = None,
    label: Annotated[str | None, typer.Option(help="Pin a version label")] = None,
    model: Annotated[str | None, typer.Option(help="Model name (default: the server's default model)")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait")] = 30.0,
) -> None:
    """Classify images with a running server and print a table."""
    from service.client import ClientError, classify_grpc, classify_rest, print_table

    data = [p.read_bytes() for p in images]
    try:
        if grpc_target:
            reply = classify_grpc(grpc_target, data, version=version, label=label, model=model,
                                  timeout=timeout)
        else:
            reply = classify_rest(url, data, [p.name for p in images], version=version,
                                  label=label, model=model, timeout=timeout)
    except ClientError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    print_table(reply, [str(p) for p in images])


def main() -> None:
    app(prog_name="imgclf")
