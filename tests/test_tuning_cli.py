import csv
import json
import subprocess
import sys

import pytest

from wbc_desktop.cli import main
from wbc_desktop.engine.data.augment_config import AugmentConfig
from wbc_desktop.engine.models.modelfile import read_card
from wbc_desktop.engine.data.prepare import prepare_data
from wbc_desktop.engine.train.config import TrainConfig
from wbc_desktop.engine.train.tuning import sample_configs, tune


def test_sample_configs_are_distinct_and_bounded():
    base = TrainConfig()
    space = {"lr": [1e-3, 1e-4], "batch_size": [16, 32]}
    configs = sample_configs(base, space, trials=10, seed=0)
    assert len(configs) == 4
    assert len({(c.lr, c.batch_size) for c in configs}) == 4
    strong = sample_configs(base, {"augment_strength": [0.9]}, 1, 0)[0]
    assert strong.augment == AugmentConfig.from_strength(0.9)


def test_tune_ranks_on_validation_and_writes_table(tmp_path, synth_dir):
    data = prepare_data(synth_dir, 32, seed=1)
    base = TrainConfig(img_size=32, epochs=7, width=8, augment=AugmentConfig.none())
    rows_seen = []
    best, rows = tune(data, base, tmp_path, trials=2, space={"lr": [3e-3, 1e-6]}, trial_epochs=2, on_trial=rows_seen.append)
    assert len(rows) == 2 and rows_seen == rows
    table = list(csv.DictReader((tmp_path / "tuning_results.csv").open()))
    assert [float(r["lr"]) for r in table] == [r["lr"] for r in rows]
    top = max(rows, key=lambda r: r["val_macro_f1"])
    assert best.lr == top["lr"] and best.epochs == 7  # the winner is retrained for the full schedule
    assert json.loads((tmp_path / "best_config.json").read_text())["lr"] == best.lr


def test_cli_train_evaluate_info_classify(tmp_path, synth_dir, capsys):
    model = tmp_path / "cli.keras"
    rc = main(["train", str(synth_dir), "--out", str(model), "--epochs", "2", "--img-size", "32", "--augment", "0",
               "--batch-size", "16", "--name", "cli model", "--colour-space", "lab"])
    assert rc == 0 and model.exists()
    card = read_card(model)
    assert card["name"] == "cli model" and "test_metrics" in card
    assert card["hyperparameters"]["colour_space"] == "lab" and "lab input" in card["architecture"]
    run = tmp_path / "cli.run"
    assert (run / "split.json").exists() and (run / "report" / "confusion_matrix.png").exists()

    rc = main(["evaluate", str(model), str(run / "split.json"), "--report", str(tmp_path / "rep")])
    assert rc == 0
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert metrics["n"] == card["test_metrics"]["n"] and metrics["subset"] == "test"
    assert metrics["accuracy"] == pytest.approx(card["test_metrics"]["accuracy"])

    capsys.readouterr()
    assert main(["info", "--model", str(model), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["classes"] == ["neutrophil", "eosinophil", "lymphocyte"]

    out = tmp_path / "preds.csv"
    (synth_dir.parent / "junk.png").write_text("x")
    assert main(["classify", str(synth_dir), str(synth_dir.parent / "junk.png"), "--model", str(model), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 91 and sum(1 for r in rows if r["error"]) == 1
    assert "1 unreadable" in capsys.readouterr().err


def test_fine_tuning_takes_the_base_models_framing(tmp_path, synth_dir):
    """The shipped model sees cell-centred crops; fine-tuning it must not
    need a framing option (any other framing would be refused)."""
    base, tuned = tmp_path / "tight.keras", tmp_path / "tuned.keras"
    common = ["--epochs", "1", "--img-size", "32", "--augment", "0", "--batch-size", "16"]
    assert main(["train", str(synth_dir), "--out", str(base), "--framing", "cell_tight", *common]) == 0
    assert main(["train", str(synth_dir), "--out", str(tuned), "--weights", str(base), *common]) == 0
    assert read_card(tuned)["preprocessing"]["framing"] == "cell_tight"


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert main(["info", "--model", str(tmp_path / "none.keras")]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.keras")]) == 2
    with pytest.raises(SystemExit):
        main(["train", str(tmp_path), "--out", str(tmp_path / "m.keras"), "--lr", "9"])


def test_wbc_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "wbc_desktop.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("wbc ")


def test_cli_train_options_are_the_dataclass_defaults():
    """One source of truth: no CLI option retypes a default of its own."""
    from dataclasses import fields

    from wbc_desktop.cli import _train_config, build_parser

    args = build_parser().parse_args(["train", "data", "--out", "m.keras"])
    assert _train_config(args) == TrainConfig()
    flags = {a.dest for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions}
    assert {f.name for f in fields(TrainConfig)} <= flags  # every setting can be given
    off = _train_config(build_parser().parse_args(["train", "d", "--out", "m.keras", "--augment", "0"]))
    assert off.augment == AugmentConfig.none()


def test_augment_strength_zero_is_off_and_defaults_match_the_default_strength():
    assert AugmentConfig.from_strength(0) == AugmentConfig.none()
    assert AugmentConfig() == AugmentConfig.from_strength(AugmentConfig().strength)
