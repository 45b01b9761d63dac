"""Input-space splitting of a refined certificate (path sensitivity, first step).

A single forward pass of the affine-form analysis (:func:`.error_forms.certify_forms`) over a
whole input box treats every ReLU whose pre-activation range straddles 0 as unstable and pays a
remainder for it; on a smaller box fewer neurons are unstable and the real ranges are tighter.
For a fixed program P and a box B = ∪_i B_i (a finite cover),

    max_{x in B} |P(x) - N(x)|_o = max_i max_{x in B_i} |P(x) - N(x)|_o <= max_i bound_o(B_i),

so the maximum over the sub-box certificates is a certificate for B (per output o; the smaller
of it and the whole-box certificate is kept). Overflow freedom is not re-derived per sub-box:
the program's formats were checked on the whole box (the whole-box certificate must be
overflow-free), and every value on a sub-box is a value on the box.

Branch and bound (:func:`certify_by_splitting`): a max-heap of boxes keyed by their bound
max_o bound_o(B_i); while the worst box is above ``target`` and fewer than ``max_boxes`` boxes
exist, it is bisected at the midpoint of one dimension into [lo, m] and [m, hi] (together exactly
the parent: m is a float with lo <= m <= hi, both halves closed), choosing the dimension d that
maximises width_d · s_d with s = |W_L|·...·|W_1| summed over outputs (how strongly input d can
move the outputs). Every box is analysed independently, so a batch of boxes is analysed by
``workers`` processes at a time.
"""

from __future__ import annotations

import heapq
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..ir import DenseLayer
from ..program import FixedProgram
from ..rigorous import up
from .error_forms import certify_forms


@dataclass
class SplitCertificate:
    """Per-output bound over the whole box from a cover by ``leaves`` (lower, upper) sub-boxes."""

    bound: np.ndarray  # [n_out] min(whole-box bound, max over the leaves)
    whole_bound: np.ndarray  # [n_out] the single-pass bound
    leaves: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    leaf_bounds: list[np.ndarray] = field(default_factory=list)
    analysed: int = 0  # boxes analysed (leaves and the parents that were split)
    reached_target: bool = False
    time_s: float = 0.0
    history: list[dict] = field(default_factory=list)  # one row per checkpoint (see certify_by_splitting)

    @property
    def max_bound(self) -> float:
        return float(np.max(self.bound))


def input_sensitivity(layers: list[DenseLayer]) -> np.ndarray:
    """s_d = Σ_o (|W_L|·...·|W_1|)_{o,d}: a bound on how much input d moves the outputs (per unit)."""
    m = np.abs(np.asarray(layers[0].weight, dtype=np.float64))
    for layer in layers[1:]:
        m = np.abs(np.asarray(layer.weight, dtype=np.float64)) @ m
    return m.sum(axis=0)


def split_dimension(lower: np.ndarray, upper: np.ndarray, sensitivity: np.ndarray) -> int:
    """The dimension to bisect: argmax width_d · s_d (widest in output terms; ties: lowest d)."""
    score = (upper - lower) * sensitivity
    if not np.any(score > 0):
        score = upper - lower
    return int(np.argmax(score))


