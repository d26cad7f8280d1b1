"""Several WBC models as one ordinary model: each member sees the input at
its own size, their pooled features are joined under the name
``features``, and one softmax layer ``predictions`` averages the members'
logits (a geometric-mean ensemble: each member's own head, stacked). The
result has the shape of every model here (``features`` -> ``predictions``),
so calibration, AdaBN, freezing and the app treat it like any model, and it
loads in safe mode. The shipped file then fits that layer again on the
joined features (``train.joint_head``), which weighs the members against
each other instead of averaging them. Joined ``with_taps``, each member's
block also holds its pooled mid-level activations (``tap_layers``), which
only a fitted head weighs: the averaged head gives them no weight."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers


def tap_layers(member: keras.Model) -> list[str]:
    """The layers whose pooled activations join a member's features
    ``with_taps``: the last activation of the stages conv3 and conv4 (before
    any pooling), and of conv5 when the features pool a head convolution
    after it. Earlier stages describe texture and colour less in one lab's
    terms than the last; with them the fitted head gained 1.4 points on the
    mean unseen lab and 1.0 on the worst (training/RESULTS.md)."""
    pooled = member.get_layer("features").input._keras_history.operation.name
    taps = []
    for stage in ("conv3_", "conv4_", "conv5_"):
        names = [layer.name for layer in member.layers if layer.name.startswith(stage)
                 and "_head" not in layer.name and not isinstance(layer, layers.MaxPooling2D)]
        if names and names[-1] != pooled:
            taps.append(names[-1])
    return taps


def _member_body(member: keras.Model, name: str, with_taps: bool) -> keras.Model:
    features = member.get_layer("features").output
    if with_taps:
        taps = tap_layers(member)
        if not taps:  # a member whose stages are hidden in a nested layer would join silently without them
            raise ValueError(f"{member.name}: no conv3/conv4/conv5 stage to tap")
        pooled = [layers.GlobalAveragePooling2D(name=f"{tap}_mean")(member.get_layer(tap).output) for tap in taps]
        features = layers.Concatenate(name="features_and_taps")([features, *pooled])
    return keras.Model(member.input, features, name=name)


def build_ensemble(members: list[keras.Model], img_size: int, name: str = "ensemble",
                   with_taps: bool = False) -> keras.Model:
    classes = {m.output_shape[-1] for m in members}
    if len(classes) != 1:
        raise ValueError("ensemble members must have the same classes")
    inputs = keras.Input((img_size, img_size, 3), name="image")
    feats, weights, biases = [], [], []
    for i, member in enumerate(members):
        body = _member_body(member, f"member{i}", with_taps)
        size = member.input_shape[1]
        x = inputs if size == img_size else layers.Resizing(size, size, interpolation="bilinear", antialias=True,
                                                            name=f"member{i}_resize")(inputs)
        feats.append(body(x))
        w, b = member.get_layer("predictions").get_weights()
        extra = body.output.shape[-1] - w.shape[0]  # the taps: no weight until a head is fitted on them
        weights.append(np.concatenate([w, np.zeros((extra, w.shape[1]), w.dtype)]) / len(members))
        biases.append(b / len(members))
    features = layers.Concatenate(name="features")(feats)
    head = layers.Dense(classes.pop(), activation="softmax", dtype="float32", name="predictions")
    model = keras.Model(inputs, head(features), name=name)
    head.set_weights([np.concatenate(weights), np.sum(biases, axis=0)])
    return model


def head_biases(members: list[keras.Model]) -> list[list[float]]:
    """Each member's own head bias. The joined head keeps only their mean,
    so a card that keeps these can take the members apart again: a later
    model that changes one member then trains that one alone."""
    return [member.get_layer("predictions").get_weights()[1].tolist() for member in members]


def member_widths(model: keras.Model) -> list[int]:
    """The widths of the joined members' feature blocks, or the one block of
    a single network."""
    names = {layer.name for layer in model.layers}
    widths = []
    while f"member{len(widths)}" in names:
        widths.append(int(model.get_layer(f"member{len(widths)}").output.shape[-1]))
    return widths or [int(model.get_layer("features").output.shape[-1])]


def own_widths(model: keras.Model) -> list[int]:
    """How many of each member block's first values are the member's own
    features: a member joined ``with_taps`` carries its pooled mid-level
    activations after them."""
    widths = member_widths(model)
    if "member0" not in {layer.name for layer in model.layers}:
        return widths
    return [int(model.get_layer(f"member{i}").get_layer("features").output.shape[-1]) for i in range(len(widths))]


def _network_of(body: keras.Model) -> keras.Model:
    """The network inside a member block. Before members were taken apart on
    their own layers, each came out wrapped around its network as one nested
    layer, under an identity named ``features``, and each later join wrapped
    it again (v7's file holds three members two wrappings deep)."""
    while isinstance(body.get_layer("features"), layers.Identity):
        body = next(layer for layer in body.layers if isinstance(layer, keras.Model))
    return body


def take_apart(model: keras.Model, biases: list[list[float]]) -> list[keras.Model]:
    """The members of a model ``build_ensemble`` made, each with its own head
    again (``biases``: ``head_biases`` of the members, as its card keeps them).
    Each is built on its block's own layers, not around the block as one
    nested layer, so its stages stay reachable by name as in its own file:
    ``tap_layers`` finds nothing in a nested block, and a model joined again
    ``with_taps`` from such members had lost three members' taps."""
    weights = model.get_layer("predictions").get_weights()[0] * len(biases)
    starts = np.cumsum([0, *member_widths(model)])
    members = []
    for i, (bias, width) in enumerate(zip(biases, own_widths(model))):
        body = _network_of(model.get_layer(f"member{i}"))
        head = layers.Dense(len(bias), activation="softmax", dtype="float32", name="predictions")
        members.append(keras.Model(body.input, head(body.get_layer("features").output), name=f"member{i}"))
        head.set_weights([weights[starts[i]:starts[i] + width], np.asarray(bias, np.float32)])
    return members
