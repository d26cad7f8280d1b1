"""Augmentation settings, free of TensorFlow (the ops are in ``augment``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


DEFAULT_STRENGTH = 0.5


@dataclass
class AugmentConfig:
    """Defaults are :meth:`from_strength` at ``DEFAULT_STRENGTH``."""

    flip: bool = True  # mirror + any rotation: cells have no orientation
    rotate: bool = True
    affine: float = DEFAULT_STRENGTH  # translation
    scale: float = DEFAULT_STRENGTH  # random zoom, in and out
    brightness_contrast: float = DEFAULT_STRENGTH
    stain: float = DEFAULT_STRENGTH  # hue, saturation and per-dye (optical density) jitter
    grayscale: float = 0.3 * DEFAULT_STRENGTH  # probability of a grey image
    blur: float = 0.3 * DEFAULT_STRENGTH  # probability of a low-resolution (camera) copy
    # another lab's dyes and lamp: a random stain matrix in optical-density
    # space, a lamp tint and sensor noise; off unless asked for, so the cards
    # of models trained before keep their meaning
    stain_matrix: float = 0.0
    # probability of a random-convolution copy (RandConv, Xu et al. 2021):
    # a random small filter remixes colours and local texture, so that no
    # lab's optics or stain is a cue; off unless asked for
    random_conv: float = 0.0
    # how thick the smear and how long the stain: every dye's optical density
    # scaled together by up to exp(+-density) (0.7: 0.5-2x), so that one lab's
    # pale cells look like another's dark ones; off unless asked for
    density: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def none(cls) -> "AugmentConfig":
        return cls(False, False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    @classmethod
    def from_strength(cls, strength: float) -> "AugmentConfig":
        """The one knob the CLI, the app's form, the recipe and the search
        turn: every family at ``strength``, grey and low-resolution copies at
        0.3 of it; 0 switches augmentation off, flips and turns included."""
        if strength <= 0:
            return cls.none()
        return cls(True, True, strength, strength, strength, strength, 0.3 * strength, 0.3 * strength)

    @property
    def strength(self) -> float:
        """The knob that :meth:`from_strength` turned (0 when off)."""
        return self.scale