def bisect(lower: np.ndarray, upper: np.ndarray, d: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """[lo, m] and [m, hi] along d, m the float midpoint (their union is exactly the box)."""
    m = float(lower[d] + (upper[d] - lower[d]) / 2)
    m = min(max(m, float(lower[d])), float(upper[d]))
    left_hi, right_lo = upper.copy(), lower.copy()
    left_hi[d], right_lo[d] = m, m
    return [(lower.copy(), left_hi), (right_lo, upper.copy())]


def certified_volume(
    leaves: list[tuple[np.ndarray, np.ndarray]],
    bounds: list[np.ndarray],
    lower: np.ndarray,
    upper: np.ndarray,
    target: float,
) -> float:
    """Fraction of the box's volume covered by leaves whose bound max_o bound_o(B_i) is <= ``target``:
    Σ_{i: bound_i <= target} Π_d (hi_i,d - lo_i,d) / (upper_d - lower_d) over the dimensions of positive
    width (a progress measure for reports, not part of any certificate)."""
    w = np.asarray(upper, dtype=np.float64) - np.asarray(lower, dtype=np.float64)
    live = w > 0
    tot = 0.0
    for (lo, hi), b in zip(leaves, bounds, strict=True):
        if float(np.max(b)) <= target:
            tot += float(np.prod((hi[live] - lo[live]) / w[live]))
    return tot


def _box_bound(args: tuple[FixedProgram, list[DenseLayer], np.ndarray, np.ndarray, bool]) -> np.ndarray:
    program, layers, lo, hi, on_grid = args
    return np.asarray(certify_forms(program, layers, lo, hi, on_grid).output_bound, dtype=np.float64)


def certify_by_splitting(
    program: FixedProgram,
    layers: list[DenseLayer],
    lower: np.ndarray,
    upper: np.ndarray,
    target: float,
    max_boxes: int = 256,
    input_on_grid: bool = False,
    workers: int = 1,
    batch: int = 8,
    progress=None,
    checkpoints: tuple[int, ...] = (),
) -> SplitCertificate:
    """Branch and bound of the module docstring. Stops when every leaf's bound is <= ``target``
    or there are ``max_boxes`` leaves; the returned bound is sound either way.

    ``checkpoints`` (leaf counts, for measurements): the first time the cover has at least c leaves
    (and at the end) a row {leaves, analysed, bound (max over the leaves at that moment, itself a sound
    bound of the program on the box: the leaves then cover it), certified_volume, time_s} is appended
    to ``history``. Rounds then never split past the next checkpoint, so a row's ``leaves`` is c unless
    the search stopped before c.

    Raises ValueError when the whole-box certificate reports an overflow (sub-box bounds presume
    the formats hold every value, which only the whole-box check establishes)."""
    t0 = time.perf_counter()
    lower = np.asarray(lower, dtype=np.float64).reshape(-1)
    upper = np.asarray(upper, dtype=np.float64).reshape(-1)
    whole = certify_forms(program, layers, lower, upper, input_on_grid)
    if whole.overflows:
        raise ValueError(f"the program overflows on the box ({len(whole.overflows)} issue(s)): not splitting")
    whole_bound = np.asarray(whole.output_bound, dtype=np.float64)
    sens = input_sensitivity(layers)
    heap: list[tuple[float, int, np.ndarray, np.ndarray, np.ndarray]] = []
    counter = 0
    heapq.heappush(heap, (-float(whole_bound.max()), counter, lower, upper, whole_bound))
    analysed = 1
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    marks = sorted({int(c) for c in checkpoints if 1 <= int(c) <= max_boxes})
    history: list[dict] = []

    def record() -> None:
        leaves = [(lo, hi) for _, _, lo, hi, _ in heap]
        bounds = [b for *_, b in heap]
        history.append({
            "leaves": len(heap),
            "analysed": analysed,
            "bound": float(np.minimum(whole_bound, up(np.max(np.stack(bounds), axis=0))).max()),
            "certified_volume": certified_volume(leaves, bounds, lower, upper, target),
            "time_s": time.perf_counter() - t0,
        })  # fmt: skip

    try:
        while heap and -heap[0][0] > target and len(heap) < max_boxes:
            while marks and len(heap) >= marks[0]:
                marks.pop(0)
                record()
            # split the worst boxes of this round (at most ``batch``, never beyond max_boxes)
            take = []  # each split adds one leaf: at most max_boxes - leaves splits this round
            room = min(batch, max_boxes - len(heap))
            if marks:
                room = min(room, marks[0] - len(heap))
            while heap and -heap[0][0] > target and len(take) < room:
                take.append(heapq.heappop(heap))
            children = []
            for _, _, lo, hi, _ in take:
                children += bisect(lo, hi, split_dimension(lo, hi, sens))
            jobs = [(program, layers, lo, hi, input_on_grid) for lo, hi in children]
            bounds = list(pool.map(_box_bound, jobs)) if pool is not None else [_box_bound(j) for j in jobs]
            analysed += len(children)
            for (lo, hi), b in zip(children, bounds, strict=True):
                counter += 1
                heapq.heappush(heap, (-float(b.max()), counter, lo, hi, b))
            if progress is not None:
                progress(f"split: {len(heap)} boxes, worst bound {-heap[0][0]:.3g} (target {target:.3g})")
    finally:
        if pool is not None:
            pool.shutdown()
    if checkpoints:
        record()
    leaf_bounds = [b for *_, b in heap]
    worst = up(np.max(np.stack(leaf_bounds), axis=0))
    bound = np.minimum(whole_bound, worst)
    return SplitCertificate(
        bound,
        whole_bound,
        [(lo, hi) for _, _, lo, hi, _ in heap],
        leaf_bounds,
        analysed,
        bool(np.max(bound) <= target),
        time.perf_counter() - t0,
        history,
    )


# --------------------------------------------------------------------------------------------
# format search with split certificates
# --------------------------------------------------------------------------------------------

SPLIT_TRIES = 3  # ILP solves at a relaxed target (each followed by a split certificate)


@dataclass
class SplitSearch:
    """What :func:`assign_with_splitting` did: ``rows`` one dict per relaxed-target attempt."""

    boxes: int
    base_hw: int
    base_bound: float
    base_split_bound: float
    rows: list[dict] = field(default_factory=list)
    chosen: int | None = None  # index into rows of the accepted attempt (None: base kept)
    split: SplitCertificate | None = None  # the accepted program's split certificate

    def to_json(self) -> dict:
        return {
            "boxes": self.boxes,
            "base_hw": self.base_hw,
            "base_single_pass_bound": self.base_bound,
            "base_split_bound": self.base_split_bound,
            "attempts": self.rows,
            "chosen": self.chosen,
            "leaves": None if self.split is None else len(self.split.leaves),
        }


def assign_with_splitting(
    layers: list[DenseLayer],
    lower: np.ndarray,
    upper: np.ndarray,
    eps: float,
    base,
    setting: str,
    granularity: str,
    time_limit: float,
    name: str,
    boxes: int,
    progress=None,
):
    """Cheaper formats certified by input splitting (module docstring of the ILP: its rows bound
    the *single-pass* error, so a program whose split certificate is ρ times its single-pass one
    may aim its rows at ε/ρ).

    From the certified refined result ``base``: ρ = split bound / single-pass bound of ``base``
    over ``boxes`` sub-boxes; then up to :data:`SPLIT_TRIES` times: solve the refined ILP at target
    t (first ε/ρ·0.98), certify the program on the whole box (no overflow) and by splitting with
    target ε; accept it when its split bound is <= ε and it costs less than the best so far (then
    try a target relaxed by ε / split bound), else tighten t by the same factor. Returns the
    cheapest certified result (``base`` when no attempt helped), its certificate (the split one
    for an accepted attempt) and the :class:`SplitSearch` log."""
    from ..certify import Certificate
    from ..errors import InfeasibleError
    from .solve import assign_refined

    t0 = time.perf_counter()
    on_grid = base.certificate.input_on_grid
    sc0 = certify_by_splitting(base.program, layers, lower, upper, 0.0, boxes, on_grid)
    base_bound = float(base.certificate.bound)
    log = SplitSearch(boxes, int(base.hw_cost), base_bound, sc0.max_bound)
    best, best_cert = base, base.certificate
    if sc0.max_bound <= 0 or base_bound <= 0:
        return best, best_cert, log
    target = eps * base_bound / sc0.max_bound * 0.98
    for attempt in range(SPLIT_TRIES):
        left = time_limit - (time.perf_counter() - t0)
        if left <= 1 or target <= eps:
            break
        row: dict = {"ilp_target": target}
        try:
            r = assign_refined(layers, lower, upper, target, setting, granularity, left, name)
        except InfeasibleError as exc:
            row["result"] = f"no assignment: {exc}"
            log.rows.append(row)
            target = eps + (target - eps) / 2
            continue
        sc = certify_by_splitting(r.program, layers, lower, upper, eps, boxes, r.certificate.input_on_grid)
        row.update(
            hw=int(r.hw_cost),
            single_pass=float(r.certificate.bound),
            split=sc.max_bound,
            leaves=len(sc.leaves),
        )
        ok = sc.max_bound <= eps and not r.max_width_fallback
        if ok and r.hw_cost < best.hw_cost:
            cert = Certificate(
                r.certificate.errors, r.certificate.ranges, sc.bound, [], r.certificate.input_on_grid,
                r.certificate.relu_states,
            )  # fmt: skip
            r.notes.append(
                f"split certificate: {sc.max_bound:.6g} over {len(sc.leaves)} sub-boxes "
                f"(single pass {r.certificate.bound:.6g}; ILP target {target:.6g} for ε {eps:g})"
            )
            r.certificate = cert
            best, best_cert, log.chosen, log.split = r, cert, len(log.rows), sc
            row["result"] = "accepted"
        else:
            row["result"] = "not certified by splitting" if not ok else "certified, not cheaper"
        log.rows.append(row)
        if progress is not None:
            progress(f"split search {attempt + 1}: target {target:.4g}, {row['result']}")
        target = target * min(eps / sc.max_bound, 1.5 if ok else 0.98) * 0.98 if sc.max_bound > 0 else target
    return best, best_cert, log
