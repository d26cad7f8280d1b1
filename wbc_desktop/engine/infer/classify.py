"""Classify image files in batches, yielding one result per file as soon as
its batch is done, so callers can show progress and stop at any time.

Decoding runs on a thread pool one batch ahead of the forward pass, which
releases the GIL, so the CPU cores decode and compute at the same time.
"""

from __future__ import annotations

import datetime as _dt
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..io.csvio import CELL_COLUMNS, cell_columns, write_csv
from ..data.dataset import Skipped, collect_images, sample_in_order
from ..io.imageio import ImageReadError
from ..progress import CancelToken
from ..models.class_offsets import describe, shift_probs, temper, unfamiliar_caution
from ..models.modelfile import default_views, framing_of, views_phrase
from ..train.calibrate import members_unit
from .cells import NO_WHITE_CELL, Box, CellCut, cut_cells, view_of
from .domain_check import SURROUNDINGS, colour_stats, stain_view, unlike_training
from .folder_training import PSEUDO_LABEL_SURE, TEMPERATURE as SELF_TRAINED_TEMPERATURE, self_trained


@dataclass
class Prediction:
    path: str
    label: str | None = None
    confidence: float = 0.0
    probs: np.ndarray | None = None
    error: str | None = None
    pixels: np.ndarray | None = None  # the model's input view, when asked for (thumbnails)
    colour: np.ndarray | None = None  # the cell's stain statistics (see domain_check.colour_stats)
    cell: CellCut | None = None  # where the cell lies in the file (None for an unreadable file)
    features: np.ndarray | None = None  # the model's features of the cell (``Classifier.cell_features``)

    @property
    def ok(self) -> bool:
        return self.error is None


MIN_ADAPT_IMAGES = 32


def tta_views(x: np.ndarray) -> list[np.ndarray]:
    """The four views of a batch that test-time averaging uses: as is, two
    mirrors and a quarter turn (calibration fits on the same four)."""
    return [x, x[:, :, ::-1], x[:, ::-1], np.rot90(x, 1, axes=(1, 2))]


