"""A small mixed-integer linear model: variables, linear rows, objective (DESIGN §5).

- :class:`Model` holds integer/binary/continuous variables, named rows ``Σ a_v·v (<=|>=|=) rhs`` and a
  linear objective, all with float coefficients (what is written to the LP file and solved).
- :func:`to_lp_text` / :func:`parse_lp` write and read CPLEX-LP text (enough of the format for the
  models of this project and Aster's ``model.lp``); :func:`compare_models` diffs two models by name.
- :func:`solve` runs HiGHS (optionally with power-of-two column scaling, so that tiny magnitudes such
  as 2^-32 are not dropped or swamped by tolerances); :func:`exact_check` re-checks a solution in
  exact rational arithmetic, taking every float coefficient as the exact dyadic rational it is;
  :func:`solve_exact` repeats solve + exact check, cutting off (no-good cut on the binaries) every
  assignment that the solver's tolerances admitted but exact arithmetic rejects.
"""

from __future__ import annotations

import copy
import math
import re
import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

INF = math.inf
SENSES = ("<=", ">=", "=")


@dataclass
class Var:
    """A variable: kind "C" (continuous), "I" (general integer) or "B" (binary) with bounds."""

    name: str
    kind: str = "C"
    lb: float = 0.0
    ub: float = INF


@dataclass
class Row:
    """``Σ coeffs[v]·v  sense  rhs``. ``strict`` asks the exact re-check for < / > (the LP text cannot)."""

    name: str
    coeffs: dict[str, float]
    sense: str
    rhs: float
    strict: bool = False


@dataclass
class Model:
    """A MILP: minimise (or maximise) ``Σ objective[v]·v`` subject to ``rows`` and variable bounds."""

    name: str = "model"
    vars: dict[str, Var] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    objective: dict[str, float] = field(default_factory=dict)
    obj_name: str = "obj1"
    minimize: bool = True

    def add_var(self, name: str, kind: str = "C", lb: float = 0.0, ub: float = INF) -> str:
        if name in self.vars:
            raise ValueError(f"duplicate variable {name!r}")
        if kind not in ("C", "I", "B"):
            raise ValueError(f"bad variable kind {kind!r}")
        if kind == "B":
            lb, ub = max(lb, 0.0), min(ub, 1.0)
        self.vars[name] = Var(name, kind, float(lb), float(ub))
        return name

    def add_row(
        self, name: str, coeffs: dict[str, float], sense: str, rhs: float, strict: bool = False
    ) -> Row:
        if sense not in SENSES:
            raise ValueError(f"bad row sense {sense!r}")
        for v in coeffs:
            if v not in self.vars:
                raise ValueError(f"row {name!r} uses unknown variable {v!r}")
        row = Row(name, {v: float(c) for v, c in coeffs.items()}, sense, float(rhs), strict)
        self.rows.append(row)
        return row

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def copy(self) -> Model:
        return copy.deepcopy(self)


# ------------------------------------------------------------------------------------------------
# CPLEX-LP text
# ------------------------------------------------------------------------------------------------


def fmt_num(x: float) -> str:
    """Shortest round-trip text of a float (integers without a decimal point)."""
    x = float(x)
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def _expr_text(coeffs: dict[str, float], per_line: int = 6) -> str:
    parts: list[str] = []
    for i, (v, c) in enumerate(coeffs.items()):
        sign = "-" if c < 0 else "+"
        mag = abs(c)
        term = v if mag == 1.0 else f"{fmt_num(mag)} {v}"
        if i == 0:
            parts.append(f"- {term}" if sign == "-" else term)
        else:
            parts.append(f"{sign} {term}")
    lines = [" ".join(parts[i : i + per_line]) for i in range(0, len(parts), per_line)]
    return "\n       ".join(lines) if lines else "0 x_dummy_zero"


