"""Classification speed: end to end through the engine (decode, resize,
batch, predict, CSV) vs the bare batched forward pass on preloaded arrays vs
a naive per-image ``model.predict`` loop; and the forward pass's GFLOP/s vs a
measured matrix-multiply peak of this machine."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import make_jpegs


def model_flops(model) -> float:
    """Multiply-adds x 2 of the conv and dense layers, per image."""
    import keras

    total = 0.0
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            h, w, cout = layer.output.shape[1:]
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            total += 2.0 * h * w * cout * kh * kw * cin / layer.groups
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            h, w, c = layer.output.shape[1:]
            total += 2.0 * h * w * c * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, keras.layers.Dense):
            total += 2.0 * layer.input.shape[-1] * layer.units
    return total


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def matmul_peak_gflops(n: int = 4096, repeat: int = 5) -> float:
    """The best float32 matrix multiply this machine does, through
    TensorFlow (oneDNN/Eigen) or NumPy (OpenBLAS), whichever is faster."""
    import tensorflow as tf

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    ta = tf.constant(a)
    candidates = {"tensorflow": tf.function(lambda: tf.matmul(ta, ta), autograph=False), "numpy": lambda: a @ a}
    best = float("inf")
    for run in candidates.values():
        np.asarray(run())
        for _ in range(repeat):
            t0 = time.perf_counter()
            np.asarray(run())
            best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def bench_model(model_path: Path, files: list[Path], naive_n: int) -> dict:
    from wbc_desktop.engine.infer.classify import Classifier, write_predictions_csv
    from wbc_desktop.engine.data.preprocess import load_square

    clf = Classifier.open(model_path)
    t0 = time.perf_counter()
    x = np.stack([load_square(p, clf.size, framing=clf.framing) for p in files])
    decode_s = (time.perf_counter() - t0) / len(files)  # one core: decode, resize, pad
    clf.predict_arrays(x[:64])  # trace and warm up once
    t0 = time.perf_counter()
    clf.predict_arrays(x)
    bare = len(x) / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    results = list(clf.classify(files, batch_size=32))
    write_predictions_csv(Path(tempfile.mkdtemp()) / "p.csv", results, clf.classes, clf.name)
    e2e = len(files) / (time.perf_counter() - t0)
    self_training_s, taught = self_training_time(results)
    t0 = time.perf_counter()
    list(clf.classify(files, batch_size=32, tta=True))
    e2e_tta = len(files) / (time.perf_counter() - t0)

    clf.model.predict(x[:1].astype(np.float32), verbose=0)
    t0 = time.perf_counter()
    for i in range(naive_n):
        clf.model.predict(x[i:i + 1].astype(np.float32), verbose=0)
    naive = naive_n / (time.perf_counter() - t0)
    flops = model_flops(clf.model)
    return {"model": clf.name, "size": clf.size, "e2e_ips": e2e, "e2e_tta_ips": e2e_tta, "bare_ips": bare, "naive_ips": naive,
            "n_images": len(files), "self_training_s": self_training_s, "self_training_cells": taught,
            "default_views": clf.default_views, "e2e_default_ips": e2e_tta if clf.default_tta else e2e,
            "decode_ms": decode_s * 1e3, "e2e_ceiling": e2e_ceiling(decode_s, bare),
            "gflop_per_image": flops / 1e9, "gflops": flops * bare / 1e9}


def self_training_time(results) -> tuple[float, int]:
    """Seconds of the self-training a warned folder gets once classified
    (``infer.folder_training``), with every cell counted sure, the fit's worst
    case, and how many cells it fitted on."""
    from wbc_desktop.engine.infer.folder_training import self_trained

    ok = [p for p in results if p.ok]
    feats, probs = np.stack([p.features for p in ok]), np.stack([p.probs for p in ok])
    sure = np.eye(probs.shape[1])[probs.argmax(axis=1)]
    t0 = time.perf_counter()
    _, taught = self_trained(feats, sure)
    return time.perf_counter() - t0, sum(taught.values())


def e2e_ceiling(decode_s: float, bare_ips: float, cores: int | None = None) -> float:
    """The best end-to-end/bare ratio possible when decoding and the forward
    pass share the same cores and overlap perfectly: each image costs its
    decode plus its share of the forward pass in core-seconds."""
    cores = cores or os.cpu_count() or 1
    return 1.0 / (1.0 + decode_s * bare_ips / cores)


def resnet50_model(folder: Path) -> Path:
    """The paper's architecture at 224 px (random weights: speed only)."""
    from wbc_desktop.engine.models.modelfile import new_card, save_model
    from wbc_desktop.engine.models.builders import build_resnet50

    model, origin = build_resnet50(8, 224, "none")
    path = folder / "resnet50_224.keras"
    save_model(model, new_card(name="ResNet50 224 px", classes=[f"c{i}" for i in range(8)], input_size=224,
                               architecture="resnet50", weights_origin=origin), path)
    return path


def run(n_images: int = 1000) -> dict:
    from wbc_desktop import paths

    work = Path(tempfile.mkdtemp(prefix="wbc-bench-"))
    files = make_jpegs(work / "images", n_images)
    rows = []
    if paths.default_model_path().exists():
        rows.append(bench_model(paths.default_model_path(), files, naive_n=200))
    rows.append(bench_model(resnet50_model(work), files[:300], naive_n=30))
    return {"models": rows, "matmul_peak_gflops": matmul_peak_gflops()}
