"""The time budget: the plan's arithmetic, the adjustable schedule, and the callback in real fits."""

from __future__ import annotations

import json
import logging
import time
from itertools import pairwise

import keras
import numpy as np
import pytest

from training.budget import EPOCH_SLOWDOWN, AdjustableCosineDecay, TimeBudget, plan_epochs
from training.errors import DataError
from training.model import make_model
from training.recipes import RECIPES, resolve
from training.train import TrainConfig, learning_rate, train
from version_format.layout import CARD_FILE


def test_the_plan_keeps_every_epoch_that_fits():
    # 100 s spent, 10 s an epoch, 20 s after training: 840 - 100 - 20 leaves 72 epochs of room
    assert plan_epochs(budget_s=840, spent_s=100, done_epochs=2, epoch_s=10, max_epochs=55) == 55


def test_the_plan_cuts_the_epochs_to_the_budget():
    # 840 - 200 spent - 2 x 20 after = 600 s: 30 more epochs of 20 s after the 2 done
    assert plan_epochs(budget_s=840, spent_s=200, done_epochs=2, epoch_s=20, max_epochs=55) == 32


def test_the_plan_trains_one_more_epoch_when_nothing_fits():
    assert plan_epochs(budget_s=60, spent_s=100, done_epochs=2, epoch_s=20, max_epochs=55) == 3


def test_the_adjustable_schedule_is_kerass_cosine_decay():
    args = {"initial_learning_rate": 2e-4, "decay_steps": 530, "alpha": 0.05, "warmup_target": 2e-3,
            "warmup_steps": 20}
    ours, keras_own = AdjustableCosineDecay(**args), keras.optimizers.schedules.CosineDecay(**args)
    for step in (0, 10, 20, 100, 300, 549, 600):
        assert float(ours(step)) == pytest.approx(float(keras_own(step)), rel=1e-6)
    ours.set_decay_steps(280)  # the run now ends at step 300: the floor comes there, the warm-up is as it was
    assert float(ours(300)) == pytest.approx(2e-3 * 0.05, rel=1e-5)
    assert float(ours(10)) == pytest.approx(float(keras_own(10)), rel=1e-6)
    assert float(ours(160)) < float(keras_own(160))  # halfway along the shorter decay, a quarter along the long one
    assert AdjustableCosineDecay.from_config(ours.get_config()).get_config() == ours.get_config()


@pytest.mark.parametrize(("budget_s", "trained"), [(1.0, 3), (3600.0, 6)])
def test_a_real_fit_stops_where_the_budget_says(budget_s, trained, caplog):
    rng = np.random.default_rng(0)
    x = rng.random((32, 150, 150, 3), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(32) % 3]
    steps = 4  # batches of 8
    rate = AdjustableCosineDecay(2e-4, steps * 6 - steps * 2, alpha=0.05, warmup_target=2e-3, warmup_steps=steps * 2)
    model = make_model(num_classes=3, arch="compact", learning_rate=rate)
    budget = TimeBudget(budget_s=budget_s, started=time.monotonic(), max_epochs=6, schedule=rate, steps_per_epoch=steps)
    with caplog.at_level("INFO", logger="training.budget"):
        history = model.fit(x, y, batch_size=8, epochs=6, verbose=0, callbacks=[budget]).history
    assert budget.plan is not None and budget.plan.epochs == trained
    assert len(history["loss"]) == trained
    assert budget.plan.epoch_seconds == pytest.approx(budget.plan.warmup_epoch_seconds * EPOCH_SLOWDOWN)
    assert budget.plan.spent_seconds >= budget.plan.warmup_epoch_seconds > 0
    # the cosine reaches its floor at the last planned step, however many epochs were cut
    assert float(rate(steps * trained)) == pytest.approx(2e-3 * 0.05, rel=1e-4)
    assert ("too small" in caplog.text) == (trained == 3)


def test_explicit_epochs_are_exact_unless_a_budget_is_asked_for_too():
    assert RECIPES["real-hands"].time_budget_minutes == 14.0
    assert resolve("auto", "photos").time_budget_minutes == 14.0
    assert resolve("auto", "photos", epochs=30).time_budget_minutes is None
    assert resolve("auto", "photos", epochs=30, time_budget_minutes=10).time_budget_minutes == 10.0
    assert resolve("auto", "photos", time_budget_minutes=0).time_budget_minutes is None