def to_lp_text(model: Model, comment: str = "") -> str:
    """CPLEX-LP text of ``model`` (strict rows are written as non-strict; a comment names them)."""
    out: list[str] = ["\\ENCODING=ISO-8859-1", f"\\Problem name: {model.name}"]
    if comment:
        out += [f"\\ {line}" for line in comment.splitlines()]
    strict = [r.name for r in model.rows if r.strict]
    if strict:
        out.append(f"\\ strict rows (exact re-check demands < / >): {' '.join(strict)}")
    out.append("")
    out.append("Minimize" if model.minimize else "Maximize")
    out.append(f" {model.obj_name}: {_expr_text(model.objective)}")
    out.append("Subject To")
    for r in model.rows:
        out.append(f" {r.name}: {_expr_text(r.coeffs)} {r.sense} {fmt_num(r.rhs)}")
    bounds: list[str] = []
    for v in model.vars.values():
        if v.kind == "B":
            continue
        if v.lb == -INF and v.ub == INF:
            bounds.append(f" {v.name} free")
        elif v.lb == v.ub:
            bounds.append(f" {v.name} = {fmt_num(v.lb)}")
        elif v.ub == INF:
            if v.lb != 0.0:
                bounds.append(f" {v.name} >= {fmt_num(v.lb)}")
        else:
            lo = "-inf" if v.lb == -INF else fmt_num(v.lb)
            bounds.append(f" {lo} <= {v.name} <= {fmt_num(v.ub)}")
    if bounds:
        out.append("Bounds")
        out += bounds
    for title, kind in (("Binaries", "B"), ("Generals", "I")):
        names = [v.name for v in model.vars.values() if v.kind == kind]
        if names:
            out.append(title)
            out += [" " + " ".join(names[i : i + 20]) for i in range(0, len(names), 20)]
    out.append("End")
    return "\n".join(out) + "\n"


_TOKEN = re.compile(
    r"\s*(<=|>=|=<|=>|<|>|=|[+-]|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[A-Za-z_][^\s:+\-<>=*^]*(?::)?|:)"
)
_SECTIONS = {
    "minimize": "min", "minimum": "min", "min": "min",
    "maximize": "max", "maximum": "max", "max": "max",
    "subject to": "st", "such that": "st", "st": "st", "s.t.": "st",
    "bounds": "bounds", "bound": "bounds",
    "binaries": "bin", "binary": "bin", "bin": "bin",
    "generals": "gen", "general": "gen", "gen": "gen", "integers": "gen",
    "end": "end",
}  # fmt: skip


def _tokens(text: str) -> list[str]:
    toks: list[str] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"LP parse error near {text[pos : pos + 40]!r}")
        toks.append(m.group(1))
        pos = m.end()
    return toks


def _is_num(t: str) -> bool:
    return bool(t) and (t[0].isdigit() or t[0] == ".")


def _parse_linear(toks: list[str], i: int, stop: set[str]) -> tuple[dict[str, float], float, int]:
    """Terms until a token in ``stop``: returns (coefficients, constant on the lhs, next index)."""
    coeffs: dict[str, float] = {}
    const = 0.0
    sign = 1.0
    coef: float | None = None
    while i < len(toks) and toks[i] not in stop:
        t = toks[i]
        if t == "+":
            pass
        elif t == "-":
            sign = -sign
        elif _is_num(t):
            if coef is not None:
                const += sign * coef
                sign = 1.0
            coef = float(t)
        else:
            c = sign * (1.0 if coef is None else coef)
            coeffs[t] = coeffs.get(t, 0.0) + c
            sign, coef = 1.0, None
        i += 1
    if coef is not None:
        const += sign * coef
    return coeffs, const, i


def _norm_sense(t: str) -> str:
    return {"<": "<=", "=<": "<=", "<=": "<=", ">": ">=", "=>": ">=", ">=": ">=", "=": "="}[t]


