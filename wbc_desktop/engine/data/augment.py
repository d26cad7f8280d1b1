"""Training-only augmentation on uint8-range float batches (tf.data side).

Kept out of the model so a saved model holds standard layers only. Each
family has a strength in [0, 1]; scale and stain are the levers that matter
most across labs, whose crops and stains differ far more than any one
lab's images do.

Every draw is stateless, from a seed that comes with the batch: the
parallel tf.data map runs batches on whichever thread is free, and
stateful random ops would hand out their draws in that order, so the
same seed would not give the same run.
"""

from __future__ import annotations

import math

import tensorflow as tf

from .augment_config import AugmentConfig


class _Draws:
    """Random draws split off one batch's seed, one fresh seed per draw."""

    def __init__(self, seed: tf.Tensor):
        self._seed = tf.cast(seed, tf.int64)

    def _next(self) -> tf.Tensor:
        self._seed, seed = tf.unstack(tf.random.experimental.stateless_split(self._seed, 2))
        return seed

    def uniform(self, shape, lo, hi, dtype=tf.float32) -> tf.Tensor:
        return tf.random.stateless_uniform(shape, self._next(), lo, hi, dtype=dtype)

    def normal(self, shape, stddev=1.0) -> tf.Tensor:
        return tf.random.stateless_normal(shape, self._next(), stddev=stddev)


def _geometry(images: tf.Tensor, cfg: AugmentConfig, draw: _Draws) -> tf.Tensor:
    b = tf.shape(images)[0]
    size = tf.cast(tf.shape(images)[1], tf.float32)
    angle = draw.uniform([b], 0.0, 2 * math.pi) if cfg.rotate else tf.zeros([b])
    # zoom > 1 magnifies: other labs crop cells far tighter than CellaVision does
    zoom = tf.exp(draw.uniform([b], math.log(1 - 0.25 * cfg.scale), math.log(1 + 1.5 * cfg.scale)))
    shift = 0.1 * cfg.affine * size
    tx, ty = draw.uniform([b], -shift, shift), draw.uniform([b], -shift, shift)
    flip = tf.where(draw.uniform([b], 0.0, 1.0) < 0.5, -1.0, 1.0) if cfg.flip else tf.ones([b])
    c = (size - 1) / 2
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    a0, a1 = cos * flip, -sin
    b0, b1 = sin * flip, cos
    a2 = c - a0 * c - a1 * c - tx
    b2 = c - b0 * c - b1 * c - ty
    zeros = tf.zeros([b])
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT",
    )


def _colour(images: tf.Tensor, cfg: AugmentConfig, draw: _Draws) -> tf.Tensor:
    b = tf.shape(images)[0]
    x = images / 255.0
    if cfg.stain > 0:
        k = cfg.stain
        hsv = tf.image.rgb_to_hsv(x)
        dh = tf.reshape(draw.uniform([b], -0.17 * k, 0.17 * k), [-1, 1, 1])
        ds = tf.reshape(tf.exp(draw.uniform([b], -k, k)), [-1, 1, 1])
        h = tf.math.floormod(hsv[..., 0] + dh, 1.0)
        s = tf.clip_by_value(hsv[..., 1] * ds, 0.0, 1.0)
        x = tf.image.hsv_to_rgb(tf.stack([h, s, hsv[..., 2]], axis=-1))
        # how much of each dye a lab's stain leaves: a gain per channel on the
        # optical density (Beer-Lambert), which hue jitter alone cannot mimic
        density = -tf.math.log(tf.clip_by_value(x, 1 / 255, 1.0))
        gain = tf.exp(draw.uniform([b, 1, 1, 3], -0.3 * k, 0.3 * k))
        x = tf.exp(-density * gain)
    if cfg.brightness_contrast > 0:
        k = cfg.brightness_contrast
        contrast = tf.reshape(draw.uniform([b], 1 - 0.4 * k, 1 + 0.4 * k), [-1, 1, 1, 1])
        brightness = tf.reshape(draw.uniform([b], 1 - 0.25 * k, 1 + 0.25 * k), [-1, 1, 1, 1])
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        x = ((x - mean) * contrast + mean) * brightness
    if cfg.grayscale > 0:
        grey = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(x))
        pick = tf.reshape(draw.uniform([b], 0.0, 1.0) < cfg.grayscale, [-1, 1, 1, 1])
        x = tf.where(pick, grey, x)
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def _stain_matrix(images: tf.Tensor, k: float, draw: _Draws) -> tf.Tensor:
    """Beer-Lambert: each pixel's optical density is a mix of dye densities,
    and a lab's dyes mix into RGB through their own matrix. Mixing the
    channels' densities through a random near-identity matrix changes the
    dyes' colours (eosin redder, azure bluer), not only their amounts; the
    lamp tint moves the bare background, where the density is zero."""
    b = tf.shape(images)[0]
    x = tf.clip_by_value(images / 255.0, 1 / 255, 1.0)
    density = -tf.math.log(x)
    mix = tf.eye(3, batch_shape=[b]) + draw.normal([b, 3, 3], stddev=0.12 * k)
    density = tf.nn.relu(tf.einsum("bhwc,bcd->bhwd", density, mix))
    tint = draw.uniform([b, 1, 1, 3], -0.12 * k, 0.12 * k)
    x = tf.exp(-density) * tf.exp(tint)
    noise = draw.normal(tf.shape(x)) * draw.uniform([b, 1, 1, 1], 0.0, 0.03 * k)
    return tf.clip_by_value(x + noise, 0.0, 1.0) * 255.0


