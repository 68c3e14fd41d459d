"""A wall-clock budget for a training run: the warm-up times this machine, then sets how many epochs fit."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import keras
import tensorflow as tf

log = logging.getLogger(__name__)

# What comes after the last epoch (the best epoch's confusion matrix, the real-like check, the int8
# conversion and its accuracy beside fp32's, the export), in epochs of the same run: 1.6 measured for
# the real-hands recipe on rps-train (31 s after 19.5 s epochs), rounded up.
AFTER_TRAINING_EPOCHS = 2.0
# A margin for a shared host's slower spells: in the run that measured the figure above, the epochs
# after the warm-up averaged 19.5 s against 16.9 s for its last one. Planned on the warm-up's mean step,
# the two runs since averaged 1.04 and 0.97 of that estimate.
EPOCH_SLOWDOWN = 1.15
TRACING_STEPS = 3  # the first epoch's first steps build the graph: not counted as training speed
RECENT_EPOCHS = 3  # after the plan, the host's speed is the mean of the last few epochs
# A plan lengthened late spends the margin it kept on its remaining epochs, so lengthening keeps this many
# epochs in hand as well: from the last epoch to the card, 12 runs on rps-train took 31-43 s, except 5
# that took 57-88 s (most of it tf.data's autotuning holding up the training iterator's deletion at the
# end of fit, off since; the reserve stays for a host that slows down in the last epochs).
LENGTHEN_RESERVE_EPOCHS = 2.0


class AdjustableCosineDecay(keras.optimizers.schedules.CosineDecay):
    """Keras's CosineDecay (with its linear warm-up) whose length is held in variables, so a time budget
    can settle it after the warm-up without retracing (the warm-up does not depend on it), and move its
    end later without a jump: from the step it is moved at, the rest of the cosine runs faster or slower."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, **kwargs: Any) -> None:
        super().__init__(initial_learning_rate, decay_steps, **kwargs)
        self.decay_steps = tf.Variable(float(decay_steps), trainable=False, dtype=tf.float32,
                                       name="cosine_decay_steps")
        # where the cosine's progress was when its end last moved (not yet: the warm-up's end, 0)
        self.anchor_step = tf.Variable(float(self.warmup_steps), trainable=False, dtype=tf.float32,
                                       name="cosine_anchor_step")
        self.anchor_progress = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="cosine_anchor_progress")

    def __call__(self, step: Any) -> Any:
        step = tf.cast(step, tf.float32)
        start = float(self.initial_learning_rate)
        peak = start if self.warmup_target is None else float(self.warmup_target)
        decayed = peak * ((1.0 - self.alpha) * 0.5 * (1.0 + tf.cos(math.pi * self._progress(step))) + self.alpha)
        if not self.warmup_steps:
            return decayed
        warm = start + (peak - start) * step / float(self.warmup_steps)
        return tf.where(step < float(self.warmup_steps), warm, decayed)

    def _progress(self, step: Any) -> Any:
        """How far along the cosine `step` is, 0 to 1."""
        end = float(self.warmup_steps) + self.decay_steps
        done = tf.clip_by_value((step - self.anchor_step) / tf.maximum(end - self.anchor_step, 1.0), 0.0, 1.0)
        return self.anchor_progress + (1.0 - self.anchor_progress) * done

    def set_decay_steps(self, steps: int) -> None:
        """Where the decay ends, counted from the warm-up's end: set before the decay starts."""
        self.decay_steps.assign(float(steps))

    def reschedule(self, at_step: int, decay_steps: int) -> None:
        """Move the decay's end (counted from the warm-up's end), going on from the rate it has at `at_step`."""
        progress = float(self._progress(tf.constant(float(at_step))))
        self.anchor_progress.assign(progress)
        self.anchor_step.assign(float(at_step))
        self.decay_steps.assign(float(decay_steps))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "decay_steps": int(self.decay_steps.numpy())}


@dataclass(frozen=True)
class Plan:
    """How the budget was spent, for the log and the model card."""

    minutes: float
    recipe_epochs: int  # the most the run may train
    epochs: int  # what fits
    warmup_epoch_seconds: float  # an epoch at the warm-up's mean step time, plus its last validation
    epoch_seconds: float  # what the plan counts an epoch as: that, times EPOCH_SLOWDOWN
    spent_seconds: float  # since the job started (data included) when the plan was made
    after_seconds: float  # estimated: reports, int8 and export
    # (after epoch, epochs from then on, the epoch time that moved it) each time the host's speed moved the end
    replanned: tuple[tuple[int, int, float], ...] = ()

    def card(self) -> dict[str, Any]:
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in asdict(self).items()}


def plan_epochs(*, budget_s: float, spent_s: float, done_epochs: int, epoch_s: float, max_epochs: int,
                after_epochs: float = AFTER_TRAINING_EPOCHS) -> int:
    """The most epochs (at least one past those done, at most max_epochs) whose training and what
    follows it end within the budget."""
    left = budget_s - spent_s - after_epochs * epoch_s
    more = math.floor(left / epoch_s) if epoch_s > 0 else max_epochs
    return max(done_epochs + 1, min(max_epochs, done_epochs + more))


