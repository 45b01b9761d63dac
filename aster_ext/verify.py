"""Evidence that a certificate holds: bit-exact simulation against the real network (DESIGN §8).

Inputs come from four sources: uniform random points of the box, box corners, the box centre,
and an adversarial local search that maximises max_o |Ñ_o(x) - N_o(x)| / bound_o (multi-scale
coordinate and random-direction moves from the worst points found so far, down to single
grid steps of the input format). Errors are screened in float64 and the worst candidates per
output are re-evaluated exactly (fractions): the reported maximum and every violation come
from the exact evaluation. With ``input_on_grid`` (Aster's noInitError), inputs are drawn on
the input format's grid inside the box, since the certificate covers only those.

Reference N: ReLU/linear layers in exact rational arithmetic; any other activation σ is
evaluated on the exact rational pre-activation z (rounded to a 128-bit mpf) with
``Activation.eval_mp`` at 128 bits and the result taken exactly as a rational. Each such step
is within ~2^-120·max(1, |z|) of σ(z); through the following layers this stays far below
REF_MARGIN = 2^-80, the tolerance with which a violation is declared (|error| > bound + margin).
Float screening uses ``Activation.eval_float``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np

from .ir import DenseLayer
from .program import FixedProgram
from .progress import phase
from .simulate import simulate, simulate_raw


@dataclass
class VerifyBudget:
    """How many inputs verify evaluates: random + corner samples, then the local search."""

    samples: int = 2000
    search_starts: int = 16
    search_iters: int = 60
    search_batch: int = 64
    exact_candidates: int = 4
    seed: int = 0


@dataclass
class VerifyResult:
    samples: int
    max_observed_error: float
    max_observed_per_output: list[float]
    worst_input: list[float]
    certified_error: float
    certified_per_output: list[float]
    violations: int
    violation_inputs: list[list[float]] = field(default_factory=list)
    bit_exact_cpp: bool | None = None
    cpp_samples: int = 0
    time_s: float = 0.0
    reference: str = ""
    input_on_grid: bool = False
    off_grid_max_error: float | None = None  # settings C/D: worst error of inputs NOT on the in_t grid
    off_grid_samples: int = 0
    report_problems: list[str] = field(default_factory=list)  # report.json claims that do not add up
    split: dict[str, Any] | None = None  # verify --split-boxes: the certificate re-derived on sub-boxes
    exact: dict[str, Any] | None = None  # verify --exact: the MILP measurement of the true maximum error

    @property
    def ratio(self) -> float:
        """The ratio, everywhere: certified / max observed (>= 1 when the certificate holds)."""
        return self.certified_error / self.max_observed_error if self.max_observed_error > 0 else float("inf")

    @property
    def passed(self) -> bool:
        """No violating input (of the split certificate too, when computed), a consistent report,
        and the C++ (when compiled) bit-exact."""
        split_ok = self.split is None or not self.split["violations_against_split"]
        exact_ok = self.exact is None or not self.exact["violations"]
        return (
            self.violations == 0
            and not self.report_problems
            and self.bit_exact_cpp is not False
            and split_ok
            and exact_ok
        )

    def summary_line(self) -> str:
        """The one line ``aster-ext verify`` prints."""
        text = (
            f"verify {'OK' if self.passed else 'FAILED'}: {self.samples} inputs"
            + (" (on the in_t grid)" if self.input_on_grid else "")
            + f", max observed error {self.max_observed_error:.4g}, certified {self.certified_error:.4g}"
            f" (ratio certified/observed {self.ratio:.3g}), violating inputs {self.violations}, "
            f"C++ bit-exact {self.bit_exact_cpp}"
        )
        if self.off_grid_max_error is not None:
            cert = self.certified_error
            times = self.off_grid_max_error / cert if cert > 0 else float("inf")
            text += (
                f"; off-grid inputs (not covered by the certificate): max error {self.off_grid_max_error:.4g}"
                f" = {times:.3g}x certified"
            )
        if self.split is not None:
            sp = self.split
            text += (
                f"; split certificate over {sp['boxes']} sub-boxes: {sp['bound_after']:.4g} "
                f"(single pass {sp['bound_before']:.4g})"
            )
        if self.exact is not None:
            ex = self.exact
            up = ex["max_error_upper"]
            text += (
                f"; exact (MILP) max error in [{ex['max_error_lower']:.4g}, "
                + (f"{up:.4g}]" if up is not None else "unbounded]")
                + (" (optimal)" if ex["all_optimal"] else " (time limit)")
            )
            if ex["violations"]:
                text += f" EXCEEDS THE CERTIFICATE ({ex['violations']} outputs/directions)"
        text += "".join(f"; REPORT INCONSISTENT: {p}" for p in self.report_problems)
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "max_observed_error": self.max_observed_error,
            "max_observed_per_output": self.max_observed_per_output,
            "worst_input": self.worst_input,
            "certified_error": self.certified_error,
            "certified_per_output": self.certified_per_output,
            "violations": self.violations,
            "violation_inputs": self.violation_inputs[:10],
            "bit_exact_cpp": self.bit_exact_cpp,
            "cpp_samples": self.cpp_samples,
            "ratio": self.ratio,
            "ratio_definition": "certified_error / max_observed_error",
            "time_s": self.time_s,
            "reference": self.reference,
            "input_on_grid": self.input_on_grid,
            "off_grid_max_error": self.off_grid_max_error,
            "off_grid_samples": self.off_grid_samples,
            "report_problems": self.report_problems,
            "split": self.split,
            "exact": self.exact,
            "passed": self.passed,
        }


REF_PREC = 128  # bits of the mpmath reference of non-ReLU activations (module docstring)
REF_MARGIN = 2.0**-80  # violation tolerance covering that reference's own error


def real_forward_float(layers: list[DenseLayer], x: np.ndarray) -> np.ndarray:
    """N(x) in float64 for a batch x [batch, n_in] (screening only; not rigorous)."""
    a = np.asarray(x, dtype=np.float64)
    for layer in layers:
        z = a @ layer.weight.T + layer.bias
        if layer.activation == "relu":
            a = np.maximum(z, 0.0)
        elif layer.activation == "identity":
            a = z
        else:
            a = np.asarray(layer.act.eval_float(z), dtype=np.float64)
    return a


def _mp_of(q: Fraction) -> mpmath.mpf:
    return mpmath.mpf(q.numerator) / q.denominator


def _fraction_of(v: mpmath.mpf) -> Fraction:
    sign, man, exp, _ = mpmath.mpf(v)._mpf_  # value = (-1)^sign · man · 2^exp (man_exp drops the sign)
    if not man:
        return Fraction(0)
    return (-1) ** int(sign) * Fraction(int(man)) * Fraction(2) ** int(exp)


def real_forward_exact(layers: list[DenseLayer], x: list[Fraction]) -> list[Fraction]:
    """N(x) in exact rational arithmetic with the real (exact) parameters; non-ReLU activations
    to 128 bits (module docstring: within REF_MARGIN of the exact value)."""
    a = list(x)
    for layer in layers:
        w = layer.exact_weight()
        b = layer.exact_bias()
        z = [sum((w[j, k] * a[k] for k in range(layer.n_in)), Fraction(0)) + b[j] for j in range(layer.n_out)]
        if layer.activation == "relu":
            a = [max(v, Fraction(0)) for v in z]
        elif layer.activation == "identity":
            a = z
        else:
            act = layer.act
            with mpmath.workprec(REF_PREC):
                a = [_fraction_of(act.eval_mp(_mp_of(v))) for v in z]
    return a


class _Evaluator:
    """Fixed-point vs real errors for batches of inputs (raw grid inputs or doubles)."""

    def __init__(self, program: FixedProgram, layers: list[DenseLayer], on_grid: bool) -> None:
        self.program = program
        self.layers = layers
        self.on_grid = on_grid
        self.in_frac = program.input_t.frac_bits
        self.out_frac = program.output_t.frac_bits

    def inputs_as_float(self, pts: np.ndarray) -> np.ndarray:
        if self.on_grid:
            return np.array([[float(v) for v in row] for row in pts], dtype=np.float64) * 2.0**-self.in_frac
        return pts

    def errors(self, pts: np.ndarray) -> np.ndarray:
        """Float64 screen of Ñ(x) - N(x) for each point: [batch, n_out]."""
        if self.on_grid:
            y_raw = simulate_raw(self.program, pts)
        else:
            _, y_raw = simulate(self.program, pts)
        y_fix = np.array([[float(v) for v in row] for row in y_raw], dtype=np.float64) * 2.0**-self.out_frac
        return y_fix - real_forward_float(self.layers, self.inputs_as_float(pts))

    def exact_errors(self, pt: np.ndarray) -> list[Fraction]:
        """Exact Ñ(x) - N(x) at one point."""
        batch = pt[None, :]
        if self.on_grid:
            y_raw = simulate_raw(self.program, batch)[0]
            x = [
                Fraction(int(v), 2**self.in_frac)
                if self.in_frac >= 0
                else Fraction(int(v) * 2**-self.in_frac)
                for v in pt
            ]
        else:
            _, y = simulate(self.program, batch)
            y_raw = y[0]
            x = [Fraction(float(v)) for v in pt]
        y_real = real_forward_exact(self.layers, x)
        scale = Fraction(2) ** -self.out_frac
        return [Fraction(int(r)) * scale - t for r, t in zip(y_raw, y_real, strict=True)]


def _sample_box(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, n: int) -> np.ndarray:
    return lo + (hi - lo) * rng.random((n, lo.size))


def box_corners(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, limit: int) -> np.ndarray:
    """Corners of the box [lo, hi]: all 2^d when d <= 12 and 2^d <= ``limit``, else ``limit``
    random ones (each coordinate lo or hi with probability 1/2)."""
    d = lo.size
    if d <= 12 and 2**d <= limit:
        bits = ((np.arange(2**d)[:, None] >> np.arange(d)[None, :]) & 1).astype(bool)
    else:
        bits = rng.random((limit, d)) < 0.5
    return np.where(bits, hi[None, :], lo[None, :])


def verify_program(
    program: FixedProgram,
    layers: list[DenseLayer],
    lower: np.ndarray,
    upper: np.ndarray,
    certified_per_output: np.ndarray,
    input_on_grid: bool,
    budget: VerifyBudget | None = None,
    reference: str = "",
    progress: Callable[[str], None] | None = None,
) -> VerifyResult:
    """Search for inputs where the simulated program's error exceeds the certified bound."""
    b = budget or VerifyBudget()
    t0 = time.perf_counter()
    rng = np.random.default_rng(b.seed)
    lo = np.asarray(lower, dtype=np.float64)
    hi = np.asarray(upper, dtype=np.float64)
    ev = _Evaluator(program, layers, input_on_grid)
    bound = np.asarray(certified_per_output, dtype=np.float64)
    scale = np.where(bound > 0, bound, 1.0)

    if input_on_grid:
        f = program.input_t.frac_bits
        glo = np.ceil(lo * 2.0**f).astype(object)
        ghi = np.floor(hi * 2.0**f).astype(object)
        to_pts = _grid_mapper(glo, ghi)
    else:
        to_pts = _box_mapper(lo, hi)

    base = np.vstack(
        [
            _sample_box(rng, np.zeros_like(lo), np.ones_like(lo), b.samples),
            box_corners(rng, np.zeros_like(lo), np.ones_like(lo), 256),
            np.full((1, lo.size), 0.5),
        ]
    )
    with phase(progress, f"verify: {len(base)} random and corner samples"):
        pts = to_pts(base)
        err = ev.errors(pts)
    score = np.max(np.abs(err) / scale[None, :], axis=1)
    count = len(pts)
    if progress:
        worst = 1.0 / score.max() if score.max() > 0 else float("inf")
        progress(f"verify: {count} random/corner samples, ratio certified/observed so far {worst:.3g}")

    # adversarial local search in the unit cube coordinates u (x = lo + u (hi - lo))
    order = np.argsort(-score)[: b.search_starts]
    starts_u = base[order].copy()
    starts_s = score[order].copy()
    best_u = [base[np.argmax(np.abs(err[:, o]) / scale[o])].copy() for o in range(err.shape[1])]
    best_e = [float(np.max(np.abs(err[:, o]))) for o in range(err.shape[1])]
    steps = np.geomspace(0.25, 2.0**-40, b.search_iters)
    with phase(progress, "verify: adversarial search rounds", total=b.search_iters) as handle:
        for it in range(b.search_iters):
            handle.advance()
            step = steps[it]
            cand = np.repeat(starts_u, b.search_batch // max(1, len(starts_u)) + 1, axis=0)
            cand = cand[: max(b.search_batch, len(starts_u))]
            mode = rng.random(len(cand))
            delta = rng.normal(size=cand.shape) * step
            coord = rng.integers(0, lo.size, len(cand))
            delta = np.where((mode < 0.5)[:, None], 0.0, delta)
            delta[np.arange(len(cand)), coord] += rng.choice([-1.0, 1.0], len(cand)) * step
            cand = np.clip(cand + delta, 0.0, 1.0)
            cpts = to_pts(cand)
            cerr = ev.errors(cpts)
            count += len(cand)
            cs = np.max(np.abs(cerr) / scale[None, :], axis=1)
            for o in range(cerr.shape[1]):
                k = int(np.argmax(np.abs(cerr[:, o])))
                if abs(cerr[k, o]) > best_e[o]:
                    best_e[o] = float(abs(cerr[k, o]))
                    best_u[o] = cand[k].copy()
            # each start keeps its best candidate if it improved
            per = len(cand) // len(starts_u)
            for s in range(len(starts_u)):
                block = slice(s * per, (s + 1) * per) if per > 0 else slice(s, s + 1)
                if cs[block].size and cs[block].max() > starts_s[s]:
                    j = block.start + int(np.argmax(cs[block]))
                    starts_u[s], starts_s[s] = cand[j], cs[j]
    if progress:
        progress(f"verify: adversarial search done ({count} evaluations)")

    # exact re-evaluation of the worst point per output (plus the best starts)
    candidates = list(best_u) + [starts_u[i] for i in np.argsort(-starts_s)[: b.exact_candidates]]
    max_per_out = np.zeros(bound.size)
    violations: list[list[float]] = []
    worst_in: list[float] = []
    worst_val = -1.0
    with phase(progress, "verify: exact re-check of the worst inputs", total=len(candidates)) as handle:
        for u in candidates:
            handle.advance()
            pt = to_pts(u[None, :])[0]
            ex = ev.exact_errors(pt)
            mags = np.array([float(abs(v)) for v in ex])
            max_per_out = np.maximum(max_per_out, mags)
            smooth = any(lay.activation not in ("relu", "identity") for lay in layers)
            margin = Fraction(REF_MARGIN) if smooth else 0
            x_float = [float(v) for v in ev.inputs_as_float(pt[None, :])[0]]
            exceeds = any(abs(v) > Fraction(float(bound[o])) + margin for o, v in enumerate(ex))
            if exceeds and x_float not in violations:
                violations.append(x_float)  # one entry per violating input (several outputs may exceed)
            if mags.max() > worst_val:
                worst_val = float(mags.max())
                worst_in = x_float
    return VerifyResult(
        samples=count,
        max_observed_error=float(max_per_out.max()),
        max_observed_per_output=[float(v) for v in max_per_out],
        worst_input=worst_in,
        certified_error=float(bound.max()),
        certified_per_output=[float(v) for v in bound],
        violations=len(violations),
        violation_inputs=violations,
        time_s=time.perf_counter() - t0,
        reference=reference,
        input_on_grid=input_on_grid,
    )


def _box_mapper(lo: np.ndarray, hi: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    def to_pts(u: np.ndarray) -> np.ndarray:
        return np.clip(lo[None, :] + (hi - lo)[None, :] * u, lo[None, :], hi[None, :])

    return to_pts


def _grid_mapper(glo: np.ndarray, ghi: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Unit-cube points -> raw grid integers in [glo, ghi] (object ints, exact)."""
    span = [int(h) - int(l_) for l_, h in zip(glo, ghi, strict=True)]

    def to_pts(u: np.ndarray) -> np.ndarray:
        out = np.empty(u.shape, dtype=object)
        for k in range(u.shape[1]):
            col = np.clip(u[:, k], 0.0, 1.0)
            if span[k] < 2**52:
                out[:, k] = [int(glo[k]) + int(round(c * span[k])) for c in col]
            else:
                out[:, k] = [int(glo[k]) + (int(Fraction(float(c)) * span[k])) for c in col]
        return out

    return to_pts
