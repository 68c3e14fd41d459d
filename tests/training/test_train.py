import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from training.data import load_synthetic
from training.errors import DataError
from training.recipes import RECIPES
from training.train import BestEpoch, TrainConfig, learning_rate, train
from version_format.layout import CARD_FILE, LABELS_FILE, WARMUP_FILE, scan_versions


@pytest.fixture(scope="module")
def run_dir(trained_model_root):
    return trained_model_root / "rps" / "runs" / "1"


@pytest.fixture(scope="module")
def card(trained_model_root):
    return json.loads((trained_model_root / "rps" / "1" / CARD_FILE).read_text())


def test_one_version_is_exported(trained_model_root, trained_result):
    assert scan_versions(trained_model_root / "rps") == [1]
    assert trained_result.version == 1
    assert trained_result.path == trained_model_root / "rps" / "1"
    assert (trained_result.path / LABELS_FILE).read_text().split() == ["paper", "rock", "scissors"]
    assert not list((trained_model_root / "rps").glob(".tmp-*"))


def test_run_reports(run_dir, trained_result):
    assert trained_result.run_dir == run_dir
    history = json.loads((run_dir / "history.json").read_text())
    assert {"accuracy", "loss", "val_accuracy", "val_loss"} <= set(history)
    assert all(len(values) == 1 for values in history.values())
    for png in ("history.png", "confusion_matrix.png"):
        assert (run_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    confusion = json.loads((run_dir / "confusion_matrix.json").read_text())
    assert confusion["labels"] == ["paper", "rock", "scissors"]
    assert np.array(confusion["matrix"]).shape == (3, 3)
    events = list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["version"] == 1 and result["path"] == str(trained_result.path)


def test_card_matches_the_confusion_matrix(card, run_dir, trained_result):
    matrix = np.array(json.loads((run_dir / "confusion_matrix.json").read_text())["matrix"])
    # 12 per class, 20 % held out: 2 validation images per class
    assert matrix.sum(axis=1).tolist() == [2, 2, 2]
    assert card["confusion_matrix"] == matrix.tolist()
    assert card["val_accuracy"] == round(np.trace(matrix) / matrix.sum(), 4)
    assert trained_result.val_accuracy == pytest.approx(np.trace(matrix) / matrix.sum())
    assert trained_result.confusion == matrix.tolist()


def test_card_records_data_and_settings(card):
    assert card["name"] == "rps" and card["version"] == 1
    assert card["labels"] == ["paper", "rock", "scissors"]
    assert card["samples"]["train"] == 30 and card["samples"]["validation"] == 6
    assert card["samples"]["train_per_class"] == {"paper": 10, "rock": 10, "scissors": 10}
    assert card["data_sha256"] == load_synthetic(12, seed=0).content_hash()
    assert card["data_source"].startswith("synthetic(")
    assert card["epochs"] == 1 and card["best_epoch"] == 1 and card["seed"] == 0
    assert 0.0 <= card["train_accuracy"] <= 1.0


def test_warmup_holds_one_validation_image_per_class(trained_model_root):
    path = trained_model_root / "rps" / "1" / WARMUP_FILE
    assert len(list(tf.data.TFRecordDataset(str(path)))) == 3


def test_the_trained_model_classifies_a_photo(trained_model_root, sample_jpeg):
    loaded = tf.saved_model.load(str(trained_model_root / "rps" / "1"))
    out = loaded.signatures["serving_default"](image_bytes=tf.constant([sample_jpeg]))
    scores = out["scores"].numpy()
    assert scores.shape == (1, 3) and np.isfinite(scores).all()
    assert scores.sum() == pytest.approx(1.0, abs=1e-5)
    assert out["label"].numpy()[0].decode() == ("paper", "rock", "scissors")[scores.argmax()]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("epochs", 0, "epochs"),
    ("strategy", "bogus", "strategy must be one of"),
    ("learning_rate", 0.0, "learning-rate"),
    ("val_split", 1.0, "val-split must be 0"),
    ("val_split", -0.1, "val-split must be 0"),
])
def test_invalid_config_fails_before_writing_anything(tmp_path, field, value, message):
    config = TrainConfig(model_root=tmp_path / "models", samples_per_class=2, epochs=1)
    setattr(config, field, value)
    with pytest.raises(DataError, match=message):
        train(config)
    assert list(tmp_path.iterdir()) == []


def _tiny_model() -> keras.Model:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def _fill(model: keras.Model, value: float) -> None:
    model.set_weights([np.full_like(w, value) for w in model.get_weights()])


