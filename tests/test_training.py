import json
import threading

import numpy as np
import pytest

from wbc_desktop.engine.data.augment import augment_batch
from wbc_desktop.engine.data.augment_config import AugmentConfig
from wbc_desktop.engine.infer.classify import Classifier
from wbc_desktop.engine.train.evaluation import compute_metrics
from wbc_desktop.engine.data.prepare import prepare_data
from wbc_desktop.engine.progress import CancelToken
from wbc_desktop.engine.train.config import TrainConfig
from wbc_desktop.engine.train.trainer import MAX_CLASS_WEIGHT, sample_weights, train


SEED = (4, 2)


def test_augmentation_keeps_shape_range_and_varies_with_the_seed_alone():
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    every = AugmentConfig(**{**AugmentConfig.from_strength(1.0).to_dict(), "stain_matrix": 1.0, "random_conv": 1.0,
                                 "density": 0.7})
    out = augment_batch(x, every, SEED).numpy()
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, x)
    assert not np.allclose(out[0], augment_batch(x, every, (4, 3)).numpy()[0])
    np.testing.assert_array_equal(augment_batch(x, every, SEED).numpy(), out)
    np.testing.assert_array_equal(augment_batch(x, AugmentConfig.none(), SEED), x)


def test_rotation_only_preserves_a_centred_disc():
    yy, xx = np.mgrid[:33, :33]
    disc = (((yy - 16) ** 2 + (xx - 16) ** 2) < 64).astype(np.float32) * 255
    x = np.repeat(disc[None, :, :, None], 3, axis=3).repeat(4, axis=0)
    cfg = AugmentConfig(flip=True, rotate=True, affine=0, scale=0, brightness_contrast=0, stain=0, grayscale=0, blur=0)
    out = augment_batch(x, cfg, SEED).numpy()
    assert np.abs(out - x).mean() < 8


def test_stain_jitter_changes_the_dyes_but_not_the_empty_background():
    x = np.zeros((32, 16, 16, 3), np.float32)
    x[:, :, :8] = 255.0  # bright field: no dye, so no stain can colour it
    x[:, :, 8:] = (120.0, 60.0, 160.0)  # a May-Grunwald-Giemsa purple nucleus
    cfg = AugmentConfig(**{**AugmentConfig.none().to_dict(), "stain": 1.0})
    out = augment_batch(x, cfg, SEED).numpy()
    np.testing.assert_allclose(out[:, :, :8], 255.0, atol=1.0)
    nucleus = out[:, 0, 12]
    assert np.ptp(nucleus[:, 0] / nucleus[:, 2]) > 0.3  # the red/blue balance varies from image to image
    assert np.ptp(nucleus.mean(axis=1)) > 20  # and so does how much dye there is


def test_stain_matrix_mixes_the_dyes_and_tints_the_lamp():
    """Unlike the per-dye gain, a stain matrix moves a dye's hue, and the lamp
    tint colours even the bare background; off unless asked for."""
    x = np.zeros((64, 16, 16, 3), np.float32)
    x[:, :, :8] = 230.0
    x[:, :, 8:] = (120.0, 60.0, 160.0)
    assert AugmentConfig().stain_matrix == 0 and AugmentConfig.from_strength(1.0).stain_matrix == 0
    cfg = AugmentConfig(**{**AugmentConfig.none().to_dict(), "stain_matrix": 1.0})
    out = augment_batch(x, cfg, SEED).numpy()
    assert out.min() >= 0 and out.max() <= 255
    background = out[:, :, :8].mean(axis=(1, 2))
    assert np.ptp(background[:, 0] - background[:, 2]) > 10  # the lamp's colour varies
    nucleus = out[:, 4:12, 8:].mean(axis=(1, 2))
    ratio = np.log(nucleus[:, 0] / nucleus[:, 2])
    assert np.ptp(ratio) > 0.3 and abs(np.median(ratio) - np.log(120 / 160)) < 0.15  # varied around the true dye


def test_random_convolution_remixes_colour_and_texture_but_keeps_the_brightness_range():
    """Off unless asked for; when on, an image's colours change from batch
    to batch while its mean and spread per channel stay about its own."""
    assert AugmentConfig().random_conv == 0 and AugmentConfig.from_strength(1.0).random_conv == 0
    x = np.zeros((16, 24, 24, 3), np.float32)
    x[:] = (225.0, 215.0, 220.0)
    x[:, 6:18, 6:18] = (120.0, 60.0, 160.0)  # a purple nucleus on a pale ground
    cfg = AugmentConfig(**{**AugmentConfig.none().to_dict(), "random_conv": 1.0})
    outs = [augment_batch(x, cfg, (4, i)).numpy() for i in range(6)]
    for out in outs:
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255
        assert np.abs(out.mean(axis=(1, 2)) - x.mean(axis=(1, 2))).max() < 25
    nucleus = np.stack([o[:, 12, 12] for o in outs]).reshape(-1, 3)
    assert np.ptp(nucleus[:, 0] - nucleus[:, 2]) > 40  # the nucleus's colour varies
    half = AugmentConfig(**{**AugmentConfig.none().to_dict(), "random_conv": 0.5})
    untouched = np.all(augment_batch(np.repeat(x[:1], 64, axis=0), half, SEED).numpy() == x[:1], axis=(1, 2, 3))
    assert 10 < untouched.sum() < 54  # about half the images keep their pixels


