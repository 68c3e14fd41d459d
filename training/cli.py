"""`imgclf train` (also `python -m training`): the command-line face of the training job."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from training.finetune import FinetuneConfig

log = logging.getLogger(__name__)
console = Console(stderr=True)


def print_confusion(title: str, labels: tuple[str, ...], matrix: list[list[int]]) -> None:
    table = Table(title=title)
    table.add_column("true \\ predicted")
    for label in labels:
        table.add_column(label, justify="right")
    for label, row in zip(labels, matrix, strict=True):
        table.add_row(label, *map(str, row))
    console.print(table)


def print_int8(record: dict[str, object]) -> None:
    """fp32 and int8 top-1 side by side, per measured set."""
    table = Table(title="int8 model (assets.extra/model_int8.tflite) against fp32")
    for column in ("set", "fp32", "int8", "drop (points)", "measured on"):
        table.add_column(column)
    fp32, int8, drops, where = (record[k] for k in ("fp32_accuracy", "int8_accuracy", "drop_points", "measured_on"))
    assert isinstance(fp32, dict) and isinstance(int8, dict) and isinstance(drops, dict) and isinstance(where, dict)
    for key in fp32:
        table.add_row(key, f"{fp32[key]:.4f}", f"{int8[key]:.4f}", f"{drops[key]:+.2f}", str(where[key]))
    console.print(table)


def print_float(record: dict[str, object]) -> None:
    """The float model against the SavedModel, per measured set."""
    table = Table(title=f"float model ({record['file']}, {record['bytes']} bytes) against the SavedModel")
    for column in ("set", "SavedModel", "float", "top-1 agreement", "measured on"):
        table.add_column(column)
    fp32, lite, agree, where = (record[k] for k in ("savedmodel_accuracy", "float_accuracy", "top1_agreement",
                                                     "measured_on"))
    assert isinstance(fp32, dict) and isinstance(lite, dict) and isinstance(agree, dict) and isinstance(where, dict)
    for key in fp32:
        table.add_row(key, f"{fp32[key]:.4f}", f"{lite[key]:.4f}", f"{agree[key]:.4f}", str(where[key]))
    console.print(table)
    console.print(f"largest score difference {record['max_score_difference']}, "
                  f"converted in {record['convert_seconds']} s")


def quantize_command(
    version_dir: Annotated[Path, typer.Argument(help="An exported version, e.g. models/rps/3")],
    data: Annotated[str | None, typer.Option(help="Its training images: class folders or synthetic "
                                                  "(default: the folder its card names)")] = None,
    samples_per_class: Annotated[int | None, typer.Option(
        min=1, help="Real-like scenes per label for the accuracy check (default: as in training)")] = None,
    int8: Annotated[bool, typer.Option("--int8/--no-int8", help="Also (re)make the int8 model; --no-int8 adds the "
                                       "float one only and keeps an existing int8 model and its figures")] = True,
) -> None:
    """Add the float and int8 LiteRT models to an existing version; their accuracy against it goes into the card."""
    from training.errors import DataError
    from training.quantize import quantize_version

    try:
        records = quantize_version(version_dir, data=data, per_class=samples_per_class, int8=int8)
    except DataError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    print_float(records["float"])
    print(f"wrote {version_dir / str(records['float']['file'])}: top1_agreement={records['float']['top1_agreement']}",
          flush=True)
    if "int8" in records:
        print_int8(records["int8"])
        gate = records["int8"]
        print(f"wrote {version_dir / str(gate['file'])}: max_drop_points={gate['max_drop_points']}", flush=True)


def use_onednn() -> None:
    """TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI, BF16 or AMX. On an
    AVX2-only host they made a training step of the real-hands network 1.26x faster (156 against 197 ms for
    a batch of 32), and the fp32 serving runtime answered 1.5x the requests at 32 concurrent clients (365-419
    against 233-266 a second, wrk, alternating servers), both measured. `imgclf train` and `imgclf serve`
    call this before TensorFlow is imported; it never overrides the user's own TF_ENABLE_ONEDNN_OPTS (0
    turns them off)."""
    if "tensorflow" in sys.modules:
        log.warning("TensorFlow is already imported: TF_ENABLE_ONEDNN_OPTS stays as it was")
        return
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def train_command(
    data: Annotated[str, typer.Option(help="synthetic (embedded, no network), rps (download "
                                           "the talk's dataset) or a folder of class folders")]
    = "synthetic",
    recipe: Annotated[str, typer.Option(help="auto (real-hands for photos, rendered for synthetic) | "
                                             "real-hands | talk (the talk's exact recipe) | rendered")] = "auto",
    arch: Annotated[str | None, typer.Option(help="Network: compact | talk (default: the recipe's)")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Training epochs (default: the recipe's); exactly "
                                               "these, unless --time-budget is given too")] = None,
    time_budget: Annotated[float | None, typer.Option(min=0, help="Minutes for the whole job: after the warm-up, "
                                                      "train as many of the epochs as fit (default: the recipe's, "
                                                      "14 for real-hands; 0 for none)")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Images per step (default: the recipe's)")]
    = None,
    model_root: Annotated[Path, typer.Option(help="Versions go to MODEL_ROOT/NAME/N/")]
    = Path("models"),
    name: Annotated[str, typer.Option(help="Model name")] = "rps",
    seed: Annotated[int, typer.Option(help="Seed for data, split, augmentation and weights")] = 0,
    strategy: Annotated[str, typer.Option(help="default | mirrored (local GPUs) | multi-worker "
                                               "(TF_CONFIG)")] = "default",
    val_split: Annotated[float, typer.Option(help="Share held out for validation; 0 trains on every image "
                                                  "and exports the last epoch")] = 0.2,
    val_dir: Annotated[str | None, typer.Option(help="Validation class folders instead of a "
                                                     "split")] = None,
    samples_per_class: Annotated[int, typer.Option(min=1, help="Synthetic images per class")]
    = 1000,
    learning_rate: Annotated[float | None, typer.Option(help="Initial learning rate (default: the "
                                                             "recipe's)")] = None,
    version: Annotated[int | None, typer.Option(min=1, help="Version number (default: next "
                                                            "free)")] = None,
    tflite: Annotated[bool, typer.Option(help="Does nothing, kept for old scripts: every version carries its "
                                              "float LiteRT model (assets.extra/model.tflite)")] = False,
    int8: Annotated[bool, typer.Option("--int8/--no-int8", help="Also write the int8 LiteRT model "
                                       "(assets.extra/model_int8.tflite) and its accuracy beside fp32's")] = True,
    augment: Annotated[bool | None, typer.Option(
        "--augment/--no-augment", help="The recipe's augmentation on or off (default: the recipe's)")] = None,
    none_label: Annotated[bool | None, typer.Option(
        "--none-label/--no-none-label", help="Learn a 'none' class from scenes without a hand (default: "
                                             "the recipe's)")] = None,
    pose: Annotated[bool | None, typer.Option(
        "--pose/--no-pose", help="Also train the pose classifier on the hand stage's landmarks of the data (default: "
                                 "the recipe's: every recipe but talk)")] = None,
    runs_root: Annotated[Path | None, typer.Option(envvar="IMGCLF_RUNS_ROOT", help="Where run reports go "
                                                   "(default: MODEL_ROOT/NAME/runs)")] = None,
    if_missing: Annotated[bool, typer.Option(help="Do nothing when a version already exists")]
    = False,
    init_from: Annotated[Path | None, typer.Option(
        help="Fine-tune this version (e.g. models/rps/3) on --data (a folder of label folders, e.g. taught "
             "examples) instead of training from scratch; the quality gate's verdict goes in the card")] = None,
    base_data: Annotated[str | None, typer.Option(
        help="With --init-from: base data mixed in and sliced for the reference set (synthetic or class folders; "
             f"default: {FinetuneConfig.base_data})")] = None,
    tolerance_points: Annotated[float | None, typer.Option(
        help="With --init-from: reference accuracy may drop by at most this many points "
             f"(default: {FinetuneConfig.tolerance_points:g})")] = None,
) -> None:
    """Train a model and export it as the next version of MODEL_ROOT/NAME."""
    use_onednn()
    if init_from is not None:
        finetune_command(init_from, Path(data), model_root, name, base_data=base_data, epochs=epochs,
                         seed=seed, tolerance_points=tolerance_points, version=version)
        return
    from version_format.layout import scan_versions

    if if_missing and (found := scan_versions(model_root / name)):
        console.print(f"{model_root / name} already has version(s) {found}; nothing to train")
        return
    from training.errors import DataError, ExportError
    from training.train import TrainConfig, train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = TrainConfig(data=data, recipe=recipe, arch=arch, epochs=epochs, batch_size=batch_size,
                         model_root=model_root, name=name, seed=seed, strategy=strategy, val_split=val_split,
                         val_dir=val_dir, samples_per_class=samples_per_class, learning_rate=learning_rate,
                         version=version, int8=int8, augment=augment, none_label=none_label,
                         runs_root=runs_root, time_budget_minutes=time_budget, pose=pose)
    try:
        result = train(config)
    except (DataError, ExportError) as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)  # one line, whatever the width
        raise typer.Exit(2) from None
    except OSError as exc:  # e.g. a read-only or foreign-owned volume: one line, not a traceback
        where = f" {exc.filename}" if exc.filename else ""
        console.print(f"[red]error:[/red] cannot write{where}: {exc.strerror or exc} (uid {os.getuid()}; "
                      "mount a volume this user may write, or pick another --model-root)", soft_wrap=True)
        raise typer.Exit(1) from None
    if result.confusion is not None:
        print_confusion(f"validation confusion matrix (version {result.version})", result.labels, result.confusion)
    reallike = ""
    if result.reallike_accuracy is not None and result.reallike_confusion is not None:
        seen = result.reallike_seen_hands
        print_confusion("real-like check (" + ("trained hands" if seen else "unseen hands") + " in unseen scenes)",
                        result.labels, result.reallike_confusion)
        reallike = f" {'reallike_seen_hands' if seen else 'reallike'}_accuracy={result.reallike_accuracy:.4f}"
    if result.float:
        print_float(result.float)
    if result.int8:
        print_int8(result.int8)
    pose_figure = ""
    if result.pose is not None:
        pose_figure = (f" pose_held_out_accuracy={result.pose['held_out_accuracy_where_found']:.4f}"
                       if result.pose["exported"] else " pose=none")
    console.print(f"run reports: {result.run_dir}")
    # the one line to grep in logs
    print(f"wrote {result.path} (version {result.version}, recipe {result.recipe}): "
          f"val_accuracy={'none' if result.val_accuracy is None else f'{result.val_accuracy:.4f}'}{reallike} "
          f"{'best_epoch' if result.val_accuracy is not None else 'epoch'}={result.best_epoch}/"
          f"{len(result.history.get('accuracy', [])) or '?'}{pose_figure} wall_time={result.seconds:.1f}s", flush=True)


def finetune_command(init_from: Path, data: Path, model_root: Path, name: str, *, base_data: str | None,
                     epochs: int | None, seed: int, tolerance_points: float | None, version: int | None) -> None:
    """`imgclf train --init-from VERSION --data EXAMPLES`: what the server's fine-tune jobs run."""
    from training.errors import DataError, ExportError, FinetuneError
    from training.finetune import finetune_config, run

    config = finetune_config(init_from, data, model_root, name, base_data=base_data, epochs=epochs, seed=seed,
                             tolerance_points=tolerance_points, version=version)
    try:
        result = run(config)
    except (FinetuneError, DataError, ExportError) as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    gate = result["gate"]
    verdict = "promoted" if gate["promoted"] else "rejected (never served)"
    print(f"wrote {result['path']} (version {result['version']}, fine-tuned from {init_from}): gate {verdict}: "
          f"{gate['reason']} wall_time={result['seconds']:.1f}s", flush=True)
    if gate.get("pose"):
        print(f"pose classifier: {gate['pose']['reason']}", flush=True)


