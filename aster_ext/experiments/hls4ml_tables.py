"""Shared parts of the hls4ml comparison tables (scripts/hls4ml_compare.py,
scripts/hls4ml_cnn_compare.py, scripts/hls4ml_cnn_modes.py): their csv stores, the code version a
row was computed with, and the CNN sections of results/hls4ml.md.

Cost ratios are summarised by :func:`.tables.geomean`; ``code_version`` = the first 10 hex
digits of git's tree hash of ``aster_ext/hls4ml_backend`` (+ ``-dirty`` when that folder has
uncommitted changes), so a rerun with ``--resume`` recomputes only rows of other code.
"""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import numpy as np

from .tables import geomean

#: the CNN benchmarks of shared/benchmarks/cnn that go through hls4ml
CNN_NETS = ["Convnet_maxpool", "Convnet_avgpool", "resnet_2b", "cifar10_small"]
CNN_CSV = "hls4ml_cnn.csv"
MODES_CSV = "hls4ml_cnn_modes.csv"
TIME_CSV = "hls4ml_cnn_time.csv"
TIME_FIELDS = [
    "network", "eps", "hls4ml_total_s", "hls4ml_convert_compile_s", "hls4ml_s", "hls4ml_certify_s",
    "hls4ml_certified", "own_s", "own_ok", "own_certified", "ratio", "code", "note",
]  # fmt: skip


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a results csv ([] when it does not exist yet)."""
    if not path.is_file():
        return []
    with open(path) as fh:
        return list(csv.DictReader(fh))


def write_csv(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def code_version(root: Path, folder: str = "aster_ext/hls4ml_backend") -> str:
    """git tree hash (10 hex digits) of ``folder`` in the checkout ``root``, + '-dirty' with
    uncommitted changes there ('unknown' outside git)."""

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=root, capture_output=True, text=True).stdout.strip()

    tree = git("rev-parse", f"HEAD:{folder}")[:10] or "unknown"
    return tree + ("-dirty" if git("status", "--porcelain", "--", folder) else "")


def sampled_ratios(rows: list[dict[str, str]]) -> list[float]:
    """ours / auto with auto's error read from random points and corners only (no adversarial search
    on auto's program: the reading of runs before that search); NaN for rows without it."""
    return [float(r.get("ratio_at_sampled") or "nan") for r in rows]