def test_stain_density_darkens_or_pales_the_nucleus_far_more_than_the_background():
    """Off unless asked for; when on, one factor per image scales every dye's
    optical density: the nucleus's darkness varies widely, its hue and the
    pale background barely."""
    assert AugmentConfig().density == 0 and AugmentConfig.from_strength(1.0).density == 0
    x = np.zeros((64, 24, 24, 3), np.float32)
    x[:] = (235.0, 228.0, 232.0)
    x[:, 6:18, 6:18] = (120.0, 60.0, 160.0)
    cfg = AugmentConfig(**{**AugmentConfig.none().to_dict(), "density": 0.7})
    out = augment_batch(x, cfg, SEED).numpy()
    nucleus_od = -np.log(out[:, 12, 12] / 255.0)
    ratio = nucleus_od / -np.log(x[0, 12, 12] / 255.0)
    assert np.ptp(ratio[:, 0]) > 1.0 and ratio.min() > 0.45 and ratio.max() < 2.1  # 0.5-2x, widely spread
    assert np.allclose(ratio[:, 0], ratio[:, 2], atol=0.02)  # every dye by the same factor: the hue stays
    moved = np.abs(out - x).mean(axis=-1)
    assert np.all(moved[:, 0, 0] <= 0.5 * moved[:, 12, 12] + 0.5)  # the pale background moves far less
    assert np.array_equal(out, augment_batch(x, cfg, SEED).numpy())


def test_class_weights_give_every_class_the_same_total_and_are_capped():
    y = np.array([0] * 90 + [1] * 10 + [2])
    w = sample_weights(y, None, by_class=True)
    assert w[:90].sum() == pytest.approx(w[90:100].sum())
    assert w[100] == MAX_CLASS_WEIGHT  # balanced would give it 33.7
    assert np.all(sample_weights(y, None, by_class=False) == 1.0)


def test_lab_balance_shares_each_class_between_labs_or_weighs_labs_alike():
    # class 0: 80 cells from the big lab, 10 from the small one; class 1: 5 and 5
    y = np.array([0] * 90 + [1] * 10)
    labs = ["big"] * 80 + ["small"] * 10 + ["big"] * 5 + ["small"] * 5
    w = sample_weights(y, labs, by_class=True, lab_balance="per_class")
    assert w[:80].sum() == pytest.approx(w[80:90].sum())  # the small lab's look weighs as much
    assert w[90:95].sum() == pytest.approx(w[95:].sum())
    assert w[:90].sum() == pytest.approx(w[90:].sum())  # and the classes are still balanced
    # per lab: each lab the same total, and within a lab each class
    y = np.array([0] * 70 + [1] * 30)
    labs = ["big"] * 60 + ["small"] * 10 + ["big"] * 20 + ["small"] * 10
    w = sample_weights(y, labs, by_class=True, lab_balance="per_lab")
    big = np.array(labs) == "big"
    for part in (big & (y == 0), big & (y == 1), ~big & (y == 0), ~big & (y == 1)):
        assert w[part].sum() == pytest.approx(25.0)
    # lab total: each lab the same total, and within a lab the classes as the class weights weigh them
    w = sample_weights(y, labs, by_class=True, lab_balance="lab_total")
    plain = sample_weights(y, None, by_class=True)
    assert w[big].sum() == pytest.approx(w[~big].sum()) == pytest.approx(50.0)
    assert w[big & (y == 1)][0] / w[big & (y == 0)][0] == pytest.approx(plain[y == 1][0] / plain[y == 0][0])
    assert sample_weights(y, labs, by_class=True) == pytest.approx(plain)
    # shared classes: class 2 only the big lab holds; it is scaled as the big lab's shared classes are
    y = np.array([0] * 80 + [1] * 20 + [2] * 10)
    labs = ["big"] * 70 + ["small"] * 10 + ["big"] * 10 + ["small"] * 10 + ["big"] * 10
    w = sample_weights(y, labs, by_class=True, lab_balance="shared_classes")
    plain = sample_weights(y, None, by_class=True)
    big = np.array(labs) == "big"
    for c in (0, 1):
        assert w[big & (y == c)].sum() == pytest.approx(w[~big & (y == c)].sum())
    big_shared = big & (y < 2)
    assert w[y == 2][0] / plain[y == 2][0] == pytest.approx(w[big_shared].sum() / plain[big_shared].sum())
    assert w.mean() == pytest.approx(1.0)
    per_class = sample_weights(y, labs, by_class=True, lab_balance="per_class")
    own_to_shared = lambda v: v[y == 2].sum() / v[big_shared].sum()  # noqa: E731
    assert own_to_shared(w) == pytest.approx(own_to_shared(plain)) and own_to_shared(per_class) > own_to_shared(w)
    # half the lab balance: halfway between it and the class weights alone
    half = sample_weights(y, labs, by_class=True, lab_balance="per_lab", share=0.5)
    assert half == pytest.approx(0.5 * sample_weights(y, labs, by_class=True, lab_balance="per_lab") + 0.5 * plain)