def test_best_epoch_restores_the_best_weights():
    model = _tiny_model()
    best = BestEpoch()
    best.set_model(model)
    logs = [
        {"val_accuracy": 0.5, "val_loss": 0.9, "accuracy": 0.4},
        {"val_accuracy": 0.8, "val_loss": 0.6, "accuracy": 0.7},  # best
        {"val_accuracy": 0.8, "val_loss": 0.7, "accuracy": 0.9},  # tie, higher loss
        {"val_accuracy": 0.6, "val_loss": 0.5, "accuracy": 0.95},
    ]
    for epoch, epoch_logs in enumerate(logs):
        _fill(model, float(epoch + 1))
        best.on_epoch_end(epoch, epoch_logs)
    best.on_train_end()
    assert best.best_epoch == 2
    assert best.best_logs == logs[1]
    assert all(np.all(w == 2.0) for w in model.get_weights())


def test_best_epoch_breaks_ties_on_lower_loss():
    model = _tiny_model()
    best = BestEpoch()
    best.set_model(model)
    for epoch, loss in enumerate([0.9, 0.4, 0.6]):
        _fill(model, float(epoch + 1))
        best.on_epoch_end(epoch, {"val_accuracy": 0.5, "val_loss": loss})
    best.on_train_end()
    assert best.best_epoch == 2
    assert all(np.all(w == 2.0) for w in model.get_weights())


def test_best_epoch_keeps_a_snapshot_not_a_reference():
    model = _tiny_model()
    best = BestEpoch()
    best.set_model(model)
    _fill(model, 3.0)
    best.on_epoch_end(0, {"val_accuracy": 0.9, "val_loss": 0.1})
    _fill(model, -1.0)  # later training changes the weights in place
    best.on_epoch_end(1, {"val_accuracy": 0.1, "val_loss": 2.0})
    best.on_train_end()
    assert all(np.all(w == 3.0) for w in model.get_weights())


def test_best_epoch_in_a_real_fit():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 2)).astype(np.float32)
    y = keras.utils.to_categorical((x[:, 0] + 0.8 * rng.normal(size=80) > 0).astype(int), 2)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(2.0), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    best = BestEpoch()
    history = model.fit(x[:56], y[:56], validation_data=(x[56:], y[56:]), epochs=10,
                        batch_size=8, verbose=0, callbacks=[best]).history
    ranked = sorted(range(10), key=lambda e: (-history["val_accuracy"][e], history["val_loss"][e]))
    assert best.best_epoch == ranked[0] + 1
    assert best.best_epoch < 10  # the last epoch is not the best one: restoring matters here
    loss, acc = model.evaluate(x[56:], y[56:], verbose=0)
    assert acc == pytest.approx(history["val_accuracy"][ranked[0]])
    assert loss == pytest.approx(history["val_loss"][ranked[0]], rel=1e-4)
    assert loss != pytest.approx(history["val_loss"][-1], rel=1e-4)