def cnn_section(results: Path) -> list[str]:
    """The CNN section of results/hls4ml.md (empty without ``results/hls4ml_cnn.csv``)."""
    rows = read_csv(results / CNN_CSV)
    if not rows:
        return []
    ok = [r for r in rows if r.get("ratio_vs_auto") not in (None, "")]
    lines = [
        "",
        "## CNN classifiers (scripts/hls4ml_cnn_compare.py, results/hls4ml_cnn.csv)",
        "",
        "CNNs of ../shared/benchmarks/cnn: the MNIST Convnets (Conv2D 2x2x32 + ReLU + 4x4 max/average "
        "pooling + Dense), resnet_2b (CIFAR-10, 2 residual blocks: padded/strided Conv2D, a 1x1 "
        "shortcut conv, two merge Adds, Dense 1024-100-10) and cifar10_small (tf2onnx, NHWC input: "
        "Transpose, 2 strided Conv2D + ReLU, Transpose, Reshape, Dense 576-128-64-10; qonnx removes "
        "both Transposes, hls4ml takes the NHWC input as is), each on the 5 regions of its spec (L-inf "
        "boxes with a label); a merge Add costs one result-width adder per element. Every configuration is "
        "built and compiled by hls4ml 1.3.0 (io_parallel, Latency) and run with `hls_model.predict` on "
        "the same inputs: per region 60 random points, 20 corners, the centre, an adversarial search "
        "on auto's own program (auto's observed error, at which ours is certified, includes it; "
        "`sampled`: without it, as earlier runs read it) and one against ours' certificate. Errors: max "
        "over the logits against the real network (float64). `ours` certifies ε on the logits over "
        "every region and is checked bit for bit "
        "against our simulator; `top-1` = regions where the certificate proves the label kept on the "
        "whole box (real margin lower bound > certified margin error) / regions whose real margin lower "
        "bound is positive (the real network provably robust there) / regions. Cost = bits of the "
        "multipliers "
        "(W_x + W_w) and adders (W_acc) hls4ml instantiates: one K·C_out array per Conv2D (the latency "
        "conv pipelines its pixel loop), n_in·n_out per Dense, S adders per average-pool output; "
        "max pooling and ReLU are comparisons, not counted. `overflow` = a sound range of the real "
        "network on a region leaves [-32, 32) or the observed error exceeds 1. hls4ml's default config "
        "keeps the Dense bias as an ApplyAlpha layer (costed as n multipliers and n adders); 'auto' "
        "and ours fuse it into the Dense. ε0 = 0.01 on the logits.",
        "",
        f"Cost ours / auto (geo-mean over {len(ok)} CNNs), ours at ε = auto's observed error: "
        f"{geomean([float(r['ratio_vs_auto']) for r in ok]):.3f} (auto's error without the search: "
        f"{geomean(sampled_ratios(ok)):.3f}); certificate violations by hls4ml's "
        f"compiled model: {sum(int(r['ours_violations']) for r in ok)}; our simulator bit-exact: "
        f"{'yes, every run' if all(r['ours_bit_exact'] == 'True' for r in ok) else 'NO'}.",
        "",
        "| network | ε0 | default cost | default err | overflow | flips | auto cost | auto err | "
        "auto err (sampled) | flips | ours ε | certified | top-1 | ours cost | ours err | flips | violations "
        "| bit-exact | ours/auto | ours/auto (sampled) | ours@ε0 (certified) | certify s | inputs | code |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("ratio_vs_auto") in (None, ""):
            lines.append(f"| {r['network']} | {r['eps0']} | failed: {r.get('note', '')} |" + " |" * 20)
            continue
        lines.append(
            f"| {r['network']} | {r['eps0']} | {r['default_cost']} | {r['default_err']} | "
            f"{r['default_overflow']} | {r['default_flips']} | {r['auto_cost']} | {r['auto_err']} | "
            f"{r.get('auto_err_sampled') or 'n/a'} | "
            f"{r['auto_flips']} | {r['ours_eps']} | {r['ours_certified']} | {r['ours_top1_regions']} | "
            f"{r['ours_cost']} | {r['ours_err']} | {r['ours_flips']} | {r['ours_violations']} | "
            f"{r['ours_bit_exact']} | {r['ratio_vs_auto']} | {r.get('ratio_at_sampled') or 'n/a'} | "
            f"{r['ours_eps0_cost']} "
            f"({r['ours_eps0_certified']}) | {r['ours_certify_s']} | {r['samples']} | {r.get('code', '')} |"
        )
    return lines + cnn_modes_section(results)



def cnn_modes_section(results: Path) -> list[str]:
    """The io-type/strategy and timing parts of the CNN section of results/hls4ml.md."""
    lines: list[str] = []
    modes = read_csv(results / MODES_CSV)
    if modes:
        ok = [r for r in modes if r.get("bit_exact") in ("True", "False")]
        lines += [
            "",
            "### io types and strategies (scripts/hls4ml_cnn_modes.py modes, results/hls4ml_cnn_modes.csv)",
            "",
            "`quantize --backend hls4ml --error ε` with each io type / strategy (ReuseFactor 1); hls4ml's "
            "compiled model on per region 40 random points, 10 corners, the centre and an adversarial search "
            "against the certificate. io_stream pools differently (every window value cast to accum_t "
            "first), so its certified types can differ; the cost column uses the io_parallel cost rule for "
            "every mode (it does not model stream buffers or the Resource reuse).",
            "",
            f"Runs: {len(ok)}; bit-exact: {sum(r['bit_exact'] == 'True' for r in ok)}; certificate "
            f"violations: {sum(int(r['violations']) for r in ok)}.",
            "",
            "| network | io type | strategy | ε | certified | cost | max err | bit-exact | violations | "
            "inputs | "
            "certify s | hls4ml convert s | compile s | code |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in modes:
            if r.get("bit_exact") not in ("True", "False"):
                head = f"| {r['network']} | {r['io_type']} | {r['strategy']} | "
                lines.append(head + f"failed: {r.get('note', '')} |"
                             + " |" * 10)  # fmt: skip
                continue
            lines.append(
                f"| {r['network']} | {r['io_type']} | {r['strategy']} | {r['eps']} | {r['certified']} | "
                f"{r['cost']} | {r['max_err']} | {r['bit_exact']} | {r['violations']} | {r['samples']} | "
                f"{r['certify_s']} | "
                f"{r['convert_s']} | {r['compile_s']} | {r.get('code', '')} |"
            )
    times = read_csv(results / TIME_CSV)
    if times:
        rat = [float(r["ratio"]) for r in times if r.get("ratio")]
        lines += [
            "",
            "### time to a certified config (scripts/hls4ml_cnn_modes.py time, results/hls4ml_cnn_time.csv)",
            "",
            "Wall clock of whole CLI runs at the same ε on the same spec, one at a time, on a shared and "
            "loaded 2-core machine (noisy). `hls4ml s` = `quantize --backend hls4ml --error ε` minus "
            "hls4ml's "
            "own conversion + compilation (reported by the run); `certify s` = its load + type search only; "
            "`own s` = `quantize --task classify --error ε` (our own backend). "
            "Target: hls4ml s / own s <= 2.",
            "",
            f"hls4ml s / own s: median {np.median(rat):.2f}, max {max(rat):.2f} over {len(rat)} CNNs."
            if rat
            else "no complete pair",
            "",
            "| network | ε | hls4ml total s | hls4ml convert+compile s | hls4ml s | certify s | certified | "
            "own s | "
            "own ok | own certified | hls4ml/own | code | note |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in times:
            lines.append("| " + " | ".join(str(r.get(k, "")) for k in TIME_FIELDS) + " |")
    return lines
