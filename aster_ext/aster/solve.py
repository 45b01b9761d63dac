"""Aster's precision assignment end to end: ranges -> ILP -> HiGHS -> exact re-check -> program."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .. import ilp
from ..errors import InfeasibleError, UserError
from ..ir import DenseLayer
from ..program import FixedProgram
from .model import MODES, AsterModel, build_aster_model
from .ranges import aster_ranges
from .settings import AsterSetting, get_setting
from .types import build_program, daisy_area_cost


@dataclass
class AsterResult:
    """Outcome of :func:`assign_aster`.

    ``claimed_error`` is the mode's own error recursion at the chosen bits: for ``aster`` Aster's
    (unsound) "Total Error", for ``aster-sound`` a certified bound on |program - network| over the box
    (for inputs on the 2^-initLen grid when the setting has noInitError).
    """

    mode: str
    setting: str
    program: FixedProgram
    dot_bits: list[int]
    bias_bits: list[int]
    objective: int
    claimed_error: Fraction
    solver_status: str  # optimal | time_limit | time_limit_fallback
    solver_time_s: float
    lp_text: str
    exact_check_ok: bool
    daisy_area_cost: int
    build_time_s: float = 0.0
    rounds: int = 1
    notes: list[str] = field(default_factory=list)
    model: AsterModel | None = None
    max_width_fallback: bool = False  # no ILP solution in time: every fractional bit at maxLen


def assign_aster(
    layers: list[DenseLayer],
    lower: np.ndarray,
    upper: np.ndarray,
    eps: float,
    setting: str | AsterSetting,
    mode: str,
    time_limit: float = 60,
) -> AsterResult:
    """Choose per-layer fractional bits (dot_l, bias_l) by Aster's ILP in ``mode`` ("aster" = as
    published, "aster-sound" = repaired) and build the fixed-point program with Aster's types.

    Raises InfeasibleError (naming the smallest ε reachable at maxLen, or the overflowing node).
    """
    t0 = time.perf_counter()
    if mode not in MODES:
        raise UserError(f"unknown Aster mode {mode!r} (choose {' or '.join(MODES)})")
    s = get_setting(setting)
    eps_f = target_fraction(eps)
    if not (math.isfinite(time_limit) and time_limit > 0):
        raise UserError(f"the time limit must be a positive number of seconds, got {time_limit}")
    if not layers:
        raise UserError("the network has no layer")
    ranges = aster_ranges(layers, lower, upper, saturate=(mode == "aster"))
    notes: list[str] = [f"mode {mode}, setting {s.name} (minLen {s.min_len}, maxLen {s.max_len}, "
                        f"initLen {s.init_len}, noInitError {s.no_init_error})"]  # fmt: skip
    am = build_aster_model(layers, ranges, s, eps_f, mode)
    if s.init_error > eps_f:
        best = smallest_error(am)
        raise InfeasibleError(
            f"{mode}: the smallest error this analysis certifies at maxLen={s.max_len} is {float(best):.6g} "
            f"> target {float(eps_f):g} (the input quantisation error 2^-{s.init_len} alone exceeds it)",
            smallest_error=float(best),
        )
    if mode == "aster-sound" and am.pruned_rows:
        notes.append(f"{am.pruned_rows} overflow rows hold at all candidate precisions and were dropped")
    _check_feasible_at_max(am)
    build_time = time.perf_counter() - t0
    lp_text = ilp.to_lp_text(am.model, comment=f"aster_ext {mode}, setting {s.name}, eps {float(eps_f)!r}")
    sol = ilp.solve_exact(am.model, time_limit=time_limit, col_scale=am.col_scale())
    L = len(layers)
    if sol.values is not None:
        dot_bits = [int(sol.values[f"dot_{l}"]) for l in range(1, L + 1)]
        bias_bits = [int(sol.values[f"bias_{l}"]) for l in range(1, L + 1)]
        status = sol.status
        objective = int(sol.objective)
        exact_ok = True
    elif sol.status == "infeasible":
        raise InfeasibleError(f"{mode}: the ILP is infeasible for eps {float(eps_f):g}", node=None)
    else:
        # no solution in time: all bits at maxLen is feasible (checked above) and sound
        dot_bits = [s.max_len] * L
        bias_bits = [s.max_len] * L
        status = "time_limit_fallback"
        point = am.point(dot_bits, bias_bits)
        chk = ilp.exact_check(am.model, {n: float(v) for n, v in point.items()})
        exact_ok = chk.ok
        objective = int(chk.objective)
        notes.append(f"solver status {sol.status} without a solution; fell back to all bits = maxLen")
    if sol.rejected:
        notes.append(f"{len(sol.rejected)} solver point(s) rejected by the exact re-check and cut off")
    program = build_program(layers, ranges, s, dot_bits, bias_bits, mode)
    claimed = am.error_bound(dot_bits, bias_bits)
    program.meta["claimed_error"] = float(claimed)
    program.meta["claimed_error_exact"] = f"{claimed.numerator}/{claimed.denominator}"
    program.meta["eps"] = float(eps_f)
    if mode == "aster":
        notes.append(
            "aster (as published) is not sound: signed row sums, previous layer's matrix, unscaled input "
            "error, round-to-nearest error model for truncating code, no product/partial-sum overflow "
            "checks, closed overflow intervals, 32-bit integer bits"
        )
    if s.no_init_error:
        notes.append("noInitError: the bound holds only for inputs on the 2^-initLen grid")
    notes.append(
        "deviation from Aster's code: one input type ap_fixed<initLen+I, I> with the largest I of the "
        "inputs (Aster declares each input with its own integer bits; same values); Daisy's area cost "
        "uses Aster's per-input widths"
    )
    notes.append(
        "constants quantised from the exact real values: "
        + ("truncated (as assigning the literal to ap_fixed)" if mode == "aster" else "rounded to nearest")
    )
    return AsterResult(
        mode=mode,
        setting=s.name,
        program=program,
        dot_bits=dot_bits,
        bias_bits=bias_bits,
        objective=objective,
        claimed_error=claimed,
        solver_status=status,
        solver_time_s=sol.time_s,
        lp_text=lp_text,
        exact_check_ok=exact_ok,
        daisy_area_cost=daisy_area_cost(program),
        build_time_s=build_time,
        rounds=sol.rounds,
        notes=notes,
        model=am,
        max_width_fallback=(status == "time_limit_fallback"),
    )


def target_fraction(eps: float | Fraction | str) -> Fraction:
    """ε as an exact rational: for a float, the smaller of its exact value and its decimal text
    (so the certificate holds for the number the user wrote as well as for the double)."""
    if isinstance(eps, float):
        if not math.isfinite(eps):
            raise UserError(f"the error target must be a finite positive number, got {eps}")
        e = min(Fraction(eps), Fraction(repr(eps)))
    else:
        try:
            e = Fraction(eps)
        except (TypeError, ValueError) as exc:
            raise UserError(f"bad error target {eps!r}") from exc
    if not e > 0:
        raise UserError(f"the error target must be positive, got {eps}")
    return e


def smallest_error(am: AsterModel) -> Fraction:
    """The smallest error the mode's recursion certifies: every fractional bit at maxLen."""
    m = am.setting.max_len
    return am.error_bound([m] * am.n_layers, [m] * am.n_layers)


