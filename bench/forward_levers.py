"""Two ways to a faster forward pass of the default model, measured and not
taken (README, Performance): the traced graph's weights frozen into
constants, and BatchNorm run as TensorFlow's fused op; both let the graph
optimiser fold BatchNorm into the convolution before it. One process,
batches of 32 alternated between the three graphs, medians; each graph's
one-time cost (trace, trace and freeze, first call) and what freezing adds
to the peak memory are printed too, since the app would pay them after
every model load.

    python -m bench.forward_levers
"""

from __future__ import annotations

from .common import run_child

CODE = """
import resource
import time
import numpy as np
import keras
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
from wbc_desktop import paths
from wbc_desktop.engine.infer.classify import Classifier
from wbc_desktop.engine.models.modelfile import load_model

model, card = load_model(paths.default_model_path())
size = card['input_size']
x = np.random.default_rng(0).integers(0, 256, (256, size, size, 3)).astype(np.uint8)

def timed(fn):
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

plain = Classifier(model, card)
RESULT['plain_first_call_s'] = timed(plain.warm_up)
before = peak_mb()
traced = tf.function(lambda t: model(t, training=False), input_signature=[tf.TensorSpec([None, size, size, 3])])
frozen_graph = []
RESULT['freeze_s'] = timed(lambda: frozen_graph.append(convert_variables_to_constants_v2(traced.get_concrete_function())))
frozen = lambda v: frozen_graph[0](tf.convert_to_tensor(v.astype(np.float32)))[0].numpy()
RESULT['frozen_first_call_s'] = timed(lambda: frozen(x[:1]))
RESULT['freeze_peak_mb'] = peak_mb() - before

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
RESULT['fused_first_call_s'] = timed(fused.warm_up)
graphs = {'plain': plain.predict_arrays, 'fused': fused.predict_arrays,
          'frozen': lambda v: np.concatenate([frozen(v[i:i + 32]) for i in range(0, len(v), 32)])}
reference = plain.predict_arrays(x[:32])
RESULT['max_difference'] = max(float(np.abs(g(x[:32]) - reference).max()) for g in graphs.values())
seconds = {name: [] for name in graphs}
for round_ in range(8):
    for name in (list(graphs) if round_ % 2 == 0 else list(graphs)[::-1]):
        seconds[name].append(timed(lambda: graphs[name](x)))
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
    print(f"weights frozen: {r['frozen_ips']:.1f} img/s, {r['frozen_ips'] / r['plain_ips']:.2f}x plain "
          f"(freezing {r['freeze_s']:.1f} s, then first call {r['frozen_first_call_s']:.1f} s; "
          f"peak memory +{r['freeze_peak_mb']:.0f} MB)")
    print(f"largest difference from the plain graph's probabilities: {r['max_difference']:.1e}")


if __name__ == "__main__":
    main()