def test_a_recipe_without_a_warm_up_takes_no_budget(tmp_path):
    assert resolve("talk", "rps").time_budget_minutes is None
    with pytest.raises(ValueError, match="warm-up and cosine"):
        resolve("talk", "rps", time_budget_minutes=10)
    config = TrainConfig(data=str(tmp_path), recipe="talk", time_budget_minutes=10, model_root=tmp_path / "m")
    with pytest.raises(DataError, match="pass --epochs instead"):
        config.validate()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("time_budget_minutes", -1.0, "--time-budget must be"),
    ("strategy", "multi-worker", "does not work with --strategy multi-worker"),
])
def test_bad_budgets_fail_with_a_clear_error(tmp_path, field, value, message):
    config = TrainConfig(data=str(tmp_path), time_budget_minutes=10, model_root=tmp_path / "m")
    setattr(config, field, value)
    with pytest.raises(DataError, match=message):
        config.validate()


def test_multi_worker_drops_the_recipes_own_budget_and_says_so_once(tmp_path, caplog):
    config = TrainConfig(data=str(tmp_path), strategy="multi-worker", model_root=tmp_path / "m")
    with caplog.at_level(logging.INFO, logger="training.train"):
        config.validate()
        recipe = config.resolved()
    assert recipe.time_budget_minutes is None and recipe.epochs == RECIPES["real-hands"].epochs
    said = [r for r in caplog.records if "no time budget under --strategy multi-worker" in r.getMessage()]
    assert len(said) == 1


def test_the_rate_a_budget_moves_is_the_recipes_rate():
    rate = learning_rate(RECIPES["real-hands"], steps_per_epoch=10)
    assert isinstance(rate, AdjustableCosineDecay)
    assert int(rate.warmup_steps) == 20 and int(rate.decay_steps.numpy()) == 10 * 55 - 20


@pytest.mark.slow
def test_a_budgeted_run_records_its_plan_in_the_card(cgi_folder, tmp_path):
    # a budget no machine meets: the warm-up's 2 epochs, then one more; the card says why it stopped at 3 of 4
    result = train(TrainConfig(data=str(cgi_folder), epochs=4, time_budget_minutes=0.01, val_split=0.0,
                               model_root=tmp_path / "models", reallike_per_class=0, int8=False))
    card = json.loads((result.path / CARD_FILE).read_text())
    assert len(result.history["accuracy"]) == 3 and card["epochs"] == 3
    assert card["time_budget"]["epochs"] == 3 and card["time_budget"]["recipe_epochs"] == 4
    assert card["time_budget"]["minutes"] == 0.0  # rounded to a tenth


def test_moving_the_decays_end_keeps_the_rate_and_ends_at_the_floor():
    rate = AdjustableCosineDecay(2e-4, 80, alpha=0.05, warmup_target=2e-3, warmup_steps=20)
    before = float(rate(40))
    rate.reschedule(40, 40)  # the run now ends at step 60 instead of 100
    assert float(rate(40)) == pytest.approx(before, rel=1e-5)  # no jump
    assert float(rate(41)) < before
    assert float(rate(60)) == pytest.approx(2e-3 * 0.05, rel=1e-4)
    assert float(rate(10)) == pytest.approx(1.1e-3, rel=1e-5)  # the warm-up is untouched


