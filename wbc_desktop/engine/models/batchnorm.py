"""BatchNorm statistics re-estimated on chosen images: after training (clean
images instead of augmented ones) and for a new lab (AdaBN)."""

from __future__ import annotations

import keras
import numpy as np

from .builders import iter_layers


def recalibrate_batchnorm(model: keras.Model, x: np.ndarray, batch_size: int = 64, max_images: int = 4096,
                          seed: int = 0) -> int:
    """Re-estimate BatchNorm statistics on clean (un-augmented) images.

    During training the moving statistics follow the augmented images, which
    are darker, paler, greyer and larger than any real one; inference then
    normalises with the wrong numbers. A cumulative average over clean
    batches in training mode (as SWA's ``bn_update``) fixes that without
    touching a single learned weight. Returns how many layers were updated."""
    bns = [l for l in iter_layers(model) if isinstance(l, keras.layers.BatchNormalization) and l.trainable]
    if not bns or len(x) == 0:
        return 0
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))[:max_images]
    momenta = [bn.momentum for bn in bns]
    try:
        for k, start in enumerate(range(0, len(order), batch_size), start=1):
            for bn in bns:
                bn.momentum = (k - 1) / k  # the k-th batch weighs 1/k: a running mean over batches
            model(x[np.sort(order[start:start + batch_size])].astype(np.float32), training=True)
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
    return len(bns)
