"""Per-layer type choice for hls4ml under a certified error target, and the cost of a program.

Cost (one function for every configuration compared): per Dense layer, each of its
n_in·n_out multipliers costs W_x + W_w bits (its operand widths) and each of its n_in·n_out
accumulator additions costs W_acc bits; activations add nothing (ReLU is a comparison, tables
are ROM). This is the ``hw`` cost of :mod:`aster_ext.cost` specialised to hls4ml's dense
template, where every addition is in ``accum_t``.

Search: the variables are the fractional bits of input_t and, per layer, of weight_t, accum_t,
the activation result type and the table type (integer bits follow from the certified ranges,
:func:`.certify.build_program`; bias_t keeps the start's F, as its width is in no cost term,
and is trimmed to accum_t's F at the end), and
the table sizes (2^6..2^16). Start from the smallest uniform F that certifies ε with 2^16-entry
tables; halve each table while that bound stays <= ε/2 (sizes are then fixed); then, from that
smallest uniform F plus 2 bits of headroom (slack to spend unevenly), repeatedly apply the
single-variable decrement with the best cost saving per unit of bound increase among
those that still certify ε (a lazy greedy: stale gains in a priority queue, only the top
candidate re-certified; decrements gallop: 4 bits at first, doubled when taken, halved when
they fail), until none does; then kicks (:func:`kick_descent`: raise one type by a bit, descend
on the others, keep what is cheaper) with at most as many candidates again as the search had
used. Every candidate is certified in full, so the result is certified whatever the heuristic
does.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import InfeasibleError
from ..ir import DenseLayer
from ..ranges import LayerRanges
from .certify import Certificate, LayerFracs, build_program
from .program import DenseStage, Hls4mlProgram
from .types import HlsType

F_MIN, F_MAX = -4, 48
TABLE_LOG2_MIN, TABLE_LOG2_MAX = 6, 16


def program_cost(program: Hls4mlProgram) -> dict[str, int]:
    """Multiplier and adder bits of the program's Dense layers (module docstring)."""
    mult = add = 0
    cur: HlsType = program.input_t
    for st in program.stages:
        if isinstance(st, DenseStage):
            n = st.n_in * st.n_out
            mult += n * (cur.width + st.weight_t.width)
            add += n * st.accum_t.width
        cur = st.result_t
    return {"cost": mult + add, "multiplier_bits": mult, "adder_bits": add}


@dataclass
class SearchResult:
    program: Hls4mlProgram
    certificate: Certificate
    input_frac: int
    fracs: list[LayerFracs]
    cost: int
    evaluations: int


def _uniform(layers: list[DenseLayer], f: int) -> list[LayerFracs]:
    out = []
    for layer in layers:
        has_act = layer.activation != "identity"
        has_tab = layer.activation in ("tanh", "sigmoid")
        out.append(
            LayerFracs(
                f, f, f, f if has_act else None, f if has_tab else None, TABLE_LOG2_MAX if has_tab else None
            )
        )
    return out


Slot = tuple[int, str]  # (layer, field) of a fractional-bit variable; layer -1: the input F


@dataclass(frozen=True)
class TypeSearch:
    """What the descents read: ``run(f_in, fracs)`` builds and certifies a candidate and returns
    (program, certificate, cost); ``good(certificate)`` says whether it meets ``eps``;
    ``budget_left()`` whether another candidate may be tried."""

    run: Callable[[int, list[Any]], tuple[Any, Any, float]]
    good: Callable[[Any], bool]
    eps: float
    budget_left: Callable[[], bool]


def _moved(f_in: int, fracs: list[Any], var: Slot, delta: int) -> tuple[int, list[Any]] | None:
    """(f_in, fracs) with the slot ``var`` moved by ``delta`` bits, clipped to [F_MIN, F_MAX];
    None if that leaves it where it was."""
    li, name = var
    cur = f_in if li < 0 else getattr(fracs[li], name)
    new = min(max(cur + delta, F_MIN), F_MAX)
    if new == cur:
        return None
    if li < 0:
        return new, fracs
    cand = list(fracs)
    cand[li] = replace(fracs[li], **{name: new})
    return f_in, cand


