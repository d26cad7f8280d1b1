"""Classifying the open sources as a worker job: a header first (how many
files, which model really classifies them), then results in chunks, so the
GUI updates once per chunk and its event loop stays free, and last the
folder's verdict: its notice when it looks unlike the model's training
data, and the cells whose label that re-weighs (``folder_check``)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable, Iterator

from ..engine.data.dataset import collect_images
from ..engine.progress import CancelToken

CHUNK_CELLS, CHUNK_SECONDS = 64, 0.25


def classification(classifier, sources: list[str], adapt: bool, tta: bool, mode: str = "auto",
                   self_training: bool = True) -> Callable[[CancelToken], Iterator]:
    """With ``adapt``, an AdaBN copy of ``classifier`` is made on these
    files first (on the worker) and the header names that copy;
    ``self_training``: see ``folder_check``."""

    def job(cancel: CancelToken):
        from ..engine.infer.classify import folder_check

        files, skipped = collect_images(sources)
        model = classifier.adapted_to(files) if adapt else classifier
        yield {"total": len(files) + len(skipped), "model_name": model.described(tta),
               "model_version": str(model.card.get("engine_version", ""))}
        chunk, done, last = [], [], time.monotonic()
        for pred in model.classify_collected(files, skipped, batch_size=32, tta=tta, cancel=cancel, keep_pixels=True,
                                             mode=mode):
            chunk.append(pred)
            done.append(replace(pred, pixels=None))  # the thumbnails are the GUI's; the verdict needs the rest
            if len(chunk) >= CHUNK_CELLS or time.monotonic() - last > CHUNK_SECONDS:
                yield chunk
                chunk, last = [], time.monotonic()
        if chunk:
            yield chunk
        check = folder_check(done, model.card, self_training)  # only for a folder classified to its end
        yield {"notice": check.notice, "caution": check.caution,
               "revised": [p for p in check.predictions if p.ok] if check.caution else []}

    return job
