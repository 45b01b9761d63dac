"""Refined mode on random smooth-activation networks of growing depth: fallback, cost, table ROM.

Networks as in ``tests/programs.py`` / issue 13: weights N(0,1)/sqrt(fan-in), biases N(0, 0.1)
(float32-representable), input box [-1, 1]^n, hidden layers of one activation, linear output.
n_in = 4, n_out = 3 for widths <= 32, n_in = 8, n_out = 4 for width 64. The network depends on
(activation, depth, width) only (same seed for every ε and setting).

Per run: ``assign_refined`` — whether it fell back to the all-maxLen program, its certified bound,
hw cost, table ROM bits (``program_cost``), wall time — then the simulator check (``verify_program``,
small budget: random + corners + local search, exact re-evaluation of the worst) for violations,
and for every ``--cpp-every``-th run the generated C++ compiled and compared bit for bit with the
simulator (``cpp_matches_simulator``). ``maxlen_bound`` (the all-maxLen program's bound) is filled
where the run fell back (it is the returned program's bound) and in the before run; elsewhere it
is not needed for the target (no fallback at all) and its maxLen tables cost 1-2 min per net.

``--label timing`` runs only ``assign_refined`` (no checks), one process at a time, and writes
``results/nonlinear_depth_timing.csv``: the times the .md reports against the 30 s target (run it
on an otherwise idle machine; the grid's own times are taken two runs at a time).
``--label before`` runs the same grid with whatever ``aster_ext`` is importable (e.g. a copy of
main's code on PYTHONPATH) and writes ``results/nonlinear_depth_before.csv``; the default label
``after`` writes ``results/nonlinear_depth.csv``; the .md compares the two when both exist.
Usage: python scripts/nonlinear_depth.py [--acts tanh ...] [--depths 2 3] [--widths 32]
       [--eps 1e-2] [--settings A C] [--workers 2] [--label after|before] [--cpp-every 8]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ACTS = ["tanh", "sigmoid", "softplus", "elu", "silu", "gelu"]
FIELDS = [
    "act", "depth", "width", "eps", "setting", "maxlen_bound", "fallback", "certified", "hw",
    "table_bits", "time_s", "violations", "max_observed", "cpp_bit_exact", "status", "code", "tables",
]  # fmt: skip


def table_shapes(program) -> str:
    """Per activation layer with a table: "index bits/entry width:entries" (space-separated), with
    "/sN" appended for a segmented table of N segments."""
    out = []
    for lp in program.layers:
        im = lp.act_impl
        if im is not None and hasattr(im, "entries"):
            seg = f"/s{len(im.parts)}" if hasattr(im, "parts") else ""
            out.append(f"{im.index_bits}/{im.entry_width}:{im.entries.shape[0]}{seg}")
    return " ".join(out)


_CODE_ID: list[str] = []


def code_id() -> str:
    """:func:`_code_id` at the first call in this process (just after aster_ext is imported): later
    edits of the worktree do not change the code a running process executes."""
    if not _CODE_ID:
        _CODE_ID.append(_code_id())
    return _CODE_ID[0]


def _code_id() -> str:
    """Folder of the imported aster_ext and its git commit (short hash, "+dirty" with uncommitted
    changes under aster_ext/): which code produced a row."""
    import subprocess

    import aster_ext

    root = Path(aster_ext.__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "aster_ext"],
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return root.name
    return f"{root.name}@{head}" + ("+dirty" if dirty else "")


def run_one(job: tuple[str, int, int, float, str, bool, str]) -> dict:
    """One grid point (module docstring)."""
    from aster_ext.aster.settings import SETTINGS
    from aster_ext.codegen.hls import generate_hls
    from aster_ext.cost import program_cost
    from aster_ext.errors import UserError
    from aster_ext.experiments.random_nets import random_activation_net
    from aster_ext.refined.solve import assign_refined, max_len_program
    from aster_ext.verify import VerifyBudget, verify_program
    from aster_ext.verify_dir import cpp_matches_simulator

    act, depth, width, eps, setting, with_cpp, label = job
    with_maxlen = label == "before"

    layers = random_activation_net(act, depth, width)
    n = layers[0].n_in
    lo, hi = -np.ones(n), np.ones(n)
    st = SETTINGS[setting]
    row: dict = {"act": act, "depth": depth, "width": width, "eps": eps, "setting": setting,
                 "code": f"{label}:{code_id()}"}  # fmt: skip
    t0 = time.perf_counter()
    try:
        res = assign_refined(layers, lo, hi, eps, setting, name="net")
    except UserError as exc:
        row.update(status=f"infeasible: {str(exc)[:50]}", time_s=round(time.perf_counter() - t0, 1))
        smallest = getattr(exc, "smallest_error", None)
        if smallest is not None:  # the all-maxLen program's bound: ε is out of this analysis' reach
            row["maxlen_bound"] = f"{smallest:.3g}"
        return row
    row["time_s"] = round(time.perf_counter() - t0, 1)
    fb = bool(getattr(res, "max_width_fallback", False)) or "all-maxLen" in res.solver_status
    if fb:  # the returned program is the all-maxLen one: its bound is the maxLen bound
        row["maxlen_bound"] = f"{res.certificate.bound:.3g}"
    elif with_maxlen:  # its maxLen tables cost ~1-2 min per net (rigorous table build)
        _, c0 = max_len_program("net", layers, lo, hi, st)
        row["maxlen_bound"] = f"{c0.bound:.3g}"
    cost = program_cost(res.program)
    row.update(fallback=int(fb), certified=f"{res.certificate.bound:.3g}", hw=cost.hw,
               table_bits=cost.table_bits, status=res.solver_status,
               tables=table_shapes(res.program))  # fmt: skip
    if label in ("before", "timing"):  # cost only (the before programs were verified on main)
        return row
    budget = VerifyBudget(samples=300, search_starts=4, search_iters=15, search_batch=32)
    ver = verify_program(res.program, layers, lo, hi, res.certificate.output_bound, st.no_init_error, budget)
    row.update(violations=ver.violations, max_observed=f"{ver.max_observed_error:.3g}")
    if with_cpp:
        with tempfile.TemporaryDirectory() as tmp:
            generate_hls(res.program, Path(tmp))
            same, _ = cpp_matches_simulator(res.program, Path(tmp), lo, hi, 0, n=50)
        row["cpp_bit_exact"] = int(same)
    return row


NB_FIELDS = ["act", "depth", "width", "eps", "setting", "move", "ok", "bound", "hw", "table_bits",
             "cost", "within_eps", "cheaper"]  # fmt: skip


def run_neighbours(point: str) -> list[dict]:
    """``--neighbours act:depth:width:eps:setting``: is the refined result a local optimum of
    hw + ROM_WEIGHT·table_bits among certified programs? From the returned F, Fw, δ: every layer's
    δ_l x4 and x2 alone, every F and Fw + 1 with every δ x2 / x4, and for every ordered pair of
    activation layers δ_i / 4 with δ_j x4 (and / 2 with x2); each program is built and certified
    like the search's own (build_program, certify_forms). Row 0 (move "result") is the returned
    program itself; ``cheaper`` = 1 where a move certifies within ε at a lower cost."""
    from aster_ext.aster.settings import SETTINGS
    from aster_ext.cost import program_cost
    from aster_ext.ranges import ExactParams
    from aster_ext.refined import build_program, certify_forms, symbolic_ranges
    from aster_ext.refined.model import ROM_WEIGHT
    from aster_ext.refined.solve import assign_refined

    act, depth, width, eps, setting = point.split(":")
    depth, width, eps = int(depth), int(width), float(eps)
    from aster_ext.experiments.random_nets import random_activation_net

    layers = random_activation_net(act, depth, width)
    n = layers[0].n_in
    lo, hi = -np.ones(n), np.ones(n)
    st = SETTINGS[setting]
    res = assign_refined(layers, lo, hi, eps, setting, name="net")
    ps = [ExactParams.of(layer) for layer in layers]
    rg = symbolic_ranges(layers, lo, hi, ps)
    f0 = [np.asarray(v, dtype=np.int64) for v in res.dot_bits]
    fw0 = [np.asarray(v, dtype=np.int64) for v in res.weight_bits]
    d0 = list(res.act_delta)
    base = {"act": act, "depth": depth, "width": width, "eps": eps, "setting": setting}
    cache: dict = {}

    def row(move: str, deltas: list[float], f: list, fw: list, ref: float | None) -> dict:
        prog, _ = build_program("net", layers, f, fw, st, lo, hi, ps, rg, True, True, deltas, cache)
        cert = certify_forms(prog, layers, lo, hi, st.no_init_error, rg, True)
        c = program_cost(prog)
        cost = c.hw + ROM_WEIGHT * c.table_bits
        within = bool(cert.ok and cert.bound <= eps)
        return {**base, "move": move, "ok": int(cert.ok), "bound": f"{cert.bound:.4g}", "hw": c.hw,
                "table_bits": c.table_bits, "cost": f"{cost:.0f}", "within_eps": int(within),
                "cheaper": int(within and ref is not None and cost < ref)}  # fmt: skip

    first = row("result", d0, f0, fw0, None)
    ref = float(first["cost"])
    rows = [first]
    acts = [i for i, d in enumerate(d0) if d > 0]
    for li in acts:
        for fac in (4.0, 2.0):
            d = list(d0)
            d[li] *= fac
            rows.append(row(f"d{li}x{fac:g}", d, f0, fw0, ref))
    for fac in (2.0, 4.0):
        up = [np.minimum(v + 1, st.max_len) for v in f0]
        upw = [np.minimum(v + 1, st.max_len) for v in fw0]
        rows.append(row(f"F+1 all dx{fac:g}", [x * fac for x in d0], up, upw, ref))
    for i in acts:
        for j in acts:
            if i == j:
                continue
            for fac in (4.0, 2.0):
                d = list(d0)
                d[i] /= fac
                d[j] *= fac
                rows.append(row(f"d{i}/{fac:g} d{j}x{fac:g}", d, f0, fw0, ref))
    return rows


EXT = ROOT.parent / "shared" / "benchmarks" / "external"
MNIST = [  # (network, box radius in pixel levels (0 = the spec's full box), value of one level, ε)
    ("tansig_200_50_onnx", 0, 1.0, 1e-2),
    ("tansig_200_50_onnx", 2, 1.0, 1e-3),
    ("ffnnSIGMOID__Point_6x200", 2, 1.0 / 255, 10.0),
]
MNIST_FIELDS = ["network", "box", "eps", "maxlen_bound", "fallback", "certified", "hw", "table_bits",
                "time_s", "violations", "status", "code"]  # fmt: skip


def run_mnist(job: tuple[str, float, float, float, str]) -> dict:
    """One external MNIST network on the full box or sample 0 ± r levels, setting A (same checks)."""
    from aster_ext.aster.settings import SETTINGS
    from aster_ext.cost import program_cost
    from aster_ext.errors import UserError
    from aster_ext.frontend import load_model
    from aster_ext.ir import dense_chain
    from aster_ext.pipeline import allowed_activations
    from aster_ext.refined.solve import assign_refined, max_len_program
    from aster_ext.spec import load_spec
    from aster_ext.verify import VerifyBudget, verify_program

    name, r, level, eps, label = job
    net, _ = load_model(EXT / f"{name}.onnx")
    layers = dense_chain(net, allowed_activations("refined"))
    spec = load_spec(EXT / f"{name}.spec.json")
    lo = np.asarray(spec.input_lower, dtype=np.float64)
    hi = np.asarray(spec.input_upper, dtype=np.float64)
    if r > 0:
        x = np.asarray(spec.samples, dtype=np.float64)[0]
        lo, hi = np.maximum(lo, x - r * level), np.minimum(hi, x + r * level)
    st = SETTINGS["A"]
    row: dict = {"network": name, "box": "full" if r == 0 else f"sample0±{r:g}lv", "eps": eps,
                 "code": f"{label}:{code_id()}"}  # fmt: skip
    if label == "before":  # the after run fills it only where it falls back (see run_one)
        _, c0 = max_len_program(name, layers, lo, hi, st)
        row["maxlen_bound"] = f"{c0.bound:.3g}"
    t0 = time.perf_counter()
    try:
        res = assign_refined(layers, lo, hi, eps, "A", name="net")
    except UserError as exc:
        row.update(status=f"infeasible: {str(exc)[:50]}", time_s=round(time.perf_counter() - t0, 1))
        return row
    cost = program_cost(res.program)
    fb = bool(getattr(res, "max_width_fallback", False)) or "all-maxLen" in res.solver_status
    row.update(time_s=round(time.perf_counter() - t0, 1), fallback=int(fb),
               certified=f"{res.certificate.bound:.3g}", hw=cost.hw, table_bits=cost.table_bits,
               status=res.solver_status)  # fmt: skip
    if fb:
        row["maxlen_bound"] = f"{res.certificate.bound:.3g}"
    if label == "after":
        budget = VerifyBudget(samples=200, search_starts=2, search_iters=10, search_batch=16)
        bound = res.certificate.output_bound
        ver = verify_program(res.program, layers, lo, hi, bound, st.no_init_error, budget)
        row["violations"] = ver.violations
    return row


def _read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _key(r: dict) -> tuple:
    return (r["act"], int(r["depth"]), int(r["width"]), float(r["eps"]), r["setting"])


def write_md(out: Path, wall_s: float | None, partial: int = 0) -> None:
    """results/nonlinear_depth.md from the after (and before, when present) CSVs."""
    after = _read(out / "nonlinear_depth.csv")
    before = {_key(r): r for r in _read(out / "nonlinear_depth_before.csv")}
    lines = [
        "# Refined mode on deeper smooth-activation networks (issue 13)",
        "",
        "Written by `scripts/nonlinear_depth.py` (module docstring: networks, checks). `fallback` = 1 when",
        "the all-maxLen program was returned; `maxlen_bound` = certified bound of that program (blank:",
        "not computed, the run did not fall back; rows from earlier runs may carry it);",
        "`table_bits` = activation-table ROM bits; `violations` from the simulator check (exact",
        "re-evaluation); `cpp` = generated C++ bit-exact vs the simulator (blank: not compiled).",
        "`before` columns: the same grid on main's code before this change (blank: not run).",
        "`tables` (csv): per hidden layer index bits/entry width:entries, `/sN` for a segmented table of",
        "N segments (`aster_ext.activations.segtable`, used by the refined mode where cheaper since",
        "issue 13's last step; rows whose `code` predates it have uniform tables only).",
        "Timings were taken on a shared 2-core machine with other jobs running (noisy).",
        "",
    ]
    if wall_s is not None and partial:
        lines += [f"Wall time of the latest run ({partial} points rerun, `--replace`/`--resume`; "
                  f"the other rows are from earlier runs, see `code`): {wall_s:.0f} s.", ""]  # fmt: skip
    elif wall_s is not None:
        lines += [f"Wall time of the after run: {wall_s:.0f} s.", ""]
    ok = [r for r in after if r.get("hw")]
    if ok:
        viol = sum(int(r["violations"] or 0) for r in ok)
        fb_bad = [r for r in ok if int(r["fallback"]) and float(r["maxlen_bound"]) <= float(r["eps"]) / 4]
        cpp = [r for r in ok if r.get("cpp_bit_exact") not in (None, "")]
        lines += [
            "## Summary against the targets",
            "",
            f"- runs: {len(after)}, certified: {len(ok)}, violations: {viol}, "
            f"C++ bit-exact: {sum(int(r['cpp_bit_exact']) for r in cpp)}/{len(cpp)}",
            f"- not certified: {len(after) - len(ok)}"
            + "".join(
                f"; {r['act']} {r['depth']}x{r['width']} ε={float(r['eps']):g} {r['setting']}: "
                + (f"all-maxLen bound {r['maxlen_bound']} > ε" if r.get("maxlen_bound") else r["status"])
                for r in after
                if not r.get("hw")
            ),
            f"- all-maxLen fallbacks where maxlen_bound <= ε/4: {len(fb_bad)} "
            f"(fallbacks in total: {sum(int(r['fallback']) for r in ok)})",
        ]
        by = {_key(r): r for r in ok}
        ratios_hw, ratios_rom, ratios_per_mult = [], [], []
        for k, r in by.items():
            if k[1] != 3:
                continue
            r2 = by.get((k[0], 2, k[2], k[3], k[4]))
            if r2 is None:
                continue
            ratios_hw.append(int(r["hw"]) / int(r2["hw"]))
            n_in, n_out = (4, 3) if k[2] <= 32 else (8, 4)
            w = k[2]
            mult_ratio = (n_in * w + 2 * w * w + w * n_out) / (n_in * w + w * w + w * n_out)
            ratios_per_mult.append(ratios_hw[-1] / mult_ratio)
            ratios_rom.append(int(r["table_bits"]) / max(int(r2["table_bits"]), 1))
        if ratios_hw:
            lines.append(
                f"- depth 3 / depth 2 (same act, width, ε, setting; {len(ratios_hw)} pairs): hw ratio "
                f"median {np.median(ratios_hw):.2f}, max {max(ratios_hw):.2f}; table ROM ratio median "
                f"{np.median(ratios_rom):.2f}, max {max(ratios_rom):.2f}"
            )
            mults = []
            for w in sorted({k[2] for k in by if k[1] == 3}):
                n_in, n_out = (4, 3) if w <= 32 else (8, 4)
                m2, m3 = n_in * w + w * w + w * n_out, n_in * w + 2 * w * w + w * n_out
                mults.append(f"width {w}: {m3 / m2:.2f}")
            lines.append("  (multiplier count ratio depth 3 / depth 2, the hw ratio at equal precision: "
                         + ", ".join(mults) + ")")  # fmt: skip
            lines.append(
                f"- hw ratio divided by the multiplier count ratio (cost per multiplier, depth 3 / depth 2): "
                f"median {np.median(ratios_per_mult):.2f}, max {max(ratios_per_mult):.2f}"
            )
            lines.append(
                "  The 1.6x hw target cannot be met at equal precision: depth 3 has 1.70-1.84x the "
                "multipliers of depth 2 (ratios above), each costing W_w + W_x; the hw ratio is that "
                "count ratio times the cost per multiplier ratio, and the latter (median above) is what "
                "the optimisation controls."
            )
            for wd in sorted({k[2] for k in by}):
                rs = []
                for k, r in by.items():
                    r2 = by.get((k[0], 2, k[2], k[3], k[4]))
                    if k[1] == 3 and k[2] == wd and r2 is not None:
                        rs.append(int(r["table_bits"]) / max(int(r2["table_bits"]), 1))
                if rs:
                    lines.append(
                        f"  width {wd} ({len(rs)} pairs): table ROM ratio median {np.median(rs):.2f}, "
                        f"max {max(rs):.2f}, > 3: {sum(x > 3 for x in rs)}"
                    )
            per_table = [x / 1.5 for x in ratios_rom]  # one table per hidden layer: 3 vs 2 tables
            lines.append(
                f"- table ROM per table (depth 3 has 3 tables, depth 2 has 2: ROM ratio / 1.5): median "
                f"{np.median(per_table):.2f}, max {max(per_table):.2f}"
            )
            big = []
            for k, r in sorted(by.items()):
                r2 = by.get((k[0], 2, k[2], k[3], k[4]))
                if k[1] == 3 and r2 is not None and int(r["table_bits"]) > 3 * int(r2["table_bits"]):
                    ratio = int(r["table_bits"]) / int(r2["table_bits"])
                    big.append(
                        f"{k[0]} w{k[2]} ε={k[3]:g} {k[4]}: {ratio:.2f} "
                        f"(depth 2 tables {r2.get('tables') or '?'}, depth 3 {r.get('tables') or '?'}; "
                        f"certified {r['certified']} / {r2['certified']})"
                    )
            if big:
                lines.append(
                    f"- pairs with table ROM ratio > 3 ({len(big)}; tables as index bits/entry width:entries "
                    "per hidden layer, '?': row from a run before this column existed): " + "; ".join(big)
                )
                lines.append(
                    "  Why (see the tables column): every table's error enters the certificate amplified "
                    "by the layers after it, so at depth 3 the first hidden layers' tables need a smaller "
                    "error δ than at depth 2, and the later layers' input ranges grow with depth. Rows "
                    "with `/sN` tables (segmented, `aster_ext.activations.segtable`) already use fine "
                    "cells only where σ curves: their entries follow roughly ∫ sqrt(|σ''|/(8δ)) dz (cell "
                    "widths are powers of two), so they still "
                    "grow as δ^-1/2 (δ 4x smaller: 2x the entries, plus entry bits) — an interpolating "
                    "table's order, not its cell layout, sets this growth. The depth-2 denominators also "
                    "vary with where the ILP and the post-ILP search (relax_act_budgets) stop: compare "
                    "the A and C rows of the same network. `--neighbours` checks whether that search "
                    "left a cheaper certified point nearby (section below, when run). Tables without "
                    "`/sN` are uniform: from code before segmented tables (see `code`), or cheaper."
                )
        for d in sorted({k[1] for k in by if k[1] >= 4}):
            rd = [r for r in ok if int(r["depth"]) == d]
            fbd = [r for r in rd if int(r["fallback"])]
            fbd_bad = [r for r in fbd if float(r["maxlen_bound"]) <= float(r["eps"]) / 4]
            hw_d, rom_d, per_m = [], [], []
            mixed = 0  # pairs where one row has segmented tables ("/s" in tables) and the other none
            for r in rd:
                r2 = by.get((r["act"], 2, int(r["width"]), float(r["eps"]), r["setting"]))
                if r2 is None:
                    continue
                mixed += ("/s" in (r.get("tables") or "")) != ("/s" in (r2.get("tables") or ""))
                w = int(r["width"])
                n_in, n_out = (4, 3) if w <= 32 else (8, 4)
                m2, md = n_in * w + w * w + w * n_out, n_in * w + (d - 1) * w * w + w * n_out
                hw_d.append(int(r["hw"]) / int(r2["hw"]))
                per_m.append(hw_d[-1] / (md / m2))
                rom_d.append(int(r["table_bits"]) / max(int(r2["table_bits"]), 1))
            line = (
                f"- depth {d} (widths {', '.join(str(w) for w in sorted({int(r['width']) for r in rd}))}): "
                f"{len(rd)} runs, fallbacks {len(fbd)} (where maxlen_bound <= ε/4: {len(fbd_bad)}), "
                f"violations {sum(int(r['violations'] or 0) for r in rd)}"
            )
            if hw_d:
                line += (
                    f"; / depth 2 ({len(hw_d)} pairs): hw ratio median {np.median(hw_d):.2f} (per "
                    f"multiplier {np.median(per_m):.2f}), table ROM ratio median {np.median(rom_d):.2f}, "
                    f"max {max(rom_d):.2f}"
                )
                if mixed:
                    line += (
                        f" ({mixed} of these pairs compare a row with segmented tables to one without: "
                        "their ROM ratios mix two table implementations)"
                    )
            lines.append(line)
        pairs = [(r, before[_key(r)]) for r in ok if _key(r) in before and before[_key(r)].get("hw")]
        if pairs:
            hw_r = [int(r["hw"]) / int(b["hw"]) for r, b in pairs]
            rom_r = [int(r["table_bits"]) / max(int(b["table_bits"]), 1) for r, b in pairs]
            fb_b = sum(int(b["fallback"]) for _, b in pairs)
            lines.append(
                f"- after / before on {len(pairs)} runs of both (before fell back to all-maxLen in {fb_b}): "
                f"hw ratio median {np.median(hw_r):.2f} (min {min(hw_r):.2f}, max {max(hw_r):.2f}); "
                f"table ROM ratio median {np.median(rom_r):.3g} (min {min(rom_r):.3g}, max {max(rom_r):.3g})"
            )
        t64 = [float(r["time_s"]) for r in ok if int(r["width"]) == 64 and int(r["depth"]) == 2]
        if t64:
            lines.append(
                "- time of the width-64 depth-2 nets in the grid (with the checks; rows of earlier runs "
                "two at a time, of later ones one at a time, see `code`; shared machine): "
                f"max {max(t64):.1f} s, median {np.median(t64):.1f} s"
            )
        timing = [r for r in _read(out / "nonlinear_depth_timing.csv") if r.get("time_s")]
        if timing:
            ts = [float(r["time_s"]) for r in timing]
            nets = sorted({f"{r['act']} {r['depth']}x{r['width']}" for r in timing})
            lines.append(
                f"- time alone (`--label timing`, one run at a time, {len(ts)} runs of {', '.join(nets)}): "
                f"max {max(ts):.1f} s, median {np.median(ts):.1f} s"
            )
        grid = {(a, d, w, e, st_) for a in ACTS for d in (2, 3, 4, 5) for w in (16, 32, 64)
                for e in (1e-2, 1e-3) for st_ in ("A", "C")}  # fmt: skip
        missing = sorted(grid - {_key(r) for r in after})
        if missing:
            groups: dict = {}
            for a, d, w, e, st_ in missing:
                groups.setdefault((d, w, e, st_), []).append(a)
            lines.append(
                f"- target grid (6 activations x depths 2-5 x widths 16, 32, 64 x ε 1e-2, 1e-3 x settings "
                f"A, C = {len(grid)} points): {len(grid) - len(missing)} run, {len(missing)} not run: "
                + "; ".join(
                    f"depth {d} width {w} ε={e:g} {st_} ({len(acts)} acts)"
                    for (d, w, e, st_), acts in sorted(groups.items())
                )  # fmt: skip
            )
        lines.append("")
    cols = ["act", "depth", "width", "eps", "setting", "maxlen_bound"]
    head = cols + ["fallback", "certified", "hw", "table_bits", "time_s", "violations", "cpp"]
    head += ["before fallback", "before hw", "before table_bits", "before time_s"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in after:
        b = before.get(_key(r), {})
        vals = [r[c] for c in cols] + [r.get("fallback", ""), r.get("certified", "") or r.get("status", ""),
                                       r.get("hw", ""), r.get("table_bits", ""), r.get("time_s", ""),
                                       r.get("violations", ""), r.get("cpp_bit_exact", "")]  # fmt: skip
        vals += [b.get("fallback", ""), b.get("hw", ""), b.get("table_bits", ""), b.get("time_s", "")]
        lines.append("| " + " | ".join(str(v) for v in vals) + " |")
    nb = _read(out / "nonlinear_depth_neighbours.csv")
    if nb:
        lines += ["", "## Local-optimum check of the post-ILP search (`--neighbours`)", "",
                  "Moves from the returned program (run_neighbours docstring); cost = hw + ROM_WEIGHT x "
                  "table bits, the search's objective.", "",
                  "| act | depth | width | eps | setting | bound | hw | table_bits | moves | "
                  "certified <= ε | certified <= ε and cheaper |", "|" + "---|" * 11]  # fmt: skip
        pts: dict = {}
        for r in nb:
            pts.setdefault((r["act"], r["depth"], r["width"], r["eps"], r["setting"]), []).append(r)
        for k, rs in pts.items():
            res0 = next(r for r in rs if r["move"] == "result")
            mv = [r for r in rs if r["move"] != "result"]
            lines.append("| " + " | ".join([*k, res0["bound"], res0["hw"], res0["table_bits"], str(len(mv)),
                                            str(sum(int(r["within_eps"]) for r in mv)),
                                            str(sum(int(r["cheaper"]) for r in mv))]) + " |")  # fmt: skip
    m_after = _read(out / "nonlinear_depth_mnist_after.csv")
    m_before = {
        (r["network"], r["box"], r["eps"]): r for r in _read(out / "nonlinear_depth_mnist_before.csv")
    }
    if m_after:
        head = ["network", "box", "eps", "maxlen_bound", "fallback", "certified", "hw", "table_bits",
                "time_s", "violations", "before fallback", "before hw", "before table_bits"]  # fmt: skip
        lines += ["", "## External MNIST networks (setting A)", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
        for r in m_after:
            b = m_before.get((r["network"], r["box"], r["eps"]), {})
            vals = [r.get(c, "") for c in head[:10]]
            vals += [b.get("fallback", ""), b.get("hw", ""), b.get("table_bits", "")]
            lines.append("| " + " | ".join(str(v) for v in vals) + " |")
    (out / "nonlinear_depth.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--acts", nargs="*", default=ACTS)
    ap.add_argument("--depths", nargs="*", type=int, default=[2, 3, 4, 5])
    ap.add_argument("--widths", nargs="*", type=int, default=[16, 32, 64])
    ap.add_argument("--eps", nargs="*", type=float, default=[1e-2, 1e-3])
    ap.add_argument("--settings", nargs="*", default=["A", "C"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--label", default="after", choices=["after", "before", "timing"])
    ap.add_argument("--cpp-every", type=int, default=8, help="compile the C++ of every k-th run (0: none)")
    ap.add_argument("--md-only", action="store_true", help="only rewrite the .md from the CSVs")
    ap.add_argument("--resume", action="store_true", help="keep the CSV's rows and run only missing points")
    ap.add_argument(
        "--replace",
        action="store_true",
        help="keep the CSV's rows, rerun the grid's points and replace their rows in place",
    )
    ap.add_argument("--points", nargs="*",
                    help="only these (act,width,eps,setting) points of the grid, as act:width:eps:setting "
                         "(every depth of --depths), e.g. silu:64:0.001:A")  # fmt: skip
    ap.add_argument("--neighbours", nargs="*",
                    help="local-optimum check of these points act:depth:width:eps:setting (run_neighbours), "
                         "written to results/nonlinear_depth_neighbours.csv")  # fmt: skip
    ap.add_argument("--mnist", action="store_true", help="run the external MNIST networks (MNIST list)")
    ap.add_argument("--mnist-nets", nargs="*", help="only these networks of the MNIST list")
    args = ap.parse_args()
    out = ROOT / "results"
    if args.neighbours:
        path = out / "nonlinear_depth_neighbours.csv"
        keys = set()
        for pt in args.neighbours:
            a, d, w, e, st_ = pt.split(":")
            keys.add((a, int(d), int(w), float(e), st_))
        rows = [r for r in _read(path) if _key(r) not in keys]
        for pt in args.neighbours:
            for r in run_neighbours(pt):
                rows.append(r)
                print(r, flush=True)
            with open(path, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=NB_FIELDS)
                w.writeheader()
                w.writerows(rows)
        write_md(out, None)
        return 0
    if args.mnist:
        path = out / f"nonlinear_depth_mnist_{args.label}.csv"
        names = {m[0] for m in MNIST if not args.mnist_nets or m[0] in args.mnist_nets}
        rows = [r for r in _read(path) if r["network"] not in names]  # keep the other networks' rows
        with ProcessPoolExecutor(max_workers=min(args.workers, 2)) as pool:
            todo = [(*m, args.label) for m in MNIST if not args.mnist_nets or m[0] in args.mnist_nets]
            for row in pool.map(run_mnist, todo):
                rows.append(row)
                print(row, flush=True)
                with open(path, "w", newline="") as fh:
                    w = csv.DictWriter(fh, fieldnames=MNIST_FIELDS)
                    w.writeheader()
                    w.writerows(rows)
        write_md(out, None)
        return 0
    if args.md_only:
        write_md(out, None)
        return 0
    points = None
    if args.points:
        points = set()
        for pt in args.points:
            a, w, e, st_ = pt.split(":")
            points.add((a, int(w), float(e), st_))
    jobs = []  # ε, setting, width outermost: a partial run has every activation and the depth pairs
    for eps in args.eps:
        for setting in args.settings:
            for width in args.widths:
                for act in args.acts:
                    if points is not None and (act, width, eps, setting) not in points:
                        continue
                    for depth in args.depths:
                        k = len(jobs)
                        cpp = args.label == "after" and args.cpp_every > 0 and k % args.cpp_every == 0
                        jobs.append((act, depth, width, eps, setting, cpp, args.label))
    name = "nonlinear_depth.csv" if args.label == "after" else f"nonlinear_depth_{args.label}.csv"
    if args.label == "timing":
        args.workers = 1
    rows = _read(out / name) if args.resume or args.replace else []
    done = {_key(r) for r in rows}
    if not args.replace:
        jobs = [j for j in jobs if (j[0], j[1], j[2], j[3], j[4]) not in done]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=min(args.workers, 2)) as pool:
        for row in pool.map(run_one, jobs):
            at = [i for i, r in enumerate(rows) if _key(r) == _key(row)]
            if at:  # --replace: the new row takes the old one's place
                rows[at[0]] = row
            else:
                rows.append(row)
            print(row, flush=True)
            with open(out / name, "w", newline="") as fh:  # rewritten as rows arrive (partial runs usable)
                w = csv.DictWriter(fh, fieldnames=FIELDS)
                w.writeheader()
                w.writerows(rows)
    wall = time.perf_counter() - t0
    print(f"wall time {wall:.0f} s", flush=True)
    if args.label == "after":
        write_md(out, wall, len(jobs) if args.replace or args.resume else 0)
    elif args.label == "timing":
        write_md(out, None)
    return 0


if __name__ == "__main__":
    from aster_ext.experiments.script_steps import run_recorded

    raise SystemExit(run_recorded(__file__, main))