def test_config_validation_lists_every_problem():
    problems = TrainConfig(arch="vgg", epochs=0, lr=5, img_size=8, val_frac=0.7, group_by="(").validate()
    assert len(problems) == 6
    assert any("regular expression" in p for p in problems)
    assert TrainConfig().validate() == []
    assert "lab balance must be one of" in TrainConfig(lab_balance="lab").validate()[0]
    assert "needs class weighting" in TrainConfig(lab_balance="per_lab", class_weighting=False).validate()[0]
    assert "share must lie between 0 and 1" in TrainConfig(lab_balance_share=1.5).validate()[0]
    assert TrainConfig.from_dict(TrainConfig(lr=0.01).to_dict()) == TrainConfig(lr=0.01)


def test_trained_model_learns_synthetic_cells(trained_model_path, synth_dir):
    """Test split accuracy far above chance (1/3) proves training works."""
    clf = Classifier.open(trained_model_path)
    data = prepare_data(synth_dir, clf.size, seed=42)
    metrics = compute_metrics(data.test.y, clf.predict_arrays(data.test.x), data.classes)
    assert metrics["accuracy"] >= 0.8, metrics
    card = clf.card
    assert card["training_data"]["counts"]["test"]["neutrophil"] > 0
    assert card["hyperparameters"]["epochs"] == 15 and card["best_epoch"] >= 1


@pytest.fixture(scope="module")
def small_data(synth_dir):
    return prepare_data(synth_dir, 32, seed=5)


def _cfg(**kw):
    base = dict(img_size=32, epochs=4, batch_size=16, width=8, patience=10, augment=AugmentConfig.none())
    base.update(kw)
    return TrainConfig(**base)


def test_progress_history_checkpoint_and_resume(tmp_path, small_data):
    events = []
    run = tmp_path / "run"
    first = train(_cfg(epochs=2), small_data, run, progress=events.append)
    assert [e.done for e in events if e.stage == "train_epoch"] == [1, 2]
    batches = [e for e in events if e.stage == "train_batch"]
    assert batches and batches[-1].done == batches[-1].total
    state = json.loads((run / "state.json").read_text())
    assert state["epochs_done"] == 2 and len(state["history"]) == 2
    assert (run / "checkpoint.keras").exists() and (run / "best.weights.h5").exists()
    # the same run asked for 4 epochs continues at epoch 3
    (run / "run.json").write_text((run / "run.json").read_text())
    events.clear()
    resumed = train(_cfg(epochs=4), small_data, run, progress=events.append, resume=True)
    assert [e.done for e in events if e.stage == "train_epoch"] == [3, 4]
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert first.history[0] == resumed.history[0]


def test_cancel_stops_within_a_batch_and_keeps_best(tmp_path, small_data):
    cancel = CancelToken()
    seen = []

    def progress(p):
        seen.append(p)
        if p.stage == "train_epoch" and p.done == 1:
            cancel.cancel()

    result = train(_cfg(epochs=50), small_data, tmp_path / "run", progress=progress, cancel=cancel)
    assert result.cancelled
    epochs_run = [p.done for p in seen if p.stage == "train_epoch"]
    assert epochs_run == [1]  # the second epoch stopped at its first batch
    assert result.best_epoch == 1


