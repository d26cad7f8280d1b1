"""Several WBC models as one ordinary model: each member sees the input at
its own size, their pooled features are joined under the name
``features``, and one softmax layer ``predictions`` averages the members'
logits (a geometric-mean ensemble: each member's own head, stacked). The
result has the shape of every model here (``features`` -> ``predictions``),
so calibration, AdaBN, freezing and the app treat it like any model, and it
loads in safe mode. The shipped file then fits that layer again on the
joined features (``train.joint_head``), which weighs the members against
each other instead of averaging them."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers


def build_ensemble(members: list[keras.Model], img_size: int, name: str = "ensemble") -> keras.Model:
    classes = {m.output_shape[-1] for m in members}
    if len(classes) != 1:
        raise ValueError("ensemble members must have the same classes")
    inputs = keras.Input((img_size, img_size, 3), name="image")
    feats, weights, biases = [], [], []
    for i, member in enumerate(members):
        body = keras.Model(member.input, member.get_layer("features").output, name=f"member{i}")
        size = member.input_shape[1]
        x = inputs if size == img_size else layers.Resizing(size, size, interpolation="bilinear", antialias=True,
                                                            name=f"member{i}_resize")(inputs)
        feats.append(body(x))
        w, b = member.get_layer("predictions").get_weights()
        weights.append(w / len(members))
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


def take_apart(model: keras.Model, biases: list[list[float]]) -> list[keras.Model]:
    """The members of a model ``build_ensemble`` made, each with its own head
    again (``biases``: ``head_biases`` of the members, as its card keeps them)."""
    weights = model.get_layer("predictions").get_weights()[0] * len(biases)
    members, start = [], 0
    for i, bias in enumerate(biases):
        body = model.get_layer(f"member{i}")
        width = body.output.shape[-1]
        inputs = keras.Input(body.input.shape[1:], name="image")
        features = layers.Identity(name="features")(body(inputs))
        head = layers.Dense(len(bias), activation="softmax", dtype="float32", name="predictions")
        members.append(keras.Model(inputs, head(features), name=f"member{i}"))
        head.set_weights([weights[start:start + width], np.asarray(bias, np.float32)])
        start += width
    return members
