import functools

import numpy as np
import pytest

from training.data import ImageSet, load_folder, split_by_group, to_dataset
from training.realhands import reallike
from training.realhands.composite import Style
from training.realhands.reallike import MAX_SIZE, MIN_SIZE, reallike_set, score
from training.realhands.scenes import (
    Hands,
    ScenePool,
    decode_rgb,
    eval_dataset,
    render,
    train_dataset,
    with_none,
)
from version_format.model_io import NONE_LABEL


@pytest.fixture(scope="module")
def images(cgi_folder) -> ImageSet:
    return load_folder(cgi_folder)


@pytest.fixture(scope="module")
def hands(images) -> Hands:
    return Hands(images)


def test_split_by_group_keeps_each_hand_on_one_side(images):
    train, val = split_by_group(images, 0.3, seed=0)
    assert set(train.groups()).isdisjoint(val.groups())
    assert len(train) + len(val) == len(images)
    for label in images.labels:  # one of three hands per class is held out
        assert sum(g.startswith(label) for g in set(val.groups())) == 1


def test_every_render_is_cut_out(hands):
    assert all(h is not None for h in hands.cutouts)


def test_pool_epochs_are_seeded_balanced_and_keep_labels(hands):
    labels = with_none(hands.labels)
    assert labels == (NONE_LABEL, "paper", "rock", "scissors")
    pool = ScenePool(hands, labels, variants=2, none_count=24, seed=1)
    again = ScenePool(hands, labels, variants=2, none_count=24, seed=1)
    assert np.array_equal(pool.views, again.views) and np.array_equal(pool.empty, again.empty)
    images, targets = pool.flat()
    assert len(images) == len(hands) * 3 + 24
    first, second = pool.epoch_indices(0, 0), pool.epoch_indices(0, 1)
    assert np.array_equal(first, pool.epoch_indices(0, 0)) and not np.array_equal(first, second)
    assert len(first) == pool.epoch_size() == len(np.unique(first))
    counts = np.bincount(targets[first], minlength=len(labels))
    assert counts[1] == counts[2] == counts[3] == len(hands) // 3
    assert counts[0] == len(hands) // 6  # `none`: half a class's worth
    # view k of hand i sits at i * 3 + k: a drawn index always carries its hand's label
    hand_idx = first[first < len(hands) * 3]
    assert np.array_equal(targets[hand_idx], pool.targets[hand_idx // 3])


def test_every_training_and_validation_pipeline_runs_untuned(images, hands):
    # with tf.data's autotuning on, the end of fit() waited on its threads (training.data.untuned)
    pool = ScenePool(hands, with_none(hands.labels), variants=1, none_count=6, seed=0)
    x, y = pool.flat()
    pipelines = [train_dataset(pool, 8, 2), eval_dataset(x, y, 4, 8),
                 to_dataset(images, 8, training=True), to_dataset(images, 8, training=False)]
    assert [ds.options().autotune.enabled for ds in pipelines] == [False] * 4


def test_a_training_style_is_seeded_and_changes_scenes_but_not_plain_renders(hands):
    labels = with_none(hands.labels)
    style = Style(retone=0.5)
    base = ScenePool(hands, labels, variants=2, none_count=12, seed=1)
    styled = ScenePool(hands, labels, variants=2, none_count=12, seed=1, style=style)
    again = ScenePool(hands, labels, variants=2, none_count=12, seed=1, style=style)
    assert np.array_equal(styled.views, again.views) and np.array_equal(styled.empty, base.empty)
    assert np.array_equal(styled.views[:, 0], base.views[:, 0])  # view 0 stays the render as shot
    assert not np.array_equal(styled.views[:, 1:], base.views[:, 1:])
    assert np.array_equal(styled.targets, base.targets)


def test_reallike_set_is_webcam_sized_jpeg_and_deterministic(hands):
    labels = with_none(hands.labels)
    check = reallike_set(hands, labels, per_class=5, seed=3)
    assert len(check) == 20 and np.bincount(check.targets).tolist() == [5, 5, 5, 5]
    assert check.images == reallike_set(hands, labels, per_class=5, seed=3).images
    with pytest.MonkeyPatch.context() as m:  # each scene has its own generator: threads change nothing
        m.setattr(reallike, "render", functools.partial(render, workers=1))
        assert check.images == reallike_set(hands, labels, per_class=5, seed=3).images
    for data in check.images:
        h, w = decode_rgb(data).shape[:2]
        assert data[:2] == b"\xff\xd8" and h == w and MIN_SIZE <= w <= MAX_SIZE


def test_score_counts_through_the_serving_preprocessing(hands):
    labels = with_none(hands.labels)
    check = reallike_set(hands, labels, per_class=3, seed=4)
    always_rock = lambda x: np.tile(np.eye(4)[labels.index("rock")], (int(x.shape[0]), 1))  # noqa: E731
    accuracy, matrix = score(always_rock, check)
    assert accuracy == pytest.approx(0.25)
    assert [row[labels.index("rock")] for row in matrix] == [3, 3, 3, 3]