def test_run_folder_stops_early_and_restores_best_weights(tmp_path):
    from wbc_desktop.engine.train.callbacks import RunFolder
    from wbc_desktop.engine.models.builders import build_compact

    model = build_compact(3, 32, width=8)
    folder = RunFolder(tmp_path, CancelToken(), patience=2)
    folder.set_model(model)
    kernel = model.get_layer("predictions").kernel
    for epoch, val_loss in enumerate([1.0, 0.8, 0.9, 0.95]):
        kernel.assign(np.full(kernel.shape, float(epoch), np.float32))
        model.stop_training = False
        folder.on_epoch_end(epoch, {"loss": 1.0, "val_loss": val_loss})
        assert model.stop_training == (epoch == 3)
    assert folder.state["best_epoch"] == 2 and folder.state["stopped_early"]
    assert folder.restore_best()
    assert float(kernel.numpy().mean()) == 1.0  # the weights of epoch 2
    resumed = RunFolder(tmp_path, CancelToken(), patience=2, state=RunFolder.load_state(tmp_path))
    assert resumed.state["epochs_done"] == 4 and resumed.state["best"] == 0.8


def test_cancel_from_another_thread(tmp_path, small_data):
    cancel = CancelToken()
    timer = threading.Timer(2.0, cancel.cancel)
    timer.start()
    result = train(_cfg(epochs=500), small_data, tmp_path / "run", cancel=cancel)
    timer.cancel()
    assert result.cancelled and len(result.history) < 500


def test_recalibrate_batchnorm_sets_statistics_of_clean_images():
    import keras

    from wbc_desktop.engine.models.builders import build_compact
    from wbc_desktop.engine.models.batchnorm import recalibrate_batchnorm

    model = build_compact(3, 32, width=8)
    bn = model.get_layer("conv1_norm")
    bn.moving_mean.assign(np.full(bn.moving_mean.shape, 50.0, np.float32))
    x = np.random.default_rng(0).integers(0, 255, (300, 32, 32, 3)).astype(np.uint8)
    probe = keras.Model(model.input, model.get_layer("conv1_conv").output)
    feats = probe.predict(x.astype(np.float32), verbose=0)
    assert recalibrate_batchnorm(model, x, batch_size=100) == 9
    np.testing.assert_allclose(bn.moving_mean.numpy(), feats.mean(axis=(0, 1, 2)), atol=1e-3)
    assert bn.momentum == 0.9  # restored
    frozen = build_compact(3, 32, width=8)
    from wbc_desktop.engine.models.builders import apply_freeze

    apply_freeze(frozen, "backbone")
    assert recalibrate_batchnorm(frozen, x) == 0  # a frozen backbone keeps its statistics


TRAIN_IN_A_PROCESS = r"""
import hashlib, json, sys
import numpy as np
import tensorflow as tf
tmp, tests, seed, devices = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if devices > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
sys.path.insert(0, tests)
from synth import make_labeled_folder
from wbc_desktop.engine.data.augment_config import AugmentConfig
from wbc_desktop.engine.data.prepare import prepare_data
from wbc_desktop.engine.train.config import TrainConfig
from wbc_desktop.engine.train.trainer import train, training_strategy

from pathlib import Path
folder = make_labeled_folder(Path(tmp) / "cells", per_class=12, seed=3)
every = {**AugmentConfig.from_strength(0.3).to_dict(), "blur": 0.5, "stain_matrix": 0.5, "random_conv": 0.5,
         "density": 0.5}
cfg = TrainConfig(img_size=32, epochs=2, batch_size=16, width=8, patience=2, seed=seed, augment=AugmentConfig(**every))
data = prepare_data(folder, 32, seed=1)
result = train(cfg, data, tmp + "/run")
weights = np.concatenate([w.ravel() for w in result.model.get_weights()])
print(json.dumps({"replicas": training_strategy().num_replicas_in_sync, "card": result.card["trained_on"],
                  "epochs": len(result.history), "loss": result.history[-1]["loss"],
                  "weights": hashlib.sha256(weights.tobytes()).hexdigest()}))
"""


def _train_in_a_process(tmp_path, seed: int = 42, devices: int = 1) -> dict:
    """A short training with every augmentation on, in a fresh Python: a run
    as the recipe starts it."""
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run([sys.executable, "-c", TRAIN_IN_A_PROCESS, str(tmp_path), str(Path(__file__).parent),
                          str(seed), str(devices)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_training_runs_under_tf_distribute_on_two_logical_cpus(tmp_path):
    """What a multi-GPU machine does, on this CPU split into two devices."""
    result = _train_in_a_process(tmp_path, devices=2)
    assert result["replicas"] == 2 and result["card"]["replicas"] == 2 and len(result["card"]["devices"]) == 2
    assert result["epochs"] == 2 and np.isfinite(result["loss"])


def test_the_same_seed_trains_the_same_model_in_another_process(tmp_path):
    """Augmentation draws run on a parallel map; the seed must still fix
    them, or a lever's measured gain is partly the run's luck."""
    runs = [_train_in_a_process(tmp_path / name, seed) for name, seed in (("a", 42), ("b", 42), ("c", 7))]
    assert runs[0]["weights"] == runs[1]["weights"]
    assert runs[0]["weights"] != runs[2]["weights"]