def parse_lp(text: str) -> Model:
    """Parse CPLEX-LP text (objective, named rows possibly spread over lines, bounds, binaries, generals)."""
    sections: dict[str, list[str]] = {"min": [], "max": [], "st": [], "bounds": [], "bin": [], "gen": []}
    current = None
    name = "model"
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("\\"):
            m = re.match(r"\\Problem name:\s*(\S+)", line)
            if m:
                name = m.group(1)
            continue
        if not line:
            continue
        key = _SECTIONS.get(line.lower())
        if key is not None:
            current = key
            if key == "end":
                break
            continue
        if current is None:
            raise ValueError(f"LP text outside any section: {line!r}")
        sections[current].append(line)
    model = Model(name=name)

    def ensure(v: str) -> None:
        if v not in model.vars:
            model.vars[v] = Var(v)

    obj_lines = sections["min"] or sections["max"]
    model.minimize = not sections["max"]
    toks = _tokens(" ".join(obj_lines))
    i = 0
    if toks and toks[0].endswith(":"):
        model.obj_name = toks[0][:-1]
        i = 1
    coeffs, _const, _ = _parse_linear(toks, i, set())
    for v in coeffs:
        ensure(v)
    model.objective = coeffs
    senses = {"<=", ">=", "=<", "=>", "<", ">", "="}
    toks = _tokens(" ".join(sections["st"]))
    i = 0
    count = 0
    while i < len(toks):
        rname = None
        if toks[i].endswith(":") and len(toks[i]) > 1:
            rname = toks[i][:-1]
            i += 1
        coeffs, const, i = _parse_linear(toks, i, senses)
        if i >= len(toks):
            raise ValueError(f"row {rname!r} has no sense")
        sense = _norm_sense(toks[i])
        i += 1
        sign = 1.0
        while toks[i] in ("+", "-"):
            sign = -sign if toks[i] == "-" else sign
            i += 1
        rhs = sign * float(toks[i]) if _is_num(toks[i]) else sign * _inf_token(toks[i])
        i += 1
        count += 1
        for v in coeffs:
            ensure(v)
        model.rows.append(Row(rname or f"c{count}", coeffs, sense, rhs - const))
    for line in sections["bounds"]:
        _parse_bound(model, _tokens(line), ensure)
    for key, kind in (("bin", "B"), ("gen", "I")):
        for line in sections[key]:
            for v in line.split():
                ensure(v)
                model.vars[v].kind = kind
                if kind == "B":
                    model.vars[v].lb = max(model.vars[v].lb, 0.0)
                    model.vars[v].ub = min(model.vars[v].ub, 1.0)
    return model


def _inf_token(t: str) -> float:
    if t.lower() in ("inf", "infinity"):
        return INF
    raise ValueError(f"expected a number, got {t!r}")


def _bound_value(toks: list[str], i: int) -> tuple[float, int]:
    sign = 1.0
    while toks[i] in ("+", "-"):
        sign = -sign if toks[i] == "-" else sign
        i += 1
    t = toks[i]
    return sign * (float(t) if _is_num(t) else _inf_token(t)), i + 1


def _parse_bound(model: Model, toks: list[str], ensure) -> None:
    if len(toks) == 2 and toks[1].lower() == "free":
        ensure(toks[0])
        model.vars[toks[0]].lb, model.vars[toks[0]].ub = -INF, INF
        return
    if _is_num(toks[0]) or toks[0] in ("+", "-") or toks[0].lower() in ("inf", "infinity"):
        lo, i = _bound_value(toks, 0)
        s1 = _norm_sense(toks[i])
        v = toks[i + 1]
        ensure(v)
        _apply_bound(model.vars[v], s1, lo, reverse=True)
        i += 2
        if i < len(toks):
            s2 = _norm_sense(toks[i])
            hi, _ = _bound_value(toks, i + 1)
            _apply_bound(model.vars[v], s2, hi, reverse=False)
        return
    v = toks[0]
    ensure(v)
    val, _ = _bound_value(toks, 2)
    _apply_bound(model.vars[v], _norm_sense(toks[1]), val, reverse=False)


def _apply_bound(var: Var, sense: str, value: float, reverse: bool) -> None:
    """Apply ``var sense value`` (or ``value sense var`` when ``reverse``)."""
    if sense == "=":
        var.lb = var.ub = value
    elif (sense == "<=") != reverse:
        var.ub = value
    else:
        var.lb = value