class Classifier:
    """A loaded model plus the compiled forward pass that serves it."""

    def __init__(self, model, card: dict, model_path: str | os.PathLike | None = None):
        import keras
        import tensorflow as tf

        from ..models.ensemble import member_widths, own_widths

        self.model, self.card = model, card
        self.model_path = Path(model_path) if model_path else None
        self.classes: list[str] = list(card["classes"])
        self.size: int = int(card["input_size"])
        self.framing: str = framing_of(card)
        self.default_views: int = default_views(card)
        self.name: str = card.get("name", self.model_path.stem if self.model_path else "model")
        both = keras.Model(model.input, [model.output, model.get_layer("features").output])
        self._widths, self._own = member_widths(model), own_widths(model)
        self._forward = tf.function(
            lambda x: both(x, training=False),
            input_signature=[tf.TensorSpec([None, self.size, self.size, 3], tf.float32)],
            reduce_retracing=True,
        )

    @property
    def warm(self) -> bool:
        """Whether the forward pass is traced (by :meth:`warm_up` or a first batch)."""
        return self._forward.experimental_get_tracing_count() > 0

    def warm_up(self) -> None:
        """Trace and optimise the forward pass on one blank cell. The first
        call does this once, seconds for an ensemble on a slow CPU; done while
        the user is still choosing a folder, it stays out of the first result.
        (Freezing the weights into the graph as well runs it 1.2x faster but
        adds about 730 MB to the app's peak memory: ``bench.forward_levers``.)"""
        self._forward(np.zeros((1, self.size, self.size, 3), np.float32))

    @property
    def default_tta(self) -> bool:
        """Whether to average the four views when the user does not say."""
        return self.default_views == 4

    def described(self, tta: bool) -> str:
        """The name a result records: the model's, and the views when they
        are not its default, so a count can be traced to how it was made."""
        if tta == self.default_tta:
            return self.name
        return f"{self.name} ({views_phrase(4 if tta else 1)}, not its default)"

    @classmethod
    def open(cls, model_path: str | os.PathLike) -> "Classifier":
        from ..models.modelfile import load_model

        model, card = load_model(model_path)
        return cls(model, card, model_path)

    def adapted_to(self, files: Sequence[Path], max_images: int = 512, seed: int = 0) -> "Classifier":
        """A copy whose BatchNorm statistics are re-estimated on the user's own
        images (AdaBN): no labels needed, no weight changed. Another lab's
        stain and optics shift every layer's statistics; re-estimating them
        on that lab's cells undoes much of the shift (measured in
        training/RESULTS.md). Needs a few dozen readable cells."""
        from ..models.modelfile import inference_copy
        from ..models.batchnorm import recalibrate_batchnorm

        pixels = []
        for path in sample_in_order(files, max_images, seed):
            try:
                pixels.append(self.view(path))
            except ImageReadError:
                continue
        if len(pixels) < MIN_ADAPT_IMAGES:
            raise ValueError(f"adapting needs at least {MIN_ADAPT_IMAGES} readable images, found {len(pixels)}")
        model = inference_copy(self.model, always=True)
        if recalibrate_batchnorm(model, np.stack(pixels)) == 0:
            raise ValueError("this model has no BatchNorm statistics to adapt")
        card = dict(self.card, name=f"{self.name} (adapted to {len(pixels)} cells)")
        return Classifier(model, card, self.model_path)

    def view(self, path: str | os.PathLike, field_box: Box | None = None) -> np.ndarray:
        """A cell as this model sees it (``cells.view_of``)."""
        return view_of(path, self.size, self.framing, field_box)

    def predict_arrays(self, pixels: np.ndarray, tta: bool = False, batch_size: int = 32) -> np.ndarray:
        """Probabilities for uint8 N x S x S x 3 arrays. Test-time augmentation
        averages the identity, two mirrors and a 90-degree turn."""
        return self.predict_with_features(pixels, tta, batch_size)[0]

    def predict_with_features(self, pixels: np.ndarray, tta: bool = False,
                              batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and :meth:`cell_features` of the same forward pass
        (the views' mean with ``tta``)."""
        probs, feats = [], []
        for start in range(0, len(pixels), batch_size):
            x = pixels[start:start + batch_size].astype(np.float32)
            outs = [self._forward(np.ascontiguousarray(v)) for v in (tta_views(x) if tta else [x])]
            probs.append(np.mean([p.numpy() for p, _ in outs], axis=0))
            feats.append(np.mean([self.cell_features(f.numpy()) for _, f in outs], axis=0).astype(np.float16))
        if not probs:
            return np.zeros((0, len(self.classes)), np.float32), np.zeros((0, sum(self._own)), np.float16)
        return np.concatenate(probs), np.concatenate(feats)

    def cell_features(self, joined: np.ndarray) -> np.ndarray:
        """The ``features`` layer's values as a head on them wants them: each
        member's own block at unit length (``calibrate.members_unit``). Kept in
        half precision per cell (6 KB for the shipped model): the folder's
        self-training (``folder_training``) fits on them once the folder is done."""
        return members_unit(joined, self._widths, self._own)

    def classify(
        self,
        inputs: Sequence[str | os.PathLike],
        batch_size: int = 32,
        tta: bool = False,
        cancel: CancelToken | None = None,
        keep_pixels: bool = False,
        mode: str = "auto",
    ) -> Iterator[Prediction]:
        """Yield a :class:`Prediction` per white cell of each file found in
        ``inputs`` (files or folders), in order; unreadable files yield their
        error and the run goes on. ``mode``: see ``cells.cut_cells``."""
        files, skipped = collect_images(inputs)
        yield from self.classify_collected(files, skipped, batch_size, tta, cancel, keep_pixels, mode)

    def classify_collected(
        self, files: Sequence[Path], skipped: Sequence[Skipped], batch_size: int = 32, tta: bool = False,
        cancel: CancelToken | None = None, keep_pixels: bool = False, mode: str = "auto",
    ) -> Iterator[Prediction]:
        """What :func:`collect_images` found: the files it skipped as errors
        first, then each image's predictions."""
        for s in skipped:
            yield Prediction(s.path, error=s.reason)
        yield from self.classify_files(files, batch_size, tta, cancel, keep_pixels, mode)

    def classify_files(
        self, files: Sequence[Path], batch_size: int = 32, tta: bool = False, cancel: CancelToken | None = None,
        keep_pixels: bool = False, mode: str = "auto",
    ) -> Iterator[Prediction]:
        batches = [files[i:i + batch_size] for i in range(0, len(files), batch_size)]
        # half the cores decode, the rest are TensorFlow's: more decoders only
        # preempt its compute threads, and a stalled thread stalls every kernel
        with ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) // 2)) as pool:
            stain = stain_view(self.card)
            submit = lambda batch: [pool.submit(_cells_with_stats, p, self.size, self.framing, mode, stain)  # noqa: E731
                                    for p in batch]
            pending = submit(batches[0]) if batches else []
            for index, batch in enumerate(batches):
                if cancel is not None and cancel.cancelled:
                    for f in pending:
                        f.cancel()
                    return
                current = pending
                pending = submit(batches[index + 1]) if index + 1 < len(batches) else []
                pixels, good, results = [], [], []
                for path, fut in zip(batch, current):
                    if cancel is not None and cancel.cancelled:  # finding cells takes a while: stop within a file
                        for f in current + pending:
                            f.cancel()
                        return
                    try:
                        cells = fut.result()
                    except ImageReadError as exc:
                        results.append(Prediction(str(path), error=exc.reason))
                        continue
                    if not cells:
                        results.append(Prediction(str(path), error=NO_WHITE_CELL))
                    for cut, square, stats in cells:
                        pixels.append(square)
                        good.append(len(results))
                        results.append(Prediction(str(path), pixels=square if keep_pixels else None, colour=stats,
                                                  cell=cut))
                if pixels:
                    probs, feats = self.predict_with_features(np.stack(pixels), tta=tta, batch_size=batch_size)
                    for row, i in enumerate(good):
                        k = int(probs[row].argmax())
                        results[i].label, results[i].confidence, results[i].probs = self.classes[k], float(probs[row, k]), probs[row]
                        results[i].features = feats[row]
                yield from results


def _cells_with_stats(path: Path, size: int, framing: str, mode: str,
                      stain: str) -> list[tuple[CellCut, np.ndarray, np.ndarray]]:
    """A file's cells as the model sees them, with the stain statistics of
    the view its card's references describe (``stain``), on a decode
    thread, so that finding cells and the statistics cost the forward pass
    nothing."""
    cells = cut_cells(path, size, framing, mode)
    if not cells:
        return []
    stats = colour_stats(np.stack([around if stain == SURROUNDINGS else square for _, square, around in cells]))
    return [(cut, square, s) for (cut, square, _), s in zip(cells, stats)]


@dataclass
class FolderCheck:
    """What a whole folder says of its cells: the once-per-folder warning,
    and the predictions as it leaves them. On a folder the warning fires on,
    a card's ``unfamiliar_offsets`` and ``unfamiliar_temperature`` re-weigh
    every cell and the model's sure calls teach a head on the folder's own
    cells (``folder_training``); ``caution`` says how, for the record of how
    labels were made; ``changed`` holds the cells whose label that changed."""
    notice: str | None
    predictions: list[Prediction]
    changed: list[Prediction]
    caution: str | None = None


@dataclass
class Verdict:
    notice: str | None  # the warning, None where the folder looks like the training data
    probs: np.ndarray  # the cells' probabilities as the verdict leaves them
    taught: dict[int, int]  # self-training's sure cells per class index (empty where it did not run)
    temperature: float = 1.0  # what softened ``probs``: the card's, or self-training's own


def folder_verdict(probs: np.ndarray, stats: np.ndarray | None, card: dict,
                   feats: np.ndarray | None = None) -> Verdict:
    """The folder's warning (``unlike_training``) and its cells'
    probabilities as the verdict leaves them. Where the warning fires: shifted
    by the card's ``unfamiliar_offsets``, softened by its
    ``unfamiliar_temperature``, or, given the cells' ``feats``
    (``Classifier.cell_features``), answered again by self-training on the
    folder (``folder_training``, from the shifted calls, with its own
    softening).
    Elsewhere as they are. The rule the protocol scores
    (``training/domain_warning_eval.py``) and the app applies."""
    notice = unlike_training(probs, stats, card)
    if notice is None:
        return Verdict(None, probs, {})
    offsets, temperature = unfamiliar_caution(card)
    calls = shift_probs(probs, card["classes"], offsets) if offsets else probs
    shown = temper(calls, temperature) if temperature != 1.0 else calls
    revised, taught = self_trained(feats, calls) if feats is not None else (calls, {})
    if taught:
        return Verdict(notice, revised, taught, SELF_TRAINED_TEMPERATURE)
    return Verdict(notice, shown, {}, temperature)


def folder_check(predictions: Sequence[Prediction], card: dict, self_training: bool = True) -> FolderCheck:
    """:func:`folder_verdict` on a folder's predictions; ``self_training``
    only where they carry their features."""
    ok = [p for p in predictions if p.ok]
    if not ok:
        return FolderCheck(None, list(predictions), [])
    stats = np.stack([p.colour for p in ok]) if all(p.colour is not None for p in ok) else None
    feats = np.stack([p.features for p in ok]) if self_training and all(p.features is not None for p in ok) else None
    probs = np.stack([p.probs for p in ok])
    verdict = folder_verdict(probs, stats, card, feats)
    if verdict.probs is probs:  # nothing re-weighed
        return FolderCheck(verdict.notice, list(predictions), [])
    classes = list(card["classes"])
    offsets, temperature = unfamiliar_caution(card)[0], verdict.temperature
    shifted = iter(verdict.probs)
    revised = []
    for p in predictions:
        if p.ok:
            row = next(shifted)
            k = int(row.argmax())
            p = replace(p, label=classes[k], confidence=float(row[k]), probs=row)
        revised.append(p)
    changed = [new for old, new in zip(predictions, revised) if new.ok and new.label != old.label]
    notice, how = verdict.notice, []
    if offsets:
        named = " or ".join(filter(None, (", ".join(list(offsets)[:-1]), list(offsets)[-1])))
        notice += f". On a folder like this it asks for more evidence before it answers {named} (logit offsets {describe(offsets)})"
        how.append(describe(offsets))
    if verdict.taught:
        sure = sum(verdict.taught.values())
        notice += (f". It learnt this folder's look from the {sure} of its {len(ok)} cells it is at least "
                   f"{PSEUDO_LABEL_SURE:.0%} sure of ({', '.join(f'{classes[c]} {n}' for c, n in verdict.taught.items())}), "
                   f"with the classes it gave them, and answered the folder again, half and half with its own answer")
        how.append(f"self-trained on {sure} sure cells")
    if offsets or verdict.taught:
        notice += f": {len(changed)} of {len(ok)} cells changed label"
    if temperature != 1.0:
        notice += (f". Its confidences are softened (temperature {temperature:g}: on labs it never saw it is "
                   f"surer than it is right), so more of its cells are flagged for review")
        how.append(f"temperature {temperature:g}")
    return FolderCheck(notice, revised, changed, f"unfamiliar-lab caution: {'; '.join(how)}")


def write_predictions_csv(path: str | os.PathLike, predictions: Sequence[Prediction], classes: Sequence[str], model_name: str = "") -> None:
    """One row per white cell: ``path,cell,x,y,w,h,at_border,label,confidence,
    prob_<class>...`` plus the model and any error (an unreadable file, or a
    photo with no white cell, has one row with the error and no label)."""
    stamp = _dt.datetime.now().isoformat(timespec="seconds")
    header = (CELL_COLUMNS + ["label", "confidence"] + [f"prob_{c}" for c in classes]
              + ["model", "timestamp", "error"])
    rows = (
        cell_columns(p.path, p.cell and p.cell.index, p.cell and p.cell.box, bool(p.cell and p.cell.at_border))
        + [p.label or "", f"{p.confidence:.4f}" if p.ok else ""]
        + ([f"{v:.4f}" for v in p.probs] if p.probs is not None else [""] * len(classes))
        + [model_name, stamp, p.error or ""]
        for p in predictions
    )
    write_csv(path, header, rows)
