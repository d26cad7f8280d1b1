"""Ship the protocol's winning lever: the shipped compact model and an
EfficientNet-Lite0 (ImageNet) model joined as one model file.

    python training/ship_ensemble.py --lite0-run training/runs/crosslab_lite0_128_lisc [--out M.keras]

Both members were trained without lisc, so lisc stays a lab the shipped
model never saw. The held-out test figures use only the cells in *both*
members' test splits (each member split its data at its own input size),
so no member ever trained on a scored cell. The card gets the folder-
warning thresholds, the speed, and the members' provenance.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crosslab import read_rows, variant_config  # noqa: E402
from recipe import (  # noqa: E402
    COMMON_FIVE, CREDITS, LIMITATIONS, WITH_A_GPU, brief_metrics, classify_speed, lab_arrays, source_rows,
    train_config, write_markdown_card,
)
from run_models import best_epoch_model  # noqa: E402

from wbc_desktop.engine.infer.classify import Classifier  # noqa: E402
from wbc_desktop.engine.models.builders import count_params  # noqa: E402
from wbc_desktop.engine.models.ensemble import build_ensemble  # noqa: E402
from wbc_desktop.engine.models.modelfile import load_model, new_card, read_card, save_model, update_card  # noqa: E402
from wbc_desktop.engine.train.evaluation import compute_metrics  # noqa: E402
from wbc_desktop.engine.train.finetune import prepare_for  # noqa: E402
from wbc_desktop.engine.train.trainer import reference_for  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lite0-run", required=True)
    parser.add_argument("--compact", default=str(ROOT / "training" / "runs" / "final" / "wbc_compact_as_is.keras"),
                        help="the compact member: training/recipe.py --config training/protocol_base.json")
    parser.add_argument("--config", default=str(ROOT / "training" / "protocol_base.json"))
    parser.add_argument("--unseen", default="lisc")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    spec = json.loads(Path(args.config).read_text())
    base = (ROOT / spec["datasets_dir"]).resolve()
    compact, compact_card = load_model(args.compact)
    lite0, lite0_card = best_epoch_model(args.lite0_run)
    if compact_card["classes"] != lite0_card["classes"]:
        raise SystemExit("the members' classes differ")
    size = lite0_card["input_size"]
    model = build_ensemble([compact, lite0], size, name="compact_lite0")
    clf = Classifier(model, {"classes": compact_card["classes"], "input_size": size})

    # held-out test cells: in both members' test splits
    sources = spec["sources"]
    compact_split = prepare_for(train_config(spec), [base / s for s in sources])
    rows = read_rows(Path(args.lite0_run).parent)
    lite0_cfg = variant_config(spec, next(r["overrides"] for r in rows if r["variant"] == "lite0_128"))
    lite0_split = prepare_for(lite0_cfg, [base / s for s in spec["crosslab_labs"] if s != args.unseen])
    both = {str(p) for p in compact_split.test.paths} & {str(p) for p in lite0_split.test.paths}
    data = lite0_split  # decoded at the ensemble's input size
    by_source = {}
    for src in sources:
        keep = [i for i in source_rows(data.test.paths, src) if str(data.test.paths[i]) in both]
        probs = clf.predict_arrays(data.test.x[keep], tta=True)
        by_source[src] = brief_metrics(compute_metrics(data.test.y[keep], probs, clf.classes))
        print(src, by_source[src], flush=True)
    x, y = lab_arrays(base / args.unseen, [c for c in COMMON_FIVE if c in clf.classes], size)
    common = [c for c in COMMON_FIVE if c in clf.classes]
    y = [clf.classes.index(common[i]) for i in y]
    unseen = {views: brief_metrics(compute_metrics(y, clf.predict_arrays(x, tta=views == "four_views"), clf.classes))
              for views in ("four_views", "one_view")}
    print(args.unseen, unseen, flush=True)
    check = reference_for(model, data, size)
    trainable, total = count_params(model)
    card = new_card(
        name="WBC-ensemble (compact-96-lab + EfficientNet-Lite0-128 ImageNet)", classes=compact_card["classes"],
        input_size=size, architecture="ensemble: compact CNN 96 px (l-alpha-beta) and EfficientNet-Lite0 128 px "
                                      "(ImageNet), features joined, logits averaged",
        weights_origin=f"{compact_card['name']} and a Lite0 fine-tuned from ImageNet ({lite0_card['weights_origin']})",
        parameters={"total": total, "trainable": trainable},
        members=[{"name": compact_card["name"], "trained_on": compact_card.get("training_data", {}).get("counts"),
                  "hyperparameters": compact_card.get("hyperparameters")},
                 {"name": "EfficientNet-Lite0 128 px", "run": Path(args.lite0_run).name,
                  "trained_on": "pbc (2400 train / 600 val images), bccd, tecom (crosslab protocol)",
                  "hyperparameters": lite0_card.get("hyperparameters")}],
        test_metrics=by_source.get("pbc"), test_metrics_by_source=by_source,
        unseen_lab_evaluations={args.unseen: unseen["four_views"]},
        unseen_lab_one_view={args.unseen: unseen["one_view"]}, domain_check=check, limitations=LIMITATIONS,
        recipe="training/ship_ensemble.py (members: training/recipe.py, training/crosslab.py)",
    )
    out = save_model(model, card, args.out)
    update_card(out, classify_speed=classify_speed(out, base / "pbc"))
    finish_card(out, spec, args.unseen)
    print(f"saved {out} ({out.stat().st_size / 1e6:.1f} MB)", flush=True)
    return 0


def finish_card(path: Path, spec: dict, unseen: str) -> None:
    """What every shipped card holds (credits, training data, settings), and
    the markdown card beside the model file."""
    card = read_card(path)
    members = card["members"]
    card = update_card(path, data_credits={s: CREDITS.get(s, "") for s in spec["sources"]},
                       training_data={"members": [m["trained_on"] for m in members], "unseen_lab": unseen},
                       hyperparameters={m["name"]: m["hyperparameters"] for m in members},
                       with_a_gpu=WITH_A_GPU)
    write_markdown_card(card, {unseen: card["unseen_lab_evaluations"][unseen]}, Path(path).with_suffix(".md"))


if __name__ == "__main__":
    sys.exit(main())