def compare_models(a: Model, b: Model, rel_tol: float = 1e-12) -> tuple[list[str], float]:
    """Differences between two models matched by names; returns (messages, max relative difference)."""
    msgs: list[str] = []
    worst = 0.0

    def close(x: float, y: float, what: str) -> None:
        nonlocal worst
        if x == y:
            return
        if math.isinf(x) or math.isinf(y):
            msgs.append(f"{what}: {x!r} vs {y!r}")
            return
        rel = abs(x - y) / max(abs(x), abs(y))
        worst = max(worst, rel)
        if rel > rel_tol:
            msgs.append(f"{what}: {x!r} vs {y!r} (rel {rel:.2e})")

    if a.minimize != b.minimize:
        msgs.append("objective sense differs")
    for v in sorted(set(a.objective) | set(b.objective)):
        close(a.objective.get(v, 0.0), b.objective.get(v, 0.0), f"objective[{v}]")
    va, vb = set(a.vars), set(b.vars)
    for v in sorted(va ^ vb):
        msgs.append(f"variable {v} only in {'first' if v in va else 'second'} model")
    for v in sorted(va & vb):
        x, y = a.vars[v], b.vars[v]
        if x.kind != y.kind:
            msgs.append(f"variable {v}: kind {x.kind} vs {y.kind}")
        close(x.lb, y.lb, f"lb[{v}]")
        close(x.ub, y.ub, f"ub[{v}]")
    ra = {r.name: r for r in a.rows}
    rb = {r.name: r for r in b.rows}
    for n in sorted(set(ra) ^ set(rb)):
        msgs.append(f"row {n} only in {'first' if n in ra else 'second'} model")
    for n in [r.name for r in a.rows if r.name in rb]:
        x, y = ra[n], rb[n]
        if x.sense != y.sense:
            msgs.append(f"row {n}: sense {x.sense} vs {y.sense}")
        close(x.rhs, y.rhs, f"rhs[{n}]")
        for v in sorted(set(x.coeffs) | set(y.coeffs)):
            close(x.coeffs.get(v, 0.0), y.coeffs.get(v, 0.0), f"{n}[{v}]")
    return msgs, worst


# ------------------------------------------------------------------------------------------------
# HiGHS
# ------------------------------------------------------------------------------------------------


@dataclass
class Solution:
    """Result of one solver run. ``values`` is None when no feasible point was found."""

    status: str  # optimal | infeasible | time_limit | unbounded | error
    values: dict[str, float] | None
    objective: float | None
    time_s: float
    mip_gap: float | None = None
    message: str = ""


@dataclass
class GuardedRun:
    """What :func:`run_highs_guarded` brings back: HiGHS's model status string (lower case; "killed"
    when the wall-clock guard stopped it), whether a primal solution exists, its column values and
    objective; for a MIP, HiGHS's dual bound (no minimising solution is below it)."""

    model_status: str
    has_solution: bool
    x: np.ndarray | None
    objective: float | None
    dual_bound: float | None = None


def _exit_with_parent(parent_pid: int, every_s: float = 0.5) -> None:
    """In a daemon thread: end this process once its parent is gone (re-parented), so a solve whose
    caller was killed (a sweep cell at its wall-clock limit) does not run on as an orphan."""
    import os
    import threading

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(every_s)
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def _guarded_child(conn, lp, options: dict, parent_pid: int) -> None:
    """Child process of :func:`run_highs_guarded`: solve and send the result back."""
    try:
        h = new_highs(threads=int(options.get("threads", 1)))
        # after new_highs: resetting HiGHS's scheduler inherited through the fork fails with
        # "Invalid argument" once this process runs a second thread
        _exit_with_parent(parent_pid)
        for key, value in options.items():
            if key != "threads":
                h.setOptionValue(key, value)
        h.passModel(lp)
        h.run()
        info = h.getInfo()
        ok = info.primal_solution_status == 2
        x = np.asarray(h.getSolution().col_value) if ok else None
        bound = float(info.mip_dual_bound)
        conn.send(GuardedRun(h.modelStatusToString(h.getModelStatus()).lower(), ok, x,
                             float(info.objective_function_value) if ok else None,
                             bound if np.isfinite(bound) else None))  # fmt: skip
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        conn.send(GuardedRun(f"error: {exc}", False, None, None))
    finally:
        conn.close()