def test_the_real_hands_rate_warms_up_then_decays():
    recipe = RECIPES["real-hands"]
    rate = learning_rate(recipe, steps_per_epoch=10)
    warmup = 10 * recipe.warmup_epochs
    assert warmup > 0
    at = [float(rate(step)) for step in (0, warmup // 2, warmup, 10 * recipe.epochs)]
    assert at[0] == pytest.approx(recipe.learning_rate / 10)
    assert at[0] < at[1] < at[2] == pytest.approx(recipe.learning_rate)
    assert at[3] == pytest.approx(recipe.learning_rate * 0.05, rel=1e-3)  # cosine's floor at the end


def test_talk_recipe_keeps_a_constant_rate():
    assert learning_rate(RECIPES["talk"], steps_per_epoch=10) == RECIPES["talk"].learning_rate


def test_missing_data_fails_before_writing_anything(tmp_path):
    config = TrainConfig(data=str(tmp_path / "missing"), model_root=tmp_path / "models", epochs=1)
    with pytest.raises(DataError, match="does not exist"):
        train(config)
    assert [p.name for p in tmp_path.iterdir()] == []


@pytest.mark.slow
def test_real_hands_recipe_end_to_end(cgi_folder, tmp_path, caplog):
    """Scenes, the none class, hands held out by id, the real-like check, all in the card."""
    import tensorflow as tf

    result = train(TrainConfig(data=str(cgi_folder), epochs=1, model_root=tmp_path / "models",
                               reallike_per_class=4))
    assert result.recipe == "real-hands"
    assert result.labels == ("none", "paper", "rock", "scissors")
    assert result.reallike_accuracy is not None and 0.0 <= result.reallike_accuracy <= 1.0
    assert sum(map(sum, result.reallike_confusion or [])) == 16
    card = json.loads((result.path / CARD_FILE).read_text())
    assert card["recipe"] == "real-hands" and card["arch"] == "compact"
    assert card["labels"] == ["none", "paper", "rock", "scissors"]
    assert len(card["validation_hands"]) == 3  # one rendered hand per class never trained on
    assert card["reallike_accuracy"] == round(result.reallike_accuracy, 4)
    assert "held_out_for_reallike_check" in card["backgrounds"]
    # the exported version takes image bytes and answers with the four labels
    fn = tf.saved_model.load(str(result.path)).signatures["serving_default"]
    jpeg = (cgi_folder / "rock" / "rock01-000.jpg").read_bytes()
    out = fn(image_bytes=tf.constant([jpeg]))
    assert out["scores"].shape == (1, 4)
    assert out["label"].numpy()[0].decode() in card["labels"]
    # the same check for any exported version, through its serving signature (image bytes in)
    from training.evaluate import evaluate

    check = evaluate(result.path, "real-like", samples_per_class=3, hands_dir=str(cgi_folder))
    assert check.images == 12 and sum(map(sum, check.confusion)) == 12
    assert check.labels == ("none", "paper", "rock", "scissors")
    # a folder with none of its validation hands (say, hands kept out of its data) is scored whole
    others = tmp_path / "other-hands"
    for image in cgi_folder.rglob("*.jpg"):
        if image.name.split("-")[0] not in card["validation_hands"]:
            (others / image.parent.name).mkdir(parents=True, exist_ok=True)
            (others / image.parent.name / image.name).write_bytes(image.read_bytes())
    with caplog.at_level("INFO", logger="training.evaluate"):
        check = evaluate(result.path, "real-like", samples_per_class=2, hands_dir=str(others))
    assert check.images == 8 and sum(map(sum, check.confusion)) == 8
    assert "holds none of" in caplog.text
    # the optimizer's slots stay out of the export: variables hold the weights once
    size = sum(p.stat().st_size for p in (result.path / "variables").iterdir())
    assert size < 4 * card["parameters"] * 1.2


@pytest.mark.slow
def test_real_hands_recipe_on_every_hand(cgi_folder, tmp_path, caplog):
    """--val-split 0: every hand trains, the last epoch is exported, and the card says what was not measured."""
    result = train(TrainConfig(data=str(cgi_folder), epochs=2, val_split=0.0, model_root=tmp_path / "models",
                               reallike_per_class=4))
    assert result.val_accuracy is None and result.confusion is None
    assert result.best_epoch == 2  # the last epoch, not a chosen one
    card = json.loads((result.path / CARD_FILE).read_text())
    assert card["samples"]["validation"] == 0 and card["validation_hands"] == []
    assert card["validation"].startswith("none: every image trained on")
    assert card["val_accuracy"] is None and card["best_epoch"] == 2
    # the real-like scenes show trained hands, so that figure is not filed as the unseen-hands one
    assert "reallike_accuracy" not in card
    assert card["reallike_seen_hands_accuracy"] == round(result.reallike_accuracy or -1, 4)
    assert card["reallike_hands"] == "seen in training (none held out)"
    assert set(card["int8"]["drop_points"]) == {"reallike"}
    assert "hands seen in training" in card["int8"]["measured_on"]["reallike"]
    # every image of every hand went into training: 3 hands x 4 frames per class
    assert sum(1 for _ in cgi_folder.rglob("*.jpg")) == 36
    assert card["samples"]["train_per_class"]["rock"] == 12
    # the warm-up requests exist (training scenes, one per label) and replay through TF Serving's format
    from tensorflow_serving.apis import prediction_log_pb2

    records = list(tf.data.TFRecordDataset(str(result.path / WARMUP_FILE)))
    assert len(records) == 4
    prediction_log_pb2.PredictionLog.FromString(records[0].numpy())
    assert not (result.run_dir / "confusion_matrix.json").exists()
    assert (result.run_dir / "history.png").exists()
    # scoring it later on the real-like check says which hands that check can show
    from training.evaluate import evaluate

    check = evaluate(result.path, "real-like", samples_per_class=2, hands_dir=str(cgi_folder))
    assert check.images == 8
    assert "trained on every hand (--val-split 0): the check shows hands it trained on" in caplog.text


def test_talk_recipe_on_every_image(tmp_path):
    result = train(TrainConfig(data="synthetic", recipe="talk", epochs=1, val_split=0.0, samples_per_class=4,
                               model_root=tmp_path / "models"))
    assert result.val_accuracy is None and result.best_epoch == 1
    card = json.loads((result.path / CARD_FILE).read_text())
    assert card["samples"] == {"train": 12, "validation": 0, "train_per_class": {"paper": 4, "rock": 4, "scissors": 4},
                               "validation_per_class": {"paper": 0, "rock": 0, "scissors": 0}}
    assert set(card["int8"]["drop_points"]) == {"training"}  # the only images there are
    assert card["int8"]["measured_on"]["training"] == "12 training images (nothing was held out)"


def test_real_hands_recipe_refuses_the_rendered_set(tmp_path):
    with pytest.raises(DataError, match="real-hands recipe needs hand images"):
        train(TrainConfig(data="synthetic", recipe="real-hands", epochs=1, model_root=tmp_path / "m",
                          samples_per_class=2))
    assert not (tmp_path / "m").exists()
