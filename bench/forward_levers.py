"""Two ways to a faster forward pass of the default model (README,
Performance): the traced graph's weights frozen into constants (what
``Classifier.warm_up`` does in the app) and BatchNorm run as TensorFlow's
fused op (not taken), both of which let the graph optimiser fold BatchNorm
into the convolution before it. One process, batches of 32 alternated
between the three graphs, medians; each graph's one-time cost (trace,
freeze, first call) is printed too, since the app pays it after every
model load.

    python -m bench.forward_levers
"""

from __future__ import annotations

from .common import run_child

CODE = """
import time
import numpy as np
import keras
import tensorflow as tf
from wbc_desktop import paths
from wbc_desktop.engine.infer.classify import Classifier
from wbc_desktop.engine.models.modelfile import load_model

model, card = load_model(paths.default_model_path())
x = np.random.default_rng(0).integers(0, 256, (256, card['input_size'], card['input_size'], 3)).astype(np.uint8)

def timed(fn):
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0

plain, frozen = Classifier(model, card), Classifier(model, card)
RESULT['plain_first_call_s'] = timed(lambda: plain.predict_arrays(x[:1]))
RESULT['warm_up_s'] = timed(frozen.warm_up)

class FusedBatchNorm(keras.layers.BatchNormalization):
    def call(self, inputs, training=None, mask=None):
        if training or len(inputs.shape) != 4 or self.axis not in (-1, 3):
            return super().call(inputs, training=training, mask=mask)
        ones, zeros = tf.ones_like(self.moving_mean), tf.zeros_like(self.moving_mean)
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs, self.gamma if self.scale else ones, self.beta if self.center else zeros,
            mean=self.moving_mean, variance=self.moving_variance, epsilon=self.epsilon, is_training=False)
        return y

# the other two graphs are traced already; the next trace of ``model`` is the fused one
for layer in model._flatten_layers():
    if type(layer) is keras.layers.BatchNormalization:
        layer.__class__ = FusedBatchNorm
fused = Classifier(model, card)
RESULT['fused_first_call_s'] = timed(lambda: fused.predict_arrays(x[:1]))
graphs = {'plain': plain, 'fused': fused, 'frozen': frozen}
reference = plain.predict_arrays(x[:32])
RESULT['max_difference'] = max(float(np.abs(g.predict_arrays(x[:32]) - reference).max()) for g in graphs.values())
seconds = {name: [] for name in graphs}
for round_ in range(8):
    for name in (list(graphs) if round_ % 2 == 0 else list(graphs)[::-1]):
        seconds[name].append(timed(lambda: graphs[name].predict_arrays(x)))
for name, s in seconds.items():
    RESULT[name + '_ips'] = len(x) / float(np.median(s))
"""


def run() -> dict:
    return run_child(CODE)


def main() -> None:
    r = run()
    print(f"plain forward {r['plain_ips']:.1f} img/s (first call {r['plain_first_call_s']:.1f} s)")
    print(f"BatchNorm fused: {r['fused_ips']:.1f} img/s, {r['fused_ips'] / r['plain_ips']:.2f}x plain "
          f"(first call {r['fused_first_call_s']:.1f} s)")
    print(f"weights frozen (Classifier.warm_up): {r['frozen_ips']:.1f} img/s, {r['frozen_ips'] / r['plain_ips']:.2f}x "
          f"plain (warm-up {r['warm_up_s']:.1f} s)")
    print(f"largest difference from the plain graph's probabilities: {r['max_difference']:.1e}")


if __name__ == "__main__":
    main()