def run_highs_guarded(lp, options: dict, wall_s: float) -> GuardedRun:
    """Solve ``lp`` (a highspy HighsLp) with ``options`` in a forked child process and kill it if
    it has not answered after ``wall_s`` seconds of wall clock.

    Why: HiGHS 1.16 can run far past its own ``time_limit`` without calling its interrupt
    callbacks (measured on the per-channel CNN ILP: Convnet_avgpool and Convnet_maxpool rounds
    still running after 10 minutes at a 30 s limit, stuck after the root's first sub-MIP; with
    presolve off the dumped models solve in 2-3 s, which the graph ILP now uses, but nothing
    shows the cause is gone for good). A killed run returns no solution; callers treat it like a
    time limit without an incumbent."""
    import multiprocessing as mp
    import os

    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_guarded_child, args=(child, lp, options, os.getpid()), daemon=True)
    proc.start()
    child.close()
    try:
        if parent.poll(wall_s):
            try:
                return parent.recv()
            except EOFError:  # the child died without an answer
                return GuardedRun("error: solver process ended without a result", False, None, None)
        return GuardedRun("killed", False, None, None)
    finally:
        parent.close()
        if proc.is_alive():
            proc.kill()
        proc.join()


def new_highs(threads: int | None = None):
    """A HiGHS instance; the plain binding class avoids the Python wrapper's banner on stdout.

    ``threads``: HiGHS keeps one global task scheduler per process, sized by the first run; an
    instance asking for another thread count afterwards fails at ``run()`` with model status
    "Not Set" and no solution (a CNN ILP after any dense solve in the same process fell back to
    greedy that way). So the global scheduler is reset before the option is set."""
    import highspy

    core = getattr(highspy, "_core", None)
    cls = getattr(core, "_Highs", None) if core is not None else None
    h = cls() if cls is not None else highspy.Highs()
    if threads is not None:
        h.resetGlobalScheduler(True)
        h.setOptionValue("threads", int(threads))
    return h


