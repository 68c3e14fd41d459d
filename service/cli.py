"""The `imgclf` command: train, evaluate, serve, predict."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from training.cli import evaluate_command, train_command

# TensorFlow's C++ start-up chatter hides the lines a user needs; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train the rock-paper-scissors CNN and serve it over REST and gRPC.")
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)


@app.callback()
def _root() -> None:
    """Train the rock-paper-scissors CNN and serve it over REST and gRPC."""


@app.command()
def serve(
    model_root: Annotated[Path | None, typer.Option(help="[IMGCLF_MODEL_ROOT] Folder of <name>/<version>/")] = None,
    name: Annotated[str | None, typer.Option(help="[IMGCLF_MODEL_NAME] Model name")] = None,
    host: Annotated[str | None, typer.Option(help="[IMGCLF_HOST] Bind address")] = None,
    rest_port: Annotated[int | None, typer.Option(help="[IMGCLF_REST_PORT] REST port")] = None,
    grpc_port: Annotated[int | None, typer.Option(help="[IMGCLF_GRPC_PORT] gRPC port")] = None,
    backend: Annotated[str | None, typer.Option(help="[IMGCLF_BACKEND] local | tfserving")] = None,
    bootstrap: Annotated[bool | None, typer.Option(
        help="[IMGCLF_BOOTSTRAP] Train a first version on the embedded data when none exists")]
    = None,
) -> None:
    """Serve REST and gRPC from one process; every setting also reads IMGCLF_* variables."""
    import asyncio
    import logging

    from pydantic import ValidationError

    from service.settings import ServeSettings

    flags: dict[str, Any] = {"model_root": model_root, "model_name": name, "host": host,
                             "rest_port": rest_port, "grpc_port": grpc_port, "backend": backend,
                             "bootstrap": bootstrap}
    try:
        settings = ServeSettings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"]) or "settings"
        typer.echo(f"error: invalid setting {field} (IMGCLF_{field.upper()}): {err['msg']}",
                   err=True)
        raise typer.Exit(2) from None
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.bootstrap and settings.backend == "local":
        _bootstrap(settings.model_root, settings.model_name)
    from service.server import ImgclfServer

    try:
        asyncio.run(ImgclfServer(settings).run_until_signal())
    except OSError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _bootstrap(model_root: Path, name: str) -> None:
    from training.export import scan_versions

    if scan_versions(model_root / name):
        return
    typer.echo(f"no version under {model_root / name}: training a first one on the embedded "
               "synthetic data (about 9 minutes on 2 cores; progress below)", err=True)
    from training.train import TrainConfig, train

    result = train(TrainConfig(data="synthetic", model_root=model_root, name=name))
    typer.echo(f"wrote {result.path}: val_accuracy={result.val_accuracy:.4f}", err=True)


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files", exists=True, dir_okay=False)],
    url: Annotated[str, typer.Option(help="REST base URL")] = "http://localhost:8000",
    grpc_target: Annotated[str | None, typer.Option("--grpc", help="gRPC host:port instead of "
                                                                    "REST")] = None,
    version: Annotated[int | None, typer.Option(min=1, help="Pin a version")] = None,
    label: Annotated[str | None, typer.Option(help="Pin a version label")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait")] = 30.0,
) -> None:
    """Classify images with a running server and print a table."""
    from service.client import ClientError, classify_grpc, classify_rest, print_table

    data = [p.read_bytes() for p in images]
    try:
        if grpc_target:
            reply = classify_grpc(grpc_target, data, version=version, label=label, timeout=timeout)
        else:
            reply = classify_rest(url, data, [p.name for p in images], version=version,
                                  label=label, timeout=timeout)
    except ClientError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    print_table(reply, [str(p) for p in images])


def main() -> None:
    app(prog_name="imgclf")
