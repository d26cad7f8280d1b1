import json

import numpy as np
import pytest

from wbc_desktop.engine.train.evaluation import compute_metrics, expected_calibration_error, format_metrics, write_report

CLASSES = ["neutrophil", "eosinophil", "basophil", "lymphocyte"]


def _probs(pred, conf=0.9, n_classes=4):
    p = np.full((len(pred), n_classes), (1 - conf) / (n_classes - 1))
    p[np.arange(len(pred)), pred] = conf
    return p


def test_metrics_match_hand_counts():
    y = np.array([0, 0, 0, 1, 1, 3])
    pred = np.array([0, 0, 1, 1, 1, 2])  # basophil predicted but absent
    m = compute_metrics(y, _probs(pred), CLASSES)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["neutrophil"]["recall"] == pytest.approx(2 / 3)
    assert m["per_class"]["eosinophil"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["lymphocyte"]["recall"] == 0
    assert m["classes_present"] == ["neutrophil", "eosinophil", "lymphocyte"]
    # macro over the three present classes: recalls 2/3, 1, 0
    assert m["macro_recall"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["confusion_matrix"][3][2] == 1


def test_ece_perfect_and_overconfident():
    y = np.array([0, 1, 2, 3] * 5)
    assert expected_calibration_error(_probs(y, conf=1.0), y) == pytest.approx(0)
    wrong = (y + 1) % 4
    assert expected_calibration_error(_probs(wrong, conf=0.9), y) == pytest.approx(0.9)


def test_report_folder(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 30)
    pred = np.where(rng.random(30) < 0.7, y, (y + 1) % 4)
    images = rng.integers(0, 255, (30, 24, 24, 3), dtype=np.uint8)
    m = write_report(tmp_path / "r", y, _probs(pred), CLASSES, images, [f"cell{i}.png" for i in range(30)], {"split": "test"})
    for name in ("metrics.json", "confusion_matrix.png", "misclassified.png", "predictions.csv"):
        assert (tmp_path / "r" / name).stat().st_size > 100
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert saved["split"] == "test" and saved["misclassified_shown"] == int((pred != y).sum())
    assert "neutrophil" in format_metrics(m)