def highs_lp(
    a: object,
    cost: np.ndarray,
    col_lo: np.ndarray,
    col_hi: np.ndarray,
    row_lo: np.ndarray,
    row_hi: np.ndarray,
    integer: np.ndarray,
):
    """A ``highspy.HighsLp`` for ``min cost·x`` s.t. ``row_lo <= A x <= row_hi``, ``col_lo <= x <=
    col_hi``, x_i integer where ``integer[i]``; ``a`` is a scipy sparse matrix; ±inf bounds become
    HiGHS's infinity."""
    import highspy
    import scipy.sparse as sp

    a = sp.csc_matrix(a)
    inf = highspy.kHighsInf

    def bound(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        return np.where(np.isposinf(v), inf, np.where(np.isneginf(v), -inf, v))

    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = a.shape[1], a.shape[0]
    lp.col_cost_ = np.asarray(cost, dtype=np.float64)
    lp.col_lower_, lp.col_upper_ = bound(col_lo), bound(col_hi)
    lp.row_lower_, lp.row_upper_ = bound(row_lo), bound(row_hi)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr.astype(np.int32)
    lp.a_matrix_.index_ = a.indices.astype(np.int32)
    lp.a_matrix_.value_ = a.data.astype(np.float64)
    kinds = (highspy.HighsVarType.kContinuous, highspy.HighsVarType.kInteger)
    lp.integrality_ = [kinds[int(bool(v))] for v in integer]
    return lp


def solve(
    model: Model,
    time_limit: float = 60.0,
    col_scale: dict[str, float] | None = None,
    feas_tol: float = 1e-9,
    mip_rel_gap: float = 0.0,
    threads: int | None = None,
) -> Solution:
    """Solve with HiGHS. ``col_scale[v] = s`` solves for v' = s·v (s should be a power of two).

    Rows are scaled by powers of two so their largest coefficient has magnitude in [1, 2).
    """
    import highspy

    t0 = time.perf_counter()
    names = list(model.vars)
    index = {n: i for i, n in enumerate(names)}
    scale = np.ones(len(names))
    if col_scale:
        for n, s in col_scale.items():
            if n in index:
                scale[index[n]] = s
    nrow = len(model.rows)
    lower = np.array([model.vars[n].lb for n in names]) * scale
    upper = np.array([model.vars[n].ub for n in names]) * scale
    cost = np.array([model.objective.get(n, 0.0) for n in names]) / scale
    cols: list[list[tuple[int, float]]] = [[] for _ in names]
    row_lo = np.empty(nrow)
    row_hi = np.empty(nrow)
    for r_i, r in enumerate(model.rows):
        vals = {index[v]: c / scale[index[v]] for v, c in r.coeffs.items() if c != 0.0}
        big = max((abs(c) for c in vals.values()), default=1.0)
        rs = 2.0 ** -math.floor(math.log2(big)) if big > 0 else 1.0
        for j, c in vals.items():
            cols[j].append((r_i, c * rs))
        rhs = r.rhs * rs
        row_lo[r_i] = rhs if r.sense in (">=", "=") else -highspy.kHighsInf
        row_hi[r_i] = rhs if r.sense in ("<=", "=") else highspy.kHighsInf
    start = [0]
    idx: list[int] = []
    val: list[float] = []
    for c in cols:
        for r_i, v in c:
            idx.append(r_i)
            val.append(v)
        start.append(len(idx))
    lp = highspy.HighsLp()
    lp.num_col_ = len(names)
    lp.num_row_ = nrow
    lp.col_cost_ = cost
    lp.col_lower_ = np.where(np.isinf(lower), -highspy.kHighsInf, lower)
    lp.col_upper_ = np.where(np.isinf(upper), highspy.kHighsInf, upper)
    lp.row_lower_ = row_lo
    lp.row_upper_ = row_hi
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.array(start, dtype=np.int32)
    lp.a_matrix_.index_ = np.array(idx, dtype=np.int32)
    lp.a_matrix_.value_ = np.array(val, dtype=np.float64)
    kinds = {"C": highspy.HighsVarType.kContinuous, "I": highspy.HighsVarType.kInteger,
             "B": highspy.HighsVarType.kInteger}  # fmt: skip
    lp.integrality_ = [kinds[model.vars[n].kind] for n in names]
    lp.sense_ = highspy.ObjSense.kMinimize if model.minimize else highspy.ObjSense.kMaximize
    h = new_highs(threads)
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
    h.setOptionValue("mip_abs_gap", 1e-9)
    h.setOptionValue("mip_feasibility_tolerance", feas_tol)
    h.setOptionValue("primal_feasibility_tolerance", feas_tol)
    h.setOptionValue("small_matrix_value", 1e-12)
    h.setOptionValue("random_seed", 0)
    h.passModel(lp)
    h.run()
    ms = h.modelStatusToString(h.getModelStatus()).lower()
    info = h.getInfo()
    has_sol = info.primal_solution_status == 2  # kSolutionStatusFeasible
    status = (
        "optimal" if "optimal" in ms
        else "infeasible" if "infeasible" in ms
        else "time_limit" if "time" in ms
        else "unbounded" if "unbounded" in ms
        else "error"
    )  # fmt: skip
    values = None
    obj = None
    if has_sol and status in ("optimal", "time_limit"):
        x = np.array(h.getSolution().col_value) / scale
        values = {n: float(x[i]) for i, n in enumerate(names)}
        obj = float(info.objective_function_value)
    gap = float(info.mip_gap) if has_sol else None
    return Solution(status, values, obj, time.perf_counter() - t0, gap, ms)


# ------------------------------------------------------------------------------------------------
# Exact re-check
# ------------------------------------------------------------------------------------------------


@dataclass
class ExactCheck:
    """Outcome of an exact (Fraction) check of one assignment against every bound and row."""

    ok: bool
    values: dict[str, Fraction]
    violations: list[tuple[str, Fraction]]  # (row or bound name, amount)
    objective: Fraction


def exact_check(model: Model, values: dict[str, float], derive_continuous: bool = True) -> ExactCheck:
    """Check ``values`` exactly: integer variables are rounded to integers; every continuous variable
    that an equality row defines from already known ones is recomputed exactly from that row
    (e.g. twoPowerPiDot = Σ 2^-p·x); the others are taken as the exact value of their float."""
    ex: dict[str, Fraction] = {}
    for n, v in model.vars.items():
        if v.kind in ("I", "B"):
            ex[n] = Fraction(round(values[n]))
    if derive_continuous:
        progress = True
        while progress:
            progress = False
            for r in model.rows:
                if r.sense != "=":
                    continue
                unknown = [v for v in r.coeffs if v not in ex and r.coeffs[v] != 0.0]
                if len(unknown) != 1:
                    continue
                u = unknown[0]
                acc = sum((Fraction(c) * ex[v] for v, c in r.coeffs.items() if v != u), Fraction(0))
                ex[u] = (Fraction(r.rhs) - acc) / Fraction(r.coeffs[u])
                progress = True
    for n in model.vars:
        if n not in ex:
            ex[n] = Fraction(values[n])
    viol: list[tuple[str, Fraction]] = []
    for n, v in model.vars.items():
        if v.lb != -INF and ex[n] < Fraction(v.lb):
            viol.append((f"lb[{n}]", Fraction(v.lb) - ex[n]))
        if v.ub != INF and ex[n] > Fraction(v.ub):
            viol.append((f"ub[{n}]", ex[n] - Fraction(v.ub)))
    for r in model.rows:
        lhs = sum((Fraction(c) * ex[v] for v, c in r.coeffs.items()), Fraction(0))
        rhs = Fraction(r.rhs)
        if r.sense == "<=":
            bad = lhs >= rhs if r.strict else lhs > rhs
            amount = lhs - rhs
        elif r.sense == ">=":
            bad = lhs <= rhs if r.strict else lhs < rhs
            amount = rhs - lhs
        else:
            bad = lhs != rhs
            amount = abs(lhs - rhs)
        if bad:
            viol.append((r.name, amount))
    obj = sum((Fraction(c) * ex[v] for v, c in model.objective.items()), Fraction(0))
    return ExactCheck(not viol, ex, viol, obj)


@dataclass
class ExactSolution:
    """Best solution that passed the exact re-check (or None), with the history of the search."""

    status: str  # optimal | infeasible | time_limit | error
    values: dict[str, Fraction] | None
    objective: Fraction | None
    time_s: float
    rounds: int
    rejected: list[tuple[float, list[tuple[str, Fraction]]]]  # (objective, violations) of cut-off points
    proven_optimal: bool
    final_model: Model


def solve_exact(
    model: Model,
    time_limit: float = 60.0,
    col_scale: dict[str, float] | None = None,
    max_rounds: int = 50,
    feas_tol: float = 1e-9,
) -> ExactSolution:
    """Solve, re-check exactly, and cut off (no-good on the binaries) every point the check rejects."""
    t0 = time.perf_counter()
    work = model.copy()
    binaries = [n for n, v in work.vars.items() if v.kind == "B"]
    rejected: list[tuple[float, list[tuple[str, Fraction]]]] = []
    rounds = 0
    status = "error"
    while rounds < max_rounds:
        left = time_limit - (time.perf_counter() - t0)
        if left <= 0:
            status = "time_limit"
            break
        rounds += 1
        sol = solve(work, left, col_scale=col_scale, feas_tol=feas_tol)
        if sol.values is None:
            status = sol.status
            break
        chk = exact_check(work, sol.values)
        if chk.ok:
            return ExactSolution(
                "optimal" if sol.status == "optimal" else sol.status, chk.values, chk.objective,
                time.perf_counter() - t0, rounds, rejected, sol.status == "optimal", work,
            )  # fmt: skip
        rejected.append((float(sol.objective or 0.0), chk.violations))
        if not binaries:
            status = "error"
            break
        ones = [b for b in binaries if chk.values[b] == 1]
        cut = {b: (1.0 if chk.values[b] == 1 else -1.0) for b in binaries}
        work.add_row(f"nogood_{rounds}", cut, "<=", float(len(ones) - 1))
    return ExactSolution(status, None, None, time.perf_counter() - t0, rounds, rejected, False, work)