def lazy_greedy_descent(
    f_in: int, fracs: list[Any], state: tuple[Any, Any, float], variables: list[Slot], problem: TypeSearch
) -> tuple[int, list[Any], Any, Any, float]:
    """Lower fractional bits from (``f_in``, ``fracs``) while ``good`` certificates get cheaper.

    ``state`` = (program, certificate, cost) of the start; ``variables`` the slots searched. Lazy
    greedy with galloping steps: a priority queue of (stale) gains Δcost / Δbound, each variable
    with its current step (bits removed at once, 4 at first); the top candidate is re-evaluated
    and taken when its fresh gain still beats every other stale estimate (gains shrink as slack is
    used), else it goes back with its step halved. A step that is taken doubles; one that fails or
    costs more is halved (a failed 1-bit step drops the variable), so a variable with s bits of
    slack costs O(log s) certifications instead of s. Returns the final (f_in, fracs, program,
    certificate, cost)."""
    prog, cert, cost = state
    heap: list[tuple[float, int, Slot, int]] = [(-math.inf, k, v, 4) for k, v in enumerate(variables)]
    heapq.heapify(heap)
    while heap and problem.budget_left():
        neg, k, var, step = heapq.heappop(heap)
        cand = _moved(f_in, fracs, var, -step)
        if cand is None:
            continue
        p2, c2, cost2 = problem.run(*cand)
        if not problem.good(c2) or cost2 > cost:
            if step > 1:
                heapq.heappush(heap, (neg, k, var, step // 2))
            continue  # no slack left for this variable
        gain = (cost - cost2) / max(c2.max_bound - cert.max_bound, problem.eps * 1e-6)
        if heap and gain < -heap[0][0]:
            heapq.heappush(heap, (-gain, k, var, max(1, step // 2)))
            continue
        f_in, fracs = cand
        prog, cert, cost = p2, c2, cost2
        heapq.heappush(heap, (-gain, k, var, step * 2))
    return f_in, fracs, prog, cert, cost


def kick_descent(
    f_in: int, fracs: list[Any], state: tuple[Any, Any, float], variables: list[Slot], problem: TypeSearch
) -> tuple[int, list[Any], Any, Any, float]:
    """Iterated local search from a :func:`lazy_greedy_descent` result: for each variable v in
    turn, raise v by one bit (a "kick", which frees bound slack) and descend on every other
    variable from there; keep the result if it is cheaper than the best so far, and repeat the
    round while some kick paid off. Escapes the single-decrement local optima where two types
    trade bits (measured on the 26 dense hls4ml benchmarks, kicks limited to the evaluations
    the search had used: TestNN 0.886x, AC8 0.989x, most others 0.99-1.0x; none dearer)."""
    prog, cert, cost = state
    improved = True
    while improved and problem.budget_left():
        improved = False
        for var in variables:
            kicked = _moved(f_in, fracs, var, 1)
            if kicked is None:
                continue
            start = problem.run(*kicked)
            if problem.good(start[1]):
                others = [v for v in variables if v != var]
                res = lazy_greedy_descent(*kicked, start, others, problem)
                if res[4] < cost:
                    f_in, fracs, prog, cert, cost = res
                    improved = True
            if not problem.budget_left():
                break
    return f_in, fracs, prog, cert, cost


def _variables(fracs: list[LayerFracs]) -> list[Slot]:
    """The searched slots; the bias is not among them: its width is in no cost term, and at the
    uniform F (>= every accum_t F the search reaches) its cast to accum_t is its only rounding."""
    vs: list[Slot] = [(-1, "input")]
    for li, fr in enumerate(fracs):
        for name in ("weight", "accum", "act_result", "table"):
            if getattr(fr, name) is not None:
                vs.append((li, name))
    return vs


def choose_types(
    layers: list[DenseLayer],
    ranges: list[LayerRanges],
    lower: np.ndarray,
    upper: np.ndarray,
    eps: float,
    table_size: int = 1024,
    quant: str = "TRN",
    max_evaluations: int = 4000,
    headroom: int = 2,
) -> SearchResult:
    evals = 0
    cache: dict = {}  # walker states after each layer (certify.build_program)

    def run(f_in: int, fracs: list[LayerFracs]) -> tuple[Hls4mlProgram, Certificate, int]:
        nonlocal evals
        evals += 1
        prog, cert = build_program(
            layers, ranges, lower, upper, f_in, fracs, table_size, quant, recheck=False, cache=cache
        )
        return prog, cert, program_cost(prog)["cost"]

    def good(cert: Certificate) -> bool:
        return cert.ok and cert.max_bound <= eps

    # table sizes first (they are not in the cost): at the widest uniform F, where the tables
    # dominate the bound, halve each table while the bound stays within half of ε; then fixed
    fracs = _uniform(layers, F_MAX)
    _, cert, _ = run(F_MAX, fracs)
    if not good(cert):
        why = "; ".join(cert.overflow[:2]) if cert.overflow else f"bound {cert.max_bound:.3g} at {F_MAX} bits"
        raise InfeasibleError(
            f"hls4ml backend: ε = {eps:g} cannot be certified with up to {F_MAX} fractional bits ({why})"
        )
    for li, fr in enumerate(fracs):
        while fr.table_log2 is not None and fr.table_log2 > TABLE_LOG2_MIN:
            cand = list(fracs)
            cand[li] = replace(fr, table_log2=fr.table_log2 - 1)
            _, c, _ = run(F_MAX, cand)
            if not (c.ok and c.max_bound <= eps / 2):
                break
            fracs, fr = cand, cand[li]
    sizes = [fr.table_log2 for fr in fracs]

    def uniform(f: int) -> list[LayerFracs]:
        return [replace(fr, table_log2=s) for fr, s in zip(_uniform(layers, f), sizes, strict=True)]

    # smallest uniform F that certifies eps
    lo, hi = 0, F_MAX
    while hi - lo > 1:
        mid = (lo + hi) // 2
        _, c, _ = run(mid, uniform(mid))
        if good(c):
            hi = mid
        else:
            lo = mid
    # the greedy starts `headroom` bits above it: slack it can spend unevenly (measured on
    # ACC10NN, VertCASVer1, AC6, AC8, ControllerToraNN: 1-3% cheaper for ~30% more candidates)
    hi = min(hi + headroom, F_MAX)
    f_in, fracs = hi, uniform(hi)
    prog, cert, cost = run(f_in, fracs)

    variables = _variables(fracs)
    problem = TypeSearch(run, good, eps, lambda: evals < max_evaluations)
    f_in, fracs, prog, cert, cost = lazy_greedy_descent(f_in, fracs, (prog, cert, cost), variables, problem)
    # kicks get at most as many candidates again as the search used so far (at most twice the time)
    kick_limit = min(2 * evals, max_evaluations)
    kicks = replace(problem, budget_left=lambda: evals < kick_limit)
    f_in, fracs, prog, cert, cost = kick_descent(f_in, fracs, (prog, cert, cost), variables, kicks)
    # bias_t: no wider than accum_t's F (the bias is cast to accum_t first, so for TRN the extra
    # bits never reach the sum), kept only if that still certifies (RND rounds twice)
    trimmed = [replace(fr, bias=min(fr.bias, fr.accum)) for fr in fracs]
    if trimmed != fracs:
        p2, c2, cost2 = run(f_in, trimmed)
        if good(c2) and cost2 <= cost:
            fracs, cost = trimmed, cost2
    prog, cert = build_program(layers, ranges, lower, upper, f_in, fracs, table_size, quant, recheck=True)
    return SearchResult(prog, cert, f_in, fracs, cost, evals)