def _check_feasible_at_max(am: AsterModel) -> None:
    """Every row is monotone in the 2^-bits, so the all-maxLen point decides feasibility."""
    m = am.setting.max_len
    viol = am.violated_rows([m] * am.n_layers, [m] * am.n_layers)
    if not viol:
        return
    names = [v[0] for v in viol]
    overflow = [n for n in names if n != "error"]
    if overflow:
        what = _describe(am, overflow[0])
        raise InfeasibleError(
            f"{am.mode}: overflow cannot be excluded even with {m} fractional bits everywhere: {what} "
            f"(row {overflow[0]}{' and ' + str(len(overflow) - 1) + ' more' if len(overflow) > 1 else ''})",
            smallest_error=float(smallest_error(am)),
            node=what,
        )
    best = smallest_error(am)
    raise InfeasibleError(
        f"{am.mode}: the smallest error this analysis certifies at maxLen={m} is {float(best):.6g} "
        f"> target {float(am.eps):g}",
        smallest_error=float(best),
    )


def _describe(am: AsterModel, row: str) -> str:
    for r in am.sound_rows:
        if r.name == row:
            return r.what
    parts = row.split("_")
    if row.startswith("range_") and parts[-1].isdigit():
        l = int(parts[-1])
        lr = am.ranges[l - 1]
        kind = "dot product" if parts[1] == "dot" else "bias sum"
        return f"layer {l} ({lr.name}) {kind}"
    return row