class TimeBudget(keras.callbacks.Callback):
    """At the end of the warm-up, time its steps and plan the run to end within the budget:
    end the cosine decay at the planned epoch and stop training there.

    After each epoch the plan is checked against the last epochs' speed: a host that slowed down
    shortens the run so the budget holds, one that sped up lengthens it, keeping the plan's margin.
    Between the two (within the margin) the plan stands, so a noisy host does not move it back and
    forth. Either way the rate goes on without a jump. A run that was not replanned is reproduced by
    passing its epochs as --epochs: the same schedule and data order.
    """

    def __init__(self, *, budget_s: float, started: float, max_epochs: int, schedule: AdjustableCosineDecay,
                 steps_per_epoch: int, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self.budget_s, self.started, self.max_epochs = budget_s, started, max_epochs
        self.schedule, self.steps_per_epoch = schedule, steps_per_epoch
        self.warmup_steps = int(schedule.warmup_steps)
        self.plan_after = max(1, self.warmup_steps // steps_per_epoch)  # the warm-up's last epoch
        self.plan: Plan | None = None
        self._epoch = 0
        self._last_step = 0.0
        self._steps: list[float] = []  # every warm-up step's duration but the first epoch's tracing ones
        self._validation = 0.0  # the last validation pass
        self._validation_started = 0.0
        self._epoch_started = 0.0
        self._epoch_times: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self._epoch, self._last_step = epoch, self.clock()
        self._epoch_started = self._last_step

    def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        if self.plan is not None:
            return
        now = self.clock()
        if self._epoch > 0 or batch >= TRACING_STEPS:
            self._steps.append(now - self._last_step)
        self._last_step = now

    def on_test_begin(self, logs: dict[str, float] | None = None) -> None:
        self._validation_started = self.clock()

    def on_test_end(self, logs: dict[str, float] | None = None) -> None:
        self._validation = self.clock() - self._validation_started

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        done = epoch + 1
        self._epoch_times.append(self.clock() - self._epoch_started)
        if done == self.plan_after and self.plan is None:
            self._make_plan(done)
        elif self.plan is not None and done < self.plan.epochs:
            self._keep_to_budget(done)
        if self.plan is not None and done >= self.plan.epochs:
            self.model.stop_training = True

    def _keep_to_budget(self, done: int) -> None:
        """Shorten the run if the last few epochs' pace would overrun the budget; lengthen it if more epochs
        fit at the slower of that pace and every epoch's since the plan, counted with the plan's margin
        (once a few have run)."""
        assert self.plan is not None
        since_plan = self._epoch_times[self.plan_after:]
        last_few = since_plan[-RECENT_EPOCHS:]
        last, recent = len(last_few), sum(last_few) / len(last_few)
        spent = self.clock() - self.started
        fits = plan_epochs(budget_s=self.budget_s, spent_s=spent, done_epochs=done, epoch_s=recent,
                           max_epochs=self.max_epochs)
        epochs, pace, over = self.plan.epochs, recent, "the last epoch" if last == 1 else f"the mean of the last {last}"
        if fits < epochs:
            epochs = fits
        elif len(since_plan) >= RECENT_EPOCHS:
            # lengthened only if more fit at the slower of two paces, every epoch since the plan and the
            # last few, with the plan's margin. On the last few alone, a run whose epochs swung between
            # 12.9 and 15.9 s went 37, 39, 40, 39, 40 epochs; on every epoch alone, a host slowed from
            # 14 to 22 s an epoch went 30, 31, 30, 29, 30, 29, 30.
            steady = max(sum(since_plan) / len(since_plan), recent)
            longer = plan_epochs(budget_s=self.budget_s, spent_s=spent, done_epochs=done,
                                 epoch_s=steady * EPOCH_SLOWDOWN, max_epochs=self.max_epochs,
                                 after_epochs=AFTER_TRAINING_EPOCHS + LENGTHEN_RESERVE_EPOCHS)
            if longer > epochs:
                epochs, pace, over = longer, steady, (f"the slower of the mean of the last {last} and of all "
                                                      f"{len(since_plan)} since the plan")
        if epochs == self.plan.epochs:
            return
        self.schedule.reschedule(done * self.steps_per_epoch, self.steps_per_epoch * epochs - self.warmup_steps)
        log.info("time budget %s: epochs take %.1fs (%s), so %d epochs instead of %d (%s spent so far)",
                 _clock(self.budget_s), pace, over, epochs, self.plan.epochs, _clock(spent))
        self.plan = replace(self.plan, epochs=epochs, replanned=(*self.plan.replanned, (done, epochs, pace)))

    def _make_plan(self, done: int) -> None:
        # the warm-up's steps, not one epoch's total: the warm-up's last epoch on a shared host took
        # 16.9 s in one run and 20.9 s in another, whose epochs both averaged about 19.5 s
        step = sum(self._steps) / max(1, len(self._steps))
        measured = step * self.steps_per_epoch + self._validation
        epoch_s = measured * EPOCH_SLOWDOWN
        spent = self.clock() - self.started
        epochs = plan_epochs(budget_s=self.budget_s, spent_s=spent, done_epochs=done, epoch_s=epoch_s,
                             max_epochs=self.max_epochs)
        self.plan = Plan(minutes=self.budget_s / 60, recipe_epochs=self.max_epochs, epochs=epochs,
                         warmup_epoch_seconds=measured, epoch_seconds=epoch_s, spent_seconds=spent,
                         after_seconds=AFTER_TRAINING_EPOCHS * epoch_s)
        self.schedule.set_decay_steps(self.steps_per_epoch * epochs - self.warmup_steps)
        fits = epochs >= self.max_epochs
        log.info("time budget %s: %s (an epoch of the warm-up took %.1fs, planned as %.1fs; %s spent so far, "
                 "about %s after training)", _clock(self.budget_s),
                 f"all {epochs} epochs fit" if fits else f"{epochs} of the recipe's {self.max_epochs} epochs fit",
                 measured, epoch_s, _clock(spent), _clock(self.plan.after_seconds))
        if epochs == done + 1 and not fits:
            log.warning("the budget is too small for this machine: training one more epoch and stopping")


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"
