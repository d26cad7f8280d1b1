"""Ship the protocol's winner when it joins several recipe models: their
model files joined as one (``engine.models.ensemble``: features side by
side, logits averaged), with the shipped card.

    python training/recipe.py --config training/member_tight.json --only final
    python training/recipe.py --config training/member_tight_grey.json --only final
    python training/ship_ensemble.py [--config training/shipped_model.json]

The config lists its members' recipe configs; each member's ``output`` is
the model file its recipe wrote; one whose file is gone is taken out of
the shipped file (``output``) when its card keeps it. Members must share one split (the same
sources, seed, size and framing), so the held-out test cells are held out
from every member. The card gets the default view count (``test_views``,
chosen on the protocol: ``crosslab.py --views``), the test splits with it
and with the other count, the protocol folds of ``crosslab_variant`` (the same members' fold models
joined: ``crosslab.py --ensemble``) as the estimate for a new lab, the
folder-warning thresholds, the speed and the members' provenance.

With ``joint_head`` in the config (``{"C": 0.01, "count_as": {"pbc": 2400}}``)
the joined head is fitted again on the members' features of the split's
training cells, cut as the model is used (``engine.train.joint_head``;
``count_as``: a source's cells weighted to count as that many, as the
protocol's folds held them; ``"taps": true``: on each member's pooled
mid-level activations too, ``engine.models.ensemble.tap_layers``). The members' own heads are then no longer in
the file, so its card names the commit whose shipped file still kept them
(``members_from``), and taking a member apart reads that file from git.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from recipe import (  # noqa: E402
    CREDITS, LIMITATIONS, WITH_A_GPU, brief_metrics, classify_speed, protocol_folds, source_rows, train_config,
    write_markdown_card,
)
from crosslab import joint_head_entry, recut, recut_split  # noqa: E402
from run_models import join  # noqa: E402

from wbc_desktop.engine.infer.classify import Classifier  # noqa: E402
from wbc_desktop.engine.models.ensemble import head_biases, take_apart  # noqa: E402
from wbc_desktop.engine.models.builders import count_params  # noqa: E402
from wbc_desktop.engine.models.class_offsets import (  # noqa: E402
    UNFAMILIAR_OFFSETS, UNFAMILIAR_TEMPERATURE, offset_vector, shift_head,
)
from wbc_desktop.engine.models.modelfile import (  # noqa: E402
    default_views, framing_of, load_model, new_card, read_card, save_model, update_card,
)
from wbc_desktop.engine.train.evaluation import compute_metrics  # noqa: E402
from wbc_desktop.engine.train.finetune import prepare_for  # noqa: E402
from wbc_desktop.engine.train.joint_head import JOINT_HEAD_C, count_as, refit_head  # noqa: E402
from wbc_desktop.engine.train.trainer import reference_for  # noqa: E402


def member_entry(model, card: dict) -> dict:
    """A member as the shipped card lists it: where it came from, how it
    scored alone, and what joining it again needs (its size, preprocessing
    and head bias)."""
    return {"name": card["name"], "recipe": card.get("recipe"),
            "trained_on": (card.get("training_data") or {}).get("counts") or card.get("trained_on"),
            "hyperparameters": card.get("hyperparameters"), "test_metrics": card.get("test_metrics"),
            **{key: card.get(key) for key in ("input_size", "architecture", "weights_origin", "preprocessing",
                                              "training_data")},
            "head_bias": head_biases([model])[0], **({SHARED: True} if card.get(SHARED) else {})}


def measured(clf: Classifier, data, data_framing: str, spec: dict) -> dict:
    """The card's measured parts: each source's held-out test cells with the
    default views and with the other count, and the folder-warning
    references, all with the cells cut as the model is used (its test
    framing may differ from the members' training framing, which made the
    split)."""
    if clf.framing != data_framing:  # cut again from the same files: the split stays the members'
        recut_split(data, clf.size, clf.framing)
    views = default_views(spec)  # the card's rule and check, on the config's key of the same name
    tta = views == 4
    other = "one_view" if tta else "four_views"
    by_source, by_source_other = {}, {}
    for src in spec["sources"]:
        rows = source_rows(data.test.paths, src)
        x, y = data.test.x[rows], data.test.y[rows]
        by_source[src] = brief_metrics(compute_metrics(y, clf.predict_arrays(x, tta=tta), clf.classes))
        by_source_other[src] = brief_metrics(compute_metrics(y, clf.predict_arrays(x, tta=not tta), clf.classes))
        print(src, f"{views} view(s)", by_source[src], "\n", src, other, by_source_other[src], flush=True)
    return {"test_metrics": by_source.get("pbc"), "test_metrics_by_source": by_source,
            f"test_metrics_{other}_by_source": by_source_other,
            "domain_check": reference_for(clf.model, data, clf.size, tta=tta)}


SHARED = "head_bias_shared"  # a member entry whose head bias is its share of the joined bias, not its own


def member_biases(model, card: dict, wanted: set[str]) -> list[list[float]] | None:
    """Each member's head bias, as joining them again needs it, or None when
    the shipped file cannot be taken apart for the ``wanted`` members. A
    card written before members kept their biases (v5's) holds only their
    mean, in the joined head (with the card's ``class_offsets`` on it); each
    such member is given that mean, which rejoins them exactly as long as
    they stay together (their sum is what the joined head keeps), but not
    one without the others, and not any one alone."""
    entries = card.get("members", [])
    shared = [e for e in entries if e.get(SHARED) or "head_bias" not in e]
    if not entries or not {e["name"] for e in shared} <= wanted:
        return None
    joined = model.get_layer("predictions").get_weights()[1]
    joined = joined - offset_vector(card["classes"], card.get("class_offsets", {}))
    own = [np.asarray(e["head_bias"]) for e in entries if "head_bias" in e and not e.get(SHARED)]
    share = [(len(entries) * joined - sum(own, np.zeros_like(joined))) / len(shared)] if shared else []
    return [e["head_bias"] if "head_bias" in e and not e.get(SHARED) else share[0].tolist() for e in entries]


def _filled(entry: dict, part, card: dict) -> dict:
    """A member entry with what an entry of a card written before kept it
    lacks: its input size (from the member itself), the preprocessing (the
    shipped file's: joining asked its members for one framing) and, from its
    hyperparameters, the architecture and weights it started from."""
    hyper = entry.get("hyperparameters") or {}
    return {"input_size": int(part.input_shape[1]), "preprocessing": card.get("preprocessing"),
            "architecture": hyper.get("arch"), "weights_origin": hyper.get("weights"),
            **{k: v for k, v in entry.items() if v is not None}}


JOINT = "joint_head"


def git_file(commit: str, path: str) -> Path:
    """A file as a commit holds it, in a temporary folder."""
    blob = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{path}"], capture_output=True, check=False)
    if blob.returncode:
        raise SystemExit(f"git cannot show {path} at {commit}: {blob.stderr.decode(errors='replace').strip()}")
    out = Path(tempfile.mkdtemp(prefix="wbc_members_")) / Path(path).name
    out.write_bytes(blob.stdout)
    return out


def members_from(shipped: Path) -> dict | None:
    """Where the members' own heads are kept: the shipped file itself while
    its head is theirs averaged, else the commit its card names."""
    if not shipped.exists():
        return None
    card = read_card(shipped)
    if JOINT in card:
        return card[JOINT].get("members_from")
    commit = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%H", "--", str(shipped)],
                            capture_output=True, text=True, check=False).stdout.strip()
    changed = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--", str(shipped)], check=False)
    return {"commit": commit, "path": shipped.relative_to(ROOT).as_posix()} if commit and not changed.returncode else None


def holds_members(joined, path: Path) -> bool:
    """Whether the model file at ``path`` joins exactly the members that
    ``joined`` (their heads averaged, no offsets) joins: a member trained
    again since must not be recorded as kept there."""
    kept, card = load_model(path)
    if [layer.name for layer in kept.layers] != [layer.name for layer in joined.layers]:
        return False
    for layer in joined.layers:
        mine, theirs = layer.get_weights(), kept.get_layer(layer.name).get_weights()
        if layer.name == "predictions":  # the kept file's bias carries its offsets
            theirs = [theirs[0], theirs[1] - offset_vector(card["classes"], card.get("class_offsets", {}))]
        if len(mine) != len(theirs) or not all(np.allclose(a, b, atol=1e-6) for a, b in zip(mine, theirs)):
            return False
    return True


def kept_members(joined, shipped: Path) -> dict | None:
    """The commit and path of a committed file that keeps ``joined``'s
    members with their own heads, or None when none does."""
    source = members_from(shipped)
    return source if source and holds_members(joined, git_file(source["commit"], source["path"])) else None


def load_members(member_specs: list[dict], shipped: Path) -> list[tuple]:
    """(model, card) of each member as its recipe wrote it. A member whose
    file is gone (run folders do not outlive a checkout) is taken out of the
    shipped file when that file kept it (its card names the member and its
    head), so a new model that changes one member trains that one alone."""
    kept = {}
    if shipped.exists() and not all((ROOT / m["output"]).exists() for m in member_specs):
        if JOINT in read_card(shipped):
            source = read_card(shipped)[JOINT].get("members_from")
            if source is None:
                raise SystemExit(f"{shipped} has a joint head and names no file that keeps its members' own heads")
            shipped = git_file(source["commit"], source["path"])
        model, card = load_model(shipped)
        entries = card.get("members", [])
        biases = member_biases(model, card, {m["name"] for m in member_specs})
        if biases is not None:
            parts = take_apart(model, biases)
            kept = {e["name"]: (part, dict(_filled(e, part, card), classes=card["classes"], head_bias=b,
                                           **({SHARED: True} if e.get(SHARED) or "head_bias" not in e else {})))
                    for part, e, b in zip(parts, entries, biases)}
    loaded = []
    for m in member_specs:
        path = ROOT / m["output"]
        if path.exists():
            loaded.append(load_model(path))
        elif m["name"] in kept:
            print(f"{m['name']}: {path} is gone; taken out of {shipped}", flush=True)
            loaded.append(kept[m["name"]])
        else:
            raise SystemExit(f"{path} is missing and {shipped} does not keep '{m['name']}': "
                             f"train it with training/recipe.py --only final")
    return loaded


def fit_joint_head(model, plain, data, cut: str, size: int, spec: dict) -> dict:
    """The joined head of ``model`` fitted again on the training split's
    cells (cut as the model is used); returns what the card keeps of it,
    with the file that keeps the members' own heads (looked for on
    ``plain``, the members joined without taps, before their heads are gone)."""
    kept = kept_members(plain, ROOT / spec["output"])
    if kept is None:
        print("no committed file keeps these members with their own heads: the card names none, and joining "
              "them again will need their own model files", flush=True)
    settings = spec[JOINT]
    C, counts = settings.get("C", JOINT_HEAD_C), settings.get("count_as", {})
    sources = np.full(len(data.train.paths), "", dtype=object)
    for s in spec["sources"]:
        sources[source_rows(data.train.paths, s)] = s
    refit_head(model, recut(data.train.paths, size, cut), data.train.y, C, count_as(sources, counts))
    return {**joint_head_entry(C, bool(settings.get("taps"))), "count_as": counts,
            "cells": {s: int((sources == s).sum()) for s in spec["sources"]}, "members_from": kept}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "training" / "shipped_model.json"))
    parser.add_argument("--crosslab-runs", default=str(ROOT / "training" / "runs"))
    parser.add_argument("--refresh-card", action="store_true",
                        help="only measure the shipped file again (its test splits and folder-warning references, "
                             "with the config's test_framing and views) and rewrite its card, without joining members")
    args = parser.parse_args()
    spec = json.loads(Path(args.config).read_text())
    member_specs = [json.loads((ROOT / m).read_text()) for m in spec["members"]]
    configs = [train_config(m) for m in member_specs]
    base = (ROOT / spec["datasets_dir"]).resolve()
    offsets = spec.get("class_offsets", {})
    if args.refresh_card:
        out = ROOT / spec["output"]
        settings = {"name": spec["name"], "test_framing": spec.get("test_framing"), "test_views": default_views(spec),
                    UNFAMILIAR_OFFSETS: spec.get(UNFAMILIAR_OFFSETS, {}),
                    UNFAMILIAR_TEMPERATURE: spec.get(UNFAMILIAR_TEMPERATURE, 1.0)}
        applied = read_card(out).get("class_offsets", {})
        if offsets != applied:  # the weights change: load, shift and save once, card included
            model, card = load_model(out)
            shift_head(model, card["classes"], offsets, applied)
            save_model(model, dict(card, class_offsets=offsets, **settings), out)
        else:
            update_card(out, **settings)
        clf = Classifier.open(out)
        data = prepare_for(configs[0], [base / s for s in spec["sources"]])
        unseen = protocol_folds(spec, Path(args.crosslab_runs))
        card = update_card(out, **measured(clf, data, configs[0].framing, spec), unseen_lab_evaluations=unseen)
        write_markdown_card(card, unseen, out.with_suffix(".md"))
        print("folder-warning threshold", card["domain_check"]["colour"]["threshold"], flush=True)
        return 0
    splits = {(c.seed, c.val_frac, c.test_frac, c.img_size, c.framing, tuple(m["sources"]))
              for c, m in zip(configs, member_specs)}
    if len(splits) != 1:
        raise SystemExit("the members were not trained on one split: their test cells would not be held out from all")
    loaded = load_members(member_specs, ROOT / spec["output"])
    cards = [card for _, card in loaded]
    if len({tuple(c["classes"]) for c in cards}) != 1 or len({framing_of(c) for c in cards}) != 1:
        raise SystemExit("the members' classes or framing differ")
    model, joined_card = join(loaded)
    size = joined_card["input_size"]
    data = prepare_for(configs[0], [base / s for s in spec["sources"]])
    joint = {}
    if spec.get(JOINT):
        tapped = join(loaded, with_taps=True)[0] if spec[JOINT].get("taps") else model
        joint = {JOINT: fit_joint_head(tapped, model, data, spec.get("test_framing") or framing_of(cards[0]), size,
                                       spec)}
        model = tapped
    shift_head(model, joined_card["classes"], offsets)
    in_use = {**({"test_framing": spec["test_framing"]} if spec.get("test_framing") else {}),
              **({"class_offsets": offsets} if offsets else {}),
              **{key: spec[key] for key in (UNFAMILIAR_OFFSETS, UNFAMILIAR_TEMPERATURE) if spec.get(key)}}
    clf = Classifier(model, dict(joined_card, **in_use))
    trainable, total = count_params(model)
    joined = ("; features joined, logits averaged" if not joint else
              "; features joined" + (" with each member's pooled mid-level activations" if joint[JOINT].get("taps")
                                     else "") + ", one head fitted on them")
    card = new_card(
        name=spec["name"], classes=cards[0]["classes"], input_size=size, framing=framing_of(cards[0]),
        architecture="ensemble of " + " and ".join(f"{c['name']}: {c['architecture']}" for c in cards) + joined,
        weights_origin="; ".join(f"{c['name']}: {c['weights_origin']}" for c in cards),
        parameters={"total": total, "trainable": trainable},
        members=[member_entry(m, c) for m, c in loaded],
        **measured(clf, data, configs[0].framing, spec), **joint,
        limitations=LIMITATIONS, with_a_gpu=WITH_A_GPU,
        data_credits={s: CREDITS.get(s, "") for s in spec["sources"]},
        training_data={"members": [c.get("training_data") for c in cards]},
        hyperparameters={c["name"]: c.get("hyperparameters") for c in cards},
        test_views=default_views(spec), **in_use,
        recipe=f"training/ship_ensemble.py --config {Path(args.config).resolve().relative_to(ROOT).as_posix()}",
    )
    out = save_model(model, card, ROOT / spec["output"])
    unseen = protocol_folds(spec, Path(args.crosslab_runs))
    card = update_card(out, classify_speed=classify_speed(out, base / spec["sources"][0]),
                       unseen_lab_evaluations=unseen)
    write_markdown_card(card, unseen, out.with_suffix(".md"))
    print(f"saved {out} ({out.stat().st_size / 1e6:.1f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