class _Clock:
    """Time that passes only as the fit's steps do."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Ticks(keras.callbacks.Callback):
    """Moves the clock by `warm_up` seconds a step in the first 2 epochs (the warm-up), `after` later."""

    def __init__(self, clock: _Clock, warm_up: float, after: float) -> None:
        super().__init__()
        self.clock, self.epoch, self.warm_up, self.after = clock, 0, warm_up, after

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.clock.now += self.warm_up if self.epoch < 2 else self.after


def _timed_fit(*, budget_s, max_epochs, warm_up, after, caplog):
    """A real fit of 4 steps an epoch (the first 2 the warm-up) on a simulated clock."""
    rng = np.random.default_rng(0)
    x = rng.random((32, 150, 150, 3), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(32) % 3]
    steps = 4
    rate = AdjustableCosineDecay(2e-4, steps * (max_epochs - 2), alpha=0.05, warmup_target=2e-3,
                                 warmup_steps=steps * 2)
    model = make_model(num_classes=3, arch="compact", learning_rate=rate)
    clock = _Clock()
    budget = TimeBudget(budget_s=budget_s, started=0.0, max_epochs=max_epochs, schedule=rate,
                        steps_per_epoch=steps, clock=clock)
    with caplog.at_level("INFO", logger="training.budget"):
        history = model.fit(x, y, batch_size=8, epochs=max_epochs, verbose=0,
                            callbacks=[_Ticks(clock, warm_up, after), budget]).history
    assert budget.plan is not None
    trained = len(history["loss"])
    assert trained == budget.plan.epochs
    assert float(rate(steps * trained)) == pytest.approx(2e-3 * 0.05, rel=1e-4)  # the floor at the last step
    return budget.plan, clock.now


def test_a_host_that_slows_down_shortens_the_run_within_the_budget(caplog):
    plan, now = _timed_fit(budget_s=100.0, max_epochs=10, warm_up=1.0, after=5.0, caplog=caplog)
    # planned on 4 s epochs (4.6 s with the margin): all 10 fit in 100 s. Then epochs took 20 s: after
    # epoch 3 (28 s spent), 100 - 28 - 2 x 20 after training leaves room for one more
    assert plan.replanned == ((3, 4, 20.0),)
    assert plan.epochs == 4
    assert now + 2 * 20.0 <= 100.0
    assert "10 epochs fit" in caplog.text and "4 epochs instead of 10" in caplog.text


def test_a_host_that_speeds_up_lengthens_the_run_within_the_budget(caplog):
    plan, now = _timed_fit(budget_s=200.0, max_epochs=12, warm_up=5.0, after=1.0, caplog=caplog)
    # planned on 20 s epochs (23 s with the margin): 200 - 40 spent - 2 x 23 after leaves 4 more, so 6.
    # Then epochs took 4 s; after 3 of them (epoch 5, 52 s spent) all 12 fit even at 4.6 s
    assert plan.epochs == 12 and plan.replanned == ((5, 12, 4.0),)
    assert now + 2 * 4.0 * EPOCH_SLOWDOWN <= 200.0
    assert "6 of the recipe's 12 epochs fit" in caplog.text and "12 epochs instead of 6" in caplog.text


def test_a_host_within_the_plans_margin_leaves_the_plan_alone(caplog):
    # planned on 4 s epochs (4.6 s with the margin): 6 epochs in 40 s. Epochs then take 4.4 s: 7 would
    # fit without the margin, 6 with it, and none overruns, so the plan stands
    plan, now = _timed_fit(budget_s=40.0, max_epochs=12, warm_up=1.0, after=1.1, caplog=caplog)
    assert plan.epochs == 6 and plan.replanned == ()
    assert now + 2 * 4.4 <= 40.0
    assert "instead of" not in caplog.text


class _Model:
    stop_training = False


# epoch times (s, as Keras printed them) and the data's preparation of three real runs on rps-train on a
# shared 2-core host: its speed swinging 13-17 s an epoch; the same; and slowed to 21-24 s by a busy
# process from 6 to 10 minutes in, then faster than before
RUNS = {
    "swinging": (207.0, "22 13 14 14 15 16 14 14 13 13 13 16 14 16 16 14 16 16 16 16 13 14 15 15 13 15 16 15 17 "
                        "14 17 17 17 15 14 12 15 14 15 13", 0),
    "swinging, another seed": (215.0, "25 15 16 14 14 16 17 14 17 16 16 18 16 13 15 15 16 16 16 15 17 16 18 15 16 "
                                      "17 15 14 13 16 16 14 13 14 14 13 14", 0),
    "slowed, then faster": (183.0, "20 15 17 15 16 17 15 19 16 16 20 22 22 22 23 24 23 21 21 21 22 16 14 15 12 13 12 "
                                   "12 12 12 12 13 13 13 13 15", 2),
}


@pytest.mark.parametrize("run", RUNS)
def test_a_noisy_host_moves_the_plan_only_when_its_pace_changes(run, caplog):
    prep, printed, turns = RUNS[run]
    times = [float(t) for t in printed.split()]
    times += [times[-1]] * (55 - len(times))
    steps = 78
    rate = AdjustableCosineDecay(2e-4, steps * 53, alpha=0.05, warmup_target=2e-3, warmup_steps=steps * 2)
    clock = _Clock()
    clock.now = prep
    budget = TimeBudget(budget_s=840.0, started=0.0, max_epochs=55, schedule=rate, steps_per_epoch=steps,
                        clock=clock)
    budget.set_model(_Model())
    epoch = 0
    with caplog.at_level("INFO", logger="training.budget"):
        while not budget.model.stop_training:
            budget.on_epoch_begin(epoch)
            for batch in range(steps):
                clock.now += times[epoch] / steps
                budget.on_train_batch_end(batch)
            budget.on_epoch_end(epoch)
            if epoch == 1:  # the warm-up's end: the plan
                assert budget.plan is not None
                first = budget.plan.epochs
            epoch += 1
    assert budget.plan is not None and epoch == budget.plan.epochs
    moves = [first, *(e for _, e, _ in budget.plan.replanned)]
    assert len(moves) > 1  # the host's pace did move it
    steps_taken = [b - a for a, b in pairwise(moves)]
    # the direction changes only where the host's speed did (the busy process starting, then stopping)
    assert sum(1 for a, b in pairwise(steps_taken) if (a > 0) != (b > 0)) == turns
    assert clock.now + 2 * times[epoch - 1] <= 840.0