def _density(images: tf.Tensor, k: float, draw: _Draws) -> tf.Tensor:
    """Beer-Lambert again: a thicker smear or a longer stain multiplies
    every dye's density by one factor, darkening the nucleus far more than
    the pale background, which a brightness change cannot mimic."""
    b = tf.shape(images)[0]
    density = -tf.math.log(tf.clip_by_value(images / 255.0, 1 / 255, 1.0))
    scale = tf.exp(draw.uniform([b, 1, 1, 1], -k, k))
    return tf.clip_by_value(tf.exp(-density * scale), 0.0, 1.0) * 255.0


def _blur(images: tf.Tensor, cfg: AugmentConfig, draw: _Draws) -> tf.Tensor:
    b = tf.shape(images)[0]
    size = tf.shape(images)[1]
    factor = draw.uniform([], 0.3, 0.8)
    small = tf.cast(tf.cast(size, tf.float32) * factor, tf.int32)
    low = tf.image.resize(tf.image.resize(images, [small, small], antialias=True), [size, size])
    pick = tf.reshape(draw.uniform([b], 0.0, 1.0) < cfg.blur, [-1, 1, 1, 1])
    return tf.where(pick, low, images)


RANDOM_CONV_RADII = 3  # filters of 1x1, 3x3 or 5x5


def _random_conv(images: tf.Tensor, p: float, draw: _Draws) -> tf.Tensor:
    """One random filter per batch (its size too), with weights drawn as for
    a fresh layer; each picked image is a random blend of itself and its
    filtered copy, the copy first given the image's own per-channel mean and
    spread, so that the brightness range stays that of a stained cell while
    the colours and fine texture do not."""
    b = tf.shape(images)[0]
    width = 2 * RANDOM_CONV_RADII - 1
    radius = draw.uniform([], 0, RANDOM_CONV_RADII, tf.int32)
    offsets = tf.abs(tf.range(width) - (RANDOM_CONV_RADII - 1))
    inside = tf.cast(offsets <= radius, tf.float32)
    mask = tf.reshape(inside[:, None] * inside[None, :], [width, width, 1, 1])
    taps = tf.cast((2 * radius + 1) ** 2 * 3, tf.float32)
    kernel = draw.normal([width, width, 3, 3]) * mask / tf.sqrt(taps)
    x = images / 255.0
    pad = RANDOM_CONV_RADII - 1
    y = tf.nn.conv2d(tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT"), kernel, 1, "VALID")
    y_mean, y_var = tf.nn.moments(y, axes=[1, 2], keepdims=True)
    x_mean, x_var = tf.nn.moments(x, axes=[1, 2], keepdims=True)
    y = (y - y_mean) / tf.sqrt(y_var + 1e-6) * tf.sqrt(x_var) + x_mean
    alpha = tf.reshape(draw.uniform([b], 0.0, 1.0), [-1, 1, 1, 1])
    mixed = tf.clip_by_value(alpha * x + (1 - alpha) * y, 0.0, 1.0) * 255.0
    pick = tf.reshape(draw.uniform([b], 0.0, 1.0) < p, [-1, 1, 1, 1])
    return tf.where(pick, mixed, images)


def augment_batch(images: tf.Tensor, cfg: AugmentConfig, seed) -> tf.Tensor:
    """``images``: float32 batch in [0, 255]; returns the same shape and range.
    ``seed``: two integers; the same seed and batch give the same output."""
    draw = _Draws(seed)
    if cfg.flip or cfg.rotate or cfg.affine > 0 or cfg.scale > 0:
        images = _geometry(images, cfg, draw)
    if cfg.blur > 0:
        images = _blur(images, cfg, draw)
    if cfg.stain > 0 or cfg.brightness_contrast > 0 or cfg.grayscale > 0:
        images = _colour(images, cfg, draw)
    if cfg.density > 0:
        images = _density(images, cfg.density, draw)
    if cfg.stain_matrix > 0:
        images = _stain_matrix(images, cfg.stain_matrix, draw)
    if cfg.random_conv > 0:
        images = _random_conv(images, cfg.random_conv, draw)
    return images
