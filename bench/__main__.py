"""Run every benchmark and print one table of figures and same-run ratios.

    python -m bench [--images 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--json", help="also write the raw figures here")
    args = parser.parse_args()
    from . import calibrate_speed, classify_speed, field_speed, memory_finetune, startup

    t0 = time.time()
    speed = classify_speed.run(args.images)
    mem = memory_finetune.run()
    start = startup.run()
    fields = field_speed.run()
    cal = calibrate_speed.run()
    peak = speed["matmul_peak_gflops"]
    lines = ["| measure | value | ratio / goal |", "|---|---|---|"]
    for m in speed["models"]:
        lines += [
            f"| {m['model']} ({m['size']} px): end-to-end classify | {m['e2e_ips']:.1f} img/s | "
            f"{m['e2e_ips'] / m['bare_ips']:.2f}x bare forward (goal >= 0.9), {m['e2e_ips'] / m['naive_ips']:.1f}x naive loop (goal >= 7) |",
            f"| {m['model']}: end-to-end classify, 4-view averaging | {m['e2e_tta_ips']:.1f} img/s | "
            f"{m['e2e_tta_ips'] / m['e2e_ips']:.2f}x one view |",
            f"| {m['model']}: end-to-end classify with its default views ({m['default_views']}) | "
            f"{m['e2e_default_ips']:.1f} img/s | goal >= 50 for the shipped model |",
            f"| {m['model']}: self-training a warned folder of {m['n_images']} cells once classified "
            f"(fitted on {m['self_training_cells']}: every cell counted sure, the worst case) | "
            f"{m['self_training_s']:.2f} s | {m['self_training_s'] * m['e2e_ips'] / m['n_images']:.2f}x the folder's "
            f"one-view classification |" if m["self_training_cells"] else
            f"| {m['model']}: self-training a warned folder | nothing to fit | it called the folder's cells "
            f"fewer than two classes |",
            f"| {m['model']}: bare batched forward | {m['bare_ips']:.1f} img/s | naive per-image predict {m['naive_ips']:.1f} img/s |",
            f"| {m['model']}: decode + resize, one core | {m['decode_ms']:.2f} ms/img | "
            f"end-to-end ceiling with decoding sharing the cores: {m['e2e_ceiling']:.2f}x bare |",
            f"| {m['model']}: forward GFLOP/s | {m['gflops']:.0f} ({m['gflop_per_image']:.2f} GFLOP/img) | "
            f"{m['gflops'] / peak:.0%} of matmul peak {peak:.0f} GFLOP/s; at 100 % of peak at most "
            f"{peak / (m['naive_ips'] * m['gflop_per_image']):.1f}x the naive loop |",
        ]
    lines += [
        f"| peak memory, app idle with model | {mem['idle_app']['peak_mb']:.0f} MB | |",
        f"| peak memory, classify 1,000 images | {mem['classify_1000']['peak_mb']:.0f} MB | goal < 1536 MB |",
        f"| head-only fine-tune, 300 images, 5 epochs | {mem['finetune_head']['seconds']:.0f} s, "
        f"{mem['finetune_head']['peak_mb']:.0f} MB | goal < 60 s, < 2560 MB |",
        f"| deeper fine-tune (conv4-5 + head), 300 images, 5 epochs | {mem['finetune_deeper']['seconds']:.0f} s, "
        f"{mem['finetune_deeper']['peak_mb']:.0f} MB | goal < 3584 MB |",
        f"| start-up: main window shown | {start['window_shown_s']:.2f} s | goal < 1.5 s |",
        f"| start-up: model ready | {start['model_ready_s']:.2f} s | goal < 8 s |",
        f"| start-up: forward pass traced in the background | {start['model_warm_s']:.2f} s | "
        f"then the first cell takes {1000 * start['first_cell_s']:.0f} ms |",
        f"| find the white cells, 640x480 photo | {fields['localise_640_ms']:.0f} ms | goal <= 150 ms |",
        f"| find the white cells, 2048x1536 photo | {fields['localise_2048_ms']:.0f} ms | "
        f"{fields['localise_2048_ms'] / fields['localise_640_ms']:.1f}x the 640x480 photo (10x the pixels) |",
        f"| peak memory, one 2048x1536 photo decoded and searched | {fields['peak_mb_2048']:.0f} MB | "
        f"+{fields['peak_mb_2048'] - fields['peak_mb_decoded_only']:.0f} MB over decoding it alone |",
        f"| field photos end to end, {fields['views']} view(s) ({fields['cells_per_photo']:.1f} cells a photo) | "
        f"{fields['e2e_cps']:.1f} cells/s | {fields['e2e_cps'] / fields['bare_cps']:.2f}x the bare forward pass "
        "on the same cells |",
        f"| calibrate to a lab, 5 cells per class, own features only | {cal['own_calibrate_s']:.0f} s | goal <= 120 s |",
        f"| calibrate to a lab, 5 cells per class, own and generic features (the default) | "
        f"{cal['generic_calibrate_s']:.0f} s | goal <= 120 s |",
        f"| calibrate to a lab, 5 cells per class and {cal['unlabelled_used']} of a folder's unlabelled cells "
        f"(self-training) | {cal['self_training_calibrate_s']:.0f} s | goal <= 120 s |",
        f"| the app's Calibrate now on that classified folder, to the folder shown as the lab model classifies it | "
        f"{cal['app_calibrate_s']:.0f} s | goal <= 120 s |",
        f"| lab model classifying, {cal['views']} view(s): own features only | {cal['own_ips']:.1f} img/s | "
        f"{cal['own_ips'] / cal['base_ips']:.2f}x its base model |",
        f"| lab model classifying, {cal['views']} view(s): own and generic features | {cal['generic_ips']:.1f} img/s | "
        f"{cal['generic_ips'] / cal['base_ips']:.2f}x its base model |",
        f"| peak memory, calibrating four times and classifying {cal['n_images']} images with two of the lab models | "
        f"{cal['peak_mb']:.0f} MB | goal < 1536 MB |",
    ]
    print("\n".join(lines))
    print(f"\n(bench took {time.time() - t0:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"speed": speed, "memory": mem, "startup": start, "fields": fields, "calibrate": cal}, f, indent=1)


if __name__ == "__main__":
    main()