def evaluate_command(
    model_dir: Annotated[Path, typer.Argument(help="An exported version, e.g. models/rps/3")],
    data: Annotated[str, typer.Option(help="Folder of class folders, rps-test (the talk's test "
                                           "split, downloaded on request), synthetic (a fresh set) or "
                                           "real-like (unseen CGI hands in held-out scenes, webcam-sized)")],
    seed: Annotated[int, typer.Option(help="Seed of a synthetic set (use another than training's)")] = 1,
    samples_per_class: Annotated[int, typer.Option(min=1, help="Size of a synthetic or real-like set")] = 300,
    hands: Annotated[str | None, typer.Option(help="real-like: the CGI hands (class folders; default: the "
                                                   "folder the version was trained on)")] = None,
) -> None:
    """Accuracy and confusion matrix of an exported version on held-out images."""
    from training.errors import DataError
    from training.evaluate import evaluate

    try:
        result = evaluate(model_dir, data, seed=seed, samples_per_class=samples_per_class, hands_dir=hands)
    except DataError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    print_confusion(f"confusion matrix of {model_dir} on {data}", result.labels, result.confusion)
    print(f"accuracy={result.accuracy:.4f} on {result.images} images ({result.skipped} unreadable skipped)")


def main() -> None:
    app = typer.Typer(add_completion=False)
    app.command()(train_command)
    app(sys.argv[1:], prog_name="python -m training")
