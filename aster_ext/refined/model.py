"""The refined precision-assignment ILP (DESIGN §4-§5), built with vectorised numpy/scipy.

Program shape chosen here (documented contract with :mod:`.solve`): neuron j of layer l has one
fractional-bit count F_j for its products, partial sums (both at F_j + g_l guard bits,
g_l = ceil(log2 n_in)), dot result, bias constant, bias sum and activation, and one count Fw_j
for its weight row (weights rounded to nearest from the exact real weights). The input format
is fixed (initLen). With u_j = 2^-F_j, all roundings of neuron j lie in (-κ_l u_j, 0],
κ_l = 1 + (n_in - 1)·2^-g_l (n_in product truncations at F_j + g_l plus the dot truncation);
the bias and weight quantisation errors Δb_j(F_j), ΔW_j(Fw_j) are taken exactly per candidate.

Variables: one-hot binaries b[g,f] (F groups) and w[g,f] (Fw groups), f in [minLen, maxLen]; per
neuron continuous ctr_j, rad_j (centre/radius of its z column, in units U = 2^-maxLen) and m_j
(a bound on max|e_z,j|, 0 <= m_j <= E_j/U; the ReLU remainder radius of an unstable neuron is
½ m_j). With the ReLU decisions fixed by the caps E_j, every error form is linear:

    cap rows   ± Σ_c Cz_jc ctr_c + Σ_c |Cz_jc| rad_c + ½ Σ_{unstable k} |Cz_j,a_k| m_k - m_j <= ∓/- const
    out rows   ± Σ_c Co_c ctr_c + Σ_c |Co_c| rad_c + ½ Σ |Co_a_k| m_k <= ε_target/U - const

(const = the input-quantisation columns). Objective ``hw``: Σ multipliers (W_w + W_x) + Σ adders
operand widths, linear in F, Fw for integer bits taken from ranges ⊕ caps (constants dropped).

Bias-offset folding (DESIGN §4, default on): the roundings of neuron j have mean -½κ_l u_j, so the
emitted bias constant is round_{F_j}(b_j + ½κ_l u_j) instead of round_{F_j}(b_j). Then
Δb_j = round_{F_j}(b_j + ½κ_l u_j) - b_j is still known exactly per candidate and the centre of the
z column, -½κ_l u_j + Δb_j, lies in [-½u_j, ½u_j] instead of around -½κ_l u_j: a systematic
one-sided offset no longer accumulates through the layers, at no hardware cost (same bias type).
The certifier needs no change: it evaluates Δb = b~ - b of whatever constant the program holds.

Other activations (sigmoid, tanh, ..., DESIGN §4): with the caps fixed, neuron j's slope set
[s_lo, s_hi] over real range ⊕ [-E_j, E_j] gives the centre slope s_c (the form map, like the 0/½/1
of ReLU) and the remainder coefficient s_rad (like ReLU's ½: remainder radius s_rad·m_j). The
implementation error of layer l (table / quantised piecewise) is an ILP choice: one-hot binaries
d[l,k] pick the budget δ_l = 2^-k, k in [k_lo,l, maxLen] with 2^-k_lo,l the largest δ the output
rows alone admit (target / max_o Σ_{j in l} |C_o,a_j|). δ_l is the radius of the layer's a columns
(centre 0), so it enters every later cap row and every output row linearly — directly
(Σ_{j in l} |C_row,a_j|·δ_l) and through the m_k of later neurons, whose slope remainders s_rad·m_k
amplify it exactly as they amplify the rounding errors. (The earlier rule fixed δ_l before solving
from the centre-slope sensitivity Σ|C_o,a_j| alone; through three or more layers the remainder
chain made the δ terms alone exceed the caps at every F, so no F < maxLen satisfied the rows.)
Cost of candidate k: 2·n_l·k (per neuron an interpolating table adds a multiplier and an adder
on entries of ~k + 2 fraction bits, :mod:`aster_ext.cost`) plus ROM_WEIGHT x the estimated table
ROM bits (:func:`table_rom_estimate`: entries ~ trimmed width / h with h the power-of-two cell
width whose interpolation error h²/8·max|σ''| is <= δ/4, times k + 4 bits per entry), so that a
smaller δ — which shrinks F elsewhere — is paid for by the table it needs. :mod:`.solve` then builds each
layer's implementation with error <= δ_l (table size by the smallest index_bits meeting δ_l,
output frac by the rounding share); the certificate uses the implementation's actual rigorous
error, so a broken promise is caught.

Ablation switches (defaults = the full refined analysis): ``exact_dw=False`` replaces the exact
ΔW(Fw) of every candidate by the worst case |ΔW_jk| <= 2^-(Fw+1) (centre 0, radius
2^-(Fw+1)·Σ_k mag(x~_k)); ``relu_stability=False`` treats every ReLU neuron as unstable.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np
import scipy.sparse as sp

from ..aster.settings import AsterSetting
from ..ir import DenseLayer
from ..ranges import ExactParams, LayerRanges
from ..rigorous import Interval
from .error_forms import ACTIVE, INACTIVE, UNSTABLE, FormLayout, slope_of

# Settings A-D (fractional-bit range, input bits, noInitError): the one table of
# :mod:`aster_ext.aster.settings`, under the name this module's signatures use.
Setting = AsterSetting


def guard_bits(n_in: int) -> int:
    return int(math.ceil(math.log2(n_in))) if n_in > 1 else 0


def kappa(n_in: int) -> float:
    """Rounding multiplier: all roundings of one neuron lie in (-κ·2^-F, 0]."""
    return 1.0 + (n_in - 1) * 2.0 ** -guard_bits(n_in)


def cap_decisions(
    ranges: list[LayerRanges], layers: list[DenseLayer], caps: list[np.ndarray], relu_stability: bool = True
) -> list[np.ndarray]:
    """ReLU decisions from the real range ⊕ [-E_j, E_j] (all UNSTABLE without ``relu_stability``)."""
    out = []
    for lr, layer, e in zip(ranges, layers, caps, strict=True):
        if layer.activation == "relu" and not relu_stability:
            dec = np.full(layer.n_out, UNSTABLE)
        elif layer.activation == "relu":
            dec = np.where(lr.pre.hi + e <= 0, INACTIVE, np.where(lr.pre.lo - e >= 0, ACTIVE, UNSTABLE))
        else:
            dec = np.full(layer.n_out, ACTIVE)
        out.append(dec)
    return out


@dataclass
class SlopeInfo:
    """Per layer: ReLU decisions, centre slopes of the form map, remainder coefficients, and the
    largest slope magnitude (for the range of the next layer's inputs)."""

    decisions: list[np.ndarray]
    centre: list[np.ndarray]
    rem: list[np.ndarray]
    smax: list[np.ndarray]


def cap_slopes(
    ranges: list[LayerRanges], layers: list[DenseLayer], caps: list[np.ndarray], relu_stability: bool = True
) -> SlopeInfo:
    """Decisions (ReLU) and slope centres/remainders (other activations) from range ⊕ [-E_j, E_j]."""
    dec = cap_decisions(ranges, layers, caps, relu_stability)
    centre, rem, smax = [], [], []
    for lr, layer, e, d in zip(ranges, layers, caps, dec, strict=True):
        if layer.activation in ("relu", "identity"):
            centre.append(slope_of(d))
            rem.append(np.where(d == UNSTABLE, 0.5, 0.0))
            smax.append(np.where(d == INACTIVE, 0.0, 1.0))
            continue
        s_lo, s_hi = layer.act.slope(lr.pre.lo - e, lr.pre.hi + e)
        c = 0.5 * s_lo + 0.5 * s_hi
        centre.append(c)
        rem.append(np.maximum(s_hi - c, c - s_lo))
        smax.append(np.maximum(np.abs(s_lo), np.abs(s_hi)))
    return SlopeInfo(dec, centre, rem, smax)


# hw units per estimated table ROM bit in the objective (module docstring). 1: measured by
# scripts/rom_weight_sweep.py (results/rom_weight.md) against 1/4 and 4 on random depth-2/3 nets:
# 1/4 -> 1 cuts the table ROM by about a third at equal hw; 4 costs more hw than it saves in ROM.
ROM_WEIGHT = 1.0


def table_rom_estimate(act, lo: float, hi: float, ks: np.ndarray) -> np.ndarray:
    """Estimated ROM bits of the interpolating table of ``act`` over [lo, hi] meeting δ = 2^-k,
    per candidate k (module docstring; a float heuristic for the objective only — the tables are
    built and their errors bounded rigorously in :mod:`.solve`)."""
    z = np.linspace(lo, hi, 4097)
    y = act.eval_float(z)
    dz = z[1] - z[0] if hi > lo else 1.0
    d2 = np.abs(np.diff(y, 2)) / dz**2
    out = np.empty(ks.size)
    for i, k in enumerate(ks):
        tol = 2.0 ** -float(k) / 8
        live = np.nonzero((np.abs(y - y[0]) > tol) & (np.abs(y - y[-1]) > tol))[0]
        if live.size < 3:
            out[i] = 2.0 * (k + 4)
            continue
        a, b = int(live[0]), int(live[-1])
        c2 = max(float(d2[max(a - 1, 0) : b].max()), 1e-12)
        h = 2.0 ** math.floor(math.log2(math.sqrt(8.0 * 2.0 ** -float(k) / 4 / c2)))
        out[i] = (math.ceil((z[b] - z[a]) / h) + 2) * (k + 4)
    return out


def act_candidates(
    layers: list[DenseLayer], co: np.ndarray, layout: FormLayout, target: float, setting: Setting
) -> list[np.ndarray]:
    """Candidate exponents k (δ_l = 2^-k) of every activation layer (empty for relu/identity):
    k_lo = the smallest k with 2^-k <= target / max_o Σ_{j in l} |C_o,a_j| (module docstring), up
    to maxLen (at least the single candidate maxLen)."""
    out: list[np.ndarray] = []
    for li, layer in enumerate(layers):
        if layer.activation in ("relu", "identity"):
            out.append(np.zeros(0, dtype=np.int64))
            continue
        s = float(np.abs(co[:, layout.a_cols(li)]).sum(axis=1).max())
        k_lo = math.ceil(math.log2(max(s, 1e-30) / target)) if target > 0 else setting.max_len
        k_lo = min(max(k_lo, 1), setting.max_len)
        out.append(np.arange(k_lo, setting.max_len + 1, dtype=np.int64))
    return out


def structure_forms(
    layers: list[DenseLayer], decisions: list[np.ndarray], slopes: list[np.ndarray] | None = None
) -> tuple[FormLayout, list[np.ndarray], list[np.ndarray]]:
    """Float coefficient matrices C_z, C_a of every layer (ILP side; certify re-does it rigorously).

    ``slopes`` (per layer centre slopes, :class:`SlopeInfo`) default to the ReLU slopes of ``decisions``."""
    layout = FormLayout.of(layers[0].n_in, [layer.n_out for layer in layers])
    ca = np.zeros((layout.n_in, layout.ncols))
    ca[:, : layout.n_in] = np.eye(layout.n_in)
    czs, cas = [], []
    for li, (layer, dec) in enumerate(zip(layers, decisions, strict=True)):
        cz = layer.weight @ ca
        cz[:, layout.z_cols(li)] += np.eye(layer.n_out)
        ca = (slope_of(dec) if slopes is None else slopes[li])[:, None] * cz
        ca[:, layout.a_cols(li)] += np.eye(layer.n_out)
        czs.append(cz)
        cas.append(ca)
    return layout, czs, cas


def quantization_deltas(
    values: np.ndarray, fracs: np.ndarray, offset: np.ndarray | None = None
) -> np.ndarray:
    """round_nearest((v + o_f)·2^f)·2^-f - v for every candidate f: shape values.shape + (len(fracs),).

    ``offset`` (one value o_f per candidate, default 0) is the folded rounding mean (module docstring).
    """
    v = np.asarray(values, dtype=np.float64)[..., None]
    scale = np.exp2(fracs.astype(np.float64))
    off = 0.0 if offset is None else np.asarray(offset, dtype=np.float64)
    return np.floor((v + off) * scale + 0.5) / scale - v


def bias_offset(n_in: int, frac: np.ndarray | int) -> np.ndarray:
    """The folded mean rounding offset ½κ(n_in)·2^-F (an exact dyadic; module docstring)."""
    return 0.5 * kappa(n_in) * np.exp2(-np.asarray(frac, dtype=np.float64))


@dataclass
class RefinedModel:
    """The ILP in matrix form plus what is needed to decode and re-check a solution."""

    setting: Setting
    layout: FormLayout
    decisions: list[np.ndarray]
    caps: list[np.ndarray]
    target: float
    fracs: np.ndarray  # candidate F values
    n_neurons: int
    group_f: np.ndarray  # neuron -> F group
    group_w: np.ndarray  # neuron -> Fw group
    n_gf: int
    n_gw: int
    # per neuron candidate values (float, in units U)
    ctr_f: np.ndarray  # [N, nF]
    rad_f: np.ndarray
    ctr_w: np.ndarray
    rad_w: np.ndarray
    unit: float
    # constraint matrix, columns: b (n_gf*nF), w (n_gw*nF), ctr (N), rad (N), m (N)
    a: sp.csr_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    col_lo: np.ndarray
    col_hi: np.ndarray
    cost: np.ndarray
    integer: np.ndarray
    row_names: list[str]
    col_names: list[str]
    # cap / output row data for the exact re-check (layer-wise, in units U)
    cap_rows: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (Cz rows, consts)
    out_rows: tuple[np.ndarray, np.ndarray] | None = None
    cz: list[np.ndarray] = field(default_factory=list)
    co: np.ndarray | None = None
    const_ctr: np.ndarray | None = None
    const_rad: np.ndarray | None = None
    rem: np.ndarray | None = None  # per neuron remainder coefficient of m_j (½ unstable ReLU, s_rad)
    act_k: list[np.ndarray] = field(default_factory=list)  # per layer candidate k of δ_l = 2^-k
    d_off: int = 0  # first d column (activation budget binaries, layer by layer, after the m block)

    def act_delta(self, choice: list[int] | None) -> list[float]:
        """δ_l per layer for candidate indices ``choice`` (one per activation layer, in layer
        order; None = the smallest candidate δ = 2^-maxLen); 0 for relu/identity layers."""
        out, t = [], 0
        for ks in self.act_k:
            if ks.size == 0:
                out.append(0.0)
                continue
            out.append(2.0 ** -int(ks[-1] if choice is None else ks[choice[t]]))
            t += 1
        return out

    def uniform_choice(self, frac: int) -> list[int]:
        """Candidate index per activation layer for δ_l = 2^-frac clipped to the candidates."""
        return [int(np.clip(np.searchsorted(ks, frac), 0, ks.size - 1)) for ks in self.act_k if ks.size]

    @property
    def n_cols(self) -> int:
        return self.a.shape[1]


def build_model(
    layers: list[DenseLayer],
    params: list[ExactParams],
    ranges: list[LayerRanges],
    lower: np.ndarray,
    upper: np.ndarray,
    setting: Setting,
    target: float,
    caps: list[np.ndarray],
    granularity: str = "neuron",
    fold_bias: bool = True,
    exact_dw: bool = True,
    relu_stability: bool = True,
    act_k: list[np.ndarray] | None = None,
) -> RefinedModel:
    """Assemble the refined ILP (module docstring).

    ``act_k`` (per layer, the candidate exponents k of δ_l = 2^-k) replaces the candidates
    :func:`act_candidates` derives from this box's output sensitivities; the multi-box model
    (:mod:`.multibox`) passes the whole box's so that every sub-box model has the same d columns.
    None (default): the box's own candidates (the single-box model is unchanged)."""
    fracs = np.arange(setting.min_len, setting.max_len + 1)
    nf = fracs.size
    unit = 2.0**-setting.max_len
    slopes = cap_slopes(ranges, layers, caps, relu_stability)
    decisions = slopes.decisions
    layout, czs, cas = structure_forms(layers, decisions, slopes.centre)
    if act_k is None:
        act_k = act_candidates(layers, cas[-1], layout, target, setting)
    elif len(act_k) != len(layers) or any(
        (k.size == 0) != (ly.activation in ("relu", "identity")) for ly, k in zip(layers, act_k, strict=True)
    ):
        raise ValueError("act_k: one candidate array per layer, empty exactly for relu/identity layers")
    act_delta = [2.0 ** -float(ks[0]) if ks.size else 0.0 for ks in act_k]  # largest candidate δ
    sizes = layout.sizes
    n = int(sum(sizes))
    offs = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    # neuron index of each z column / a column
    if granularity == "neuron":
        group_f = np.arange(n)
    elif granularity == "layer":
        group_f = np.concatenate([np.full(s, li) for li, s in enumerate(sizes)])
    else:
        raise ValueError(f"granularity must be 'layer' or 'neuron', got {granularity!r}")
    group_w = group_f.copy()
    n_gf = int(group_f.max()) + 1
    n_gw = n_gf
    # candidate source values per neuron
    ctr_f = np.zeros((n, nf))
    rad_f = np.zeros((n, nf))
    ctr_w = np.zeros((n, nf))
    rad_w = np.zeros((n, nf))
    in_err = 0.0 if setting.no_init_error else 2.0**-setting.init_len
    x_real = Interval(np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64))
    x_err_lo = np.full(layout.n_in, -in_err)
    x_err_hi = np.zeros(layout.n_in)
    u = np.exp2(-fracs.astype(np.float64))
    for li, (layer, p, lr) in enumerate(zip(layers, params, ranges, strict=True)):
        sl = slice(offs[li], offs[li + 1])
        k = kappa(layer.n_in)
        db = quantization_deltas(p.bias, fracs, bias_offset(layer.n_in, fracs) if fold_bias else None)
        ctr_f[sl] = (-0.5 * k * u)[None, :] + db
        rad_f[sl] = np.broadcast_to(0.5 * k * u, (layer.n_out, nf))
        if p.bias_rad is not None:
            rad_f[sl] += p.bias_rad[:, None]
        xm = 0.5 * (x_real.lo + x_err_lo) + 0.5 * (x_real.hi + x_err_hi)
        xr = 0.5 * ((x_real.hi + x_err_hi) - (x_real.lo + x_err_lo))
        if exact_dw:
            dw = quantization_deltas(p.weight, fracs)  # [n_out, n_in, nf]
            ctr_w[sl] = np.einsum("jkf,k->jf", dw, xm)
            rad_w[sl] = np.einsum("jkf,k->jf", np.abs(dw), xr)
        else:  # worst case |ΔW| <= 2^-(Fw+1) for every weight
            rad_w[sl] = np.sum(np.abs(xm) + xr) * 0.5 * u[None, :]
        if p.weight_rad is not None:
            rad_w[sl] += (p.weight_rad @ np.maximum(np.abs(xm) + xr, 0.0))[:, None]
        cap = caps[li]
        if layer.activation not in ("relu", "identity"):
            x_real = lr.post
            x_err_hi = slopes.smax[li] * cap + act_delta[li]
            x_err_lo = -x_err_hi
        elif layer.activation == "relu":
            x_real = lr.post
            x_err_lo = -np.where((lr.pre.hi + cap <= 0) & relu_stability, 0.0, cap)
            x_err_hi = np.where((lr.pre.hi + cap <= 0) & relu_stability, 0.0, cap)
        else:
            x_real = lr.post
            x_err_lo, x_err_hi = -cap, cap
    const_ctr = np.zeros(layout.ncols)
    const_rad = np.zeros(layout.ncols)
    const_ctr[: layout.n_in] = -0.5 * in_err / unit
    const_rad[: layout.n_in] = 0.5 * in_err / unit
    act_layers = [li for li, ks in enumerate(act_k) if ks.size]
    d_vals = [np.exp2(-act_k[li].astype(np.float64)) / unit for li in act_layers]  # δ candidates in U
    nd = int(sum(v.size for v in d_vals))

    # ---- columns ----
    nb, nw = n_gf * nf, n_gw * nf
    c_ctr, c_rad, c_m = nb + nw, nb + nw + n, nb + nw + 2 * n  # column blocks: b, w, ctr, rad, m
    d_off = nb + nw + 3 * n  # column blocks: ..., m, then d (activation budget binaries)
    ncol = d_off + nd
    col_lo = np.zeros(ncol)
    col_hi = np.ones(ncol)
    col_lo[c_ctr : c_ctr + n] = -np.inf
    col_hi[c_ctr : c_rad + n] = np.inf
    cap_all = np.concatenate(caps)
    col_hi[c_m : c_m + n] = cap_all / unit
    integer = np.zeros(ncol, dtype=bool)
    integer[: nb + nw] = True
    integer[d_off:] = True

    # z column j -> ctr var, rad var; a column j -> m var (coefficient ½ if unstable, else 0)
    half_unstable = np.concatenate(slopes.rem)  # remainder coefficient of m_j (½ for unstable ReLU)
    z_idx = np.concatenate([np.arange(layout.z_off[li], layout.z_off[li] + s) for li, s in enumerate(sizes)])
    a_idx = np.concatenate([np.arange(layout.a_off[li], layout.a_off[li] + s) for li, s in enumerate(sizes)])

    rows: list[sp.csr_matrix] = []
    lo_l: list[np.ndarray] = []
    hi_l: list[np.ndarray] = []
    names: list[str] = []

    def form_rows(c: np.ndarray, sign: float, m_diag: np.ndarray | None) -> tuple[sp.csr_matrix, np.ndarray]:
        """Rows sign·Σ C ctr + Σ|C| rad + ½Σ|C_a| m (- m_j); returns matrix and the constant part."""
        cz_ = c[:, z_idx]
        ca_ = np.abs(c[:, a_idx]) * half_unstable[None, :]
        r = c.shape[0]
        blocks = [
            sp.csr_matrix((r, nb + nw)),
            sp.csr_matrix(sign * cz_),
            sp.csr_matrix(np.abs(cz_)),
        ]
        mm = ca_.copy()
        if m_diag is not None:
            mm[np.arange(r), m_diag] -= 1.0
        blocks.append(sp.csr_matrix(mm))
        if nd:  # δ_l as the radius of layer l's a columns: Σ_{j in l} |C_a_j| · δ_l
            blocks.append(
                sp.csr_matrix(
                    np.hstack([np.abs(c[:, layout.a_cols(li)]).sum(axis=1)[:, None] * v[None, :]
                               for li, v in zip(act_layers, d_vals, strict=True)])
                )
            )  # fmt: skip
        const = sign * (c @ const_ctr) + np.abs(c) @ const_rad
        return sp.hstack(blocks, format="csr"), const

    # one-hot rows
    oh_b = sp.csr_matrix((np.ones(nb), (np.repeat(np.arange(n_gf), nf), np.arange(nb))), shape=(n_gf, ncol))
    oh_w = sp.csr_matrix(
        (np.ones(nw), (np.repeat(np.arange(n_gw), nf), nb + np.arange(nw))), shape=(n_gw, ncol)
    )
    rows += [oh_b, oh_w]
    lo_l += [np.ones(n_gf), np.ones(n_gw)]
    hi_l += [np.ones(n_gf), np.ones(n_gw)]
    names += [f"onehotF_{g}" for g in range(n_gf)] + [f"onehotW_{g}" for g in range(n_gw)]
    pos = d_off
    for li, v in zip(act_layers, d_vals, strict=True):
        rows.append(sp.csr_matrix((np.ones(v.size), (np.zeros(v.size, dtype=int), pos + np.arange(v.size))),
                                  shape=(1, ncol)))  # fmt: skip
        lo_l.append(np.ones(1))
        hi_l.append(np.ones(1))
        names.append(f"onehotD_{li}")
        pos += v.size
    # definition rows: ctr_j - Σ ctr_f b - Σ ctr_w w = 0 ; rad_j likewise
    jj = np.repeat(np.arange(n), nf)
    bcols = (group_f[:, None] * nf + np.arange(nf)[None, :]).reshape(-1)
    wcols = nb + (group_w[:, None] * nf + np.arange(nf)[None, :]).reshape(-1)
    for what, vf, vw, c0 in (("ctr", ctr_f, ctr_w, c_ctr), ("rad", rad_f, rad_w, c_rad)):
        data = np.concatenate([np.ones(n), -(vf / unit).reshape(-1), -(vw / unit).reshape(-1)])
        ri = np.concatenate([np.arange(n), jj, jj])
        ci = np.concatenate([c0 + np.arange(n), bcols, wcols])
        rows.append(sp.csr_matrix((data, (ri, ci)), shape=(n, ncol)))
        lo_l.append(np.zeros(n))
        hi_l.append(np.zeros(n))
        names += [f"def{what}_{j}" for j in range(n)]
    # cap rows per layer
    cap_rows = []
    for li, cz in enumerate(czs):
        sl = np.arange(offs[li], offs[li + 1])
        for sign, tag in ((1.0, "up"), (-1.0, "dn")):
            mat, const = form_rows(cz, sign, sl)
            rows.append(mat)
            lo_l.append(np.full(cz.shape[0], -np.inf))
            hi_l.append(-const)
            names += [f"cap{tag}_{li}_{j}" for j in range(cz.shape[0])]
        cap_rows.append((cz, sl))
    co = cas[-1]
    eps_u = target / unit
    for sign, tag in ((1.0, "up"), (-1.0, "dn")):
        mat, const = form_rows(co, sign, None)
        rows.append(mat)
        lo_l.append(np.full(co.shape[0], -np.inf))
        hi_l.append(eps_u - const)
        names += [f"err{tag}_{o}" for o in range(co.shape[0])]
    a = sp.vstack(rows, format="csr")
    # drop numerically zero entries
    a.data[np.abs(a.data) < 1e-300] = 0.0
    a.eliminate_zeros()

    cost = np.zeros(ncol)
    cf, cw_ = _objective_coefficients(layers)
    cf_g = np.bincount(group_f, weights=cf, minlength=n_gf)
    cw_g = np.bincount(group_w, weights=cw_, minlength=n_gw)
    cost[:nb] = (cf_g[:, None] * fracs[None, :]).reshape(-1)
    cost[nb : nb + nw] = (cw_g[:, None] * fracs[None, :]).reshape(-1)
    if nd:
        rom = []
        for li in act_layers:
            pre = ranges[li].pre
            z_lo, z_hi = float(np.min(pre.lo - caps[li])), float(np.max(pre.hi + caps[li]))
            rom.append(table_rom_estimate(layers[li].act, z_lo, z_hi, act_k[li]))
        cost[d_off:] = np.concatenate(
            [2.0 * sizes[li] * act_k[li] + ROM_WEIGHT * r for li, r in zip(act_layers, rom, strict=True)]
        )
    col_names = (
        [f"F_{g}_{f}" for g in range(n_gf) for f in fracs]
        + [f"Fw_{g}_{f}" for g in range(n_gw) for f in fracs]
        + [f"ctr_{j}" for j in range(n)]
        + [f"rad_{j}" for j in range(n)]
        + [f"m_{j}" for j in range(n)]
        + [f"D_{li}_{k}" for li in act_layers for k in act_k[li]]
    )
    return RefinedModel(
        setting, layout, decisions, caps, target, fracs, n, group_f, group_w, n_gf, n_gw,
        ctr_f, rad_f, ctr_w, rad_w, unit, a, np.concatenate(lo_l), np.concatenate(hi_l),
        col_lo, col_hi, cost, integer, names, col_names, cap_rows, None, czs, co, const_ctr, const_rad,
        half_unstable, act_k, d_off,
    )  # fmt: skip


def _objective_coefficients(layers: list[DenseLayer]) -> tuple[np.ndarray, np.ndarray]:
    """hw cost per unit of F_j and Fw_j (module docstring; integer-bit constants dropped)."""
    cf, cw = [], []
    for li, layer in enumerate(layers):
        n_next = layers[li + 1].n_out if li + 1 < len(layers) else 0
        # (n_in - 1) partial-sum adders and one bias adder at F_j (+ g), n_next multipliers read a_j
        cf.append(np.full(layer.n_out, float(layer.n_in - 1 + 1 + n_next)))
        cw.append(np.full(layer.n_out, float(layer.n_in)))
    return np.concatenate(cf), np.concatenate(cw)


# ------------------------------------------------------------------------------------------------
# HiGHS
# ------------------------------------------------------------------------------------------------


@dataclass
class SolveOutcome:
    status: str
    f: np.ndarray | None  # per neuron F
    fw: np.ndarray | None
    objective: float | None
    time_s: float
    mip_gap: float | None = None
    act_choice: list[int] | None = None  # candidate index of δ_l per activation layer


STALL_S = 2.0  # a HiGHS run stops when its incumbent has not improved by STALL_REL for this long
STALL_REL = 1e-3


@dataclass
class StallRule:
    """Stop rule of a minimising MIP run: fire once the incumbent objective has not dropped below
    (1 - rel)·p_then for more than ``stall_s`` seconds, p_then the incumbent that started the wait
    (the first finite one, then each one at least that much better). No incumbent: never fires."""

    stall_s: float
    rel: float = 1e-3
    best: float = math.inf
    since: float = 0.0
    fired: bool = False

    def update(self, p: float, now: float) -> bool:
        """Feed the incumbent objective ``p`` (inf: none yet) seen at time ``now``; True: stop."""
        if not math.isfinite(p):
            return False
        if not math.isfinite(self.best) or p < self.best - self.rel * abs(self.best):
            self.best, self.since = p, now
        elif now - self.since > self.stall_s:
            self.fired = True
        return self.fired


def _stall_stop(h, stall_s: float) -> StallRule:
    """Interrupt the MIP of ``h`` by :class:`StallRule` (stall_s, STALL_REL), checked at HiGHS's
    MIP interrupt callbacks.

    Why: on the wide nonlinear nets the neuron-level runs spent their whole time cap (8 s, twice
    per net) to improve the warm start by < 0.1 % (issue 13: silu 2x64 ε = 1e-3, 307016 ->
    306840; 29 s -> 15 s per net). Soundness is unaffected: whatever incumbent is returned is
    re-checked exactly and certified, as a time-capped one is."""
    import highspy

    cbt = highspy._core.cb.HighsCallbackType.kCallbackMipInterrupt
    rule = StallRule(stall_s, STALL_REL)

    def callback(ctype, _msg, out, inp, _user) -> None:
        if int(ctype) == int(cbt) and rule.update(float(out.mip_primal_bound), time.perf_counter()):
            inp.user_interrupt = True

    h.setCallback(callback, None)
    h.startCallback(cbt)
    return rule


def _d_segments(model: RefinedModel) -> list[tuple[int, int]]:
    """(first column, number of candidates) of every activation layer's d binaries."""
    out, pos = [], model.d_off
    for ks in model.act_k:
        if ks.size:
            out.append((pos, int(ks.size)))
            pos += int(ks.size)
    return out


def solve_model(
    model: RefinedModel,
    time_limit: float,
    mip_rel_gap: float = 1e-3,
    start: tuple[np.ndarray, np.ndarray] | None = None,
    window: int | None = None,
    stall_s: float | None = STALL_S,
    col_hi: np.ndarray | None = None,
) -> SolveOutcome:
    """Solve with HiGHS; decode the one-hot binaries into per-neuron F and Fw.

    ``start`` (per-neuron F, Fw, optionally the δ candidate index per activation layer) is passed
    as an incumbent; with ``window`` the F/Fw candidates of each group are restricted to
    start ± window (binaries outside fixed to 0). With ``stall_s`` the run also stops (status
    ``"stalled"``) once it holds an incumbent that has not improved by a factor (1 - STALL_REL)
    for ``stall_s`` seconds (:func:`_stall_stop`). ``col_hi`` replaces the model's column upper
    bounds (the window of an earlier call, re-solved without its start).
    """

    from ..ilp import highs_lp, new_highs

    t0 = time.perf_counter()
    nf = model.fracs.size
    nb, nw = model.n_gf * nf, model.n_gw * nf
    col_hi = model.col_hi.copy() if col_hi is None else col_hi
    x0 = None
    if start is not None:
        f0 = np.zeros(model.n_gf, dtype=np.int64)
        w0 = np.zeros(model.n_gw, dtype=np.int64)
        f0[model.group_f] = np.searchsorted(model.fracs, start[0])
        w0[model.group_w] = np.searchsorted(model.fracs, start[1])
        x0 = np.zeros(model.n_cols)
        x0[np.arange(model.n_gf) * nf + f0] = 1.0
        x0[nb + np.arange(model.n_gw) * nf + w0] = 1.0
        d0 = start[2] if len(start) > 2 and start[2] is not None else None
        d0 = model.uniform_choice(int(np.max(start[0]))) if d0 is None else d0
        for (pos, _), i in zip(_d_segments(model), d0, strict=True):
            x0[pos + i] = 1.0
        if window is not None:
            k = np.arange(nf)[None, :]
            col_hi[:nb] = (np.abs(k - f0[:, None]) <= window).reshape(-1)
            col_hi[nb : nb + nw] = (np.abs(k - w0[:, None]) <= window).reshape(-1)
    lp = highs_lp(model.a, model.cost, model.col_lo, col_hi, model.row_lo, model.row_hi, model.integer)
    h = new_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(max(time_limit, 0.5)))
    h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
    h.setOptionValue("random_seed", 0)
    h.setOptionValue("small_matrix_value", 1e-12)
    h.passModel(lp)
    if x0 is not None:
        idx = np.concatenate([np.arange(nb + nw), np.arange(model.d_off, model.n_cols)]).astype(np.int32)
        h.setSolution(int(idx.size), idx, x0[idx].astype(np.float64))
    stalled = _stall_stop(h, stall_s) if stall_s is not None and stall_s > 0 else None
    h.run()
    ms = h.modelStatusToString(h.getModelStatus()).lower()
    if stalled is not None and stalled.fired and "interrupt" in ms:
        ms = "stalled"
    info = h.getInfo()
    has_sol = info.primal_solution_status == 2
    status = (
        "optimal" if "optimal" in ms
        else "infeasible" if "infeasible" in ms
        else "time_limit" if "time" in ms
        else "stalled" if ms == "stalled"
        else "error"
    )  # fmt: skip
    if not has_sol:
        return SolveOutcome(status, None, None, None, time.perf_counter() - t0)
    x = np.asarray(h.getSolution().col_value)
    reported = float(info.objective_function_value)
    objective = float(model.cost @ x)  # the returned solution's own cost (= reported, up to tolerances)
    if x0 is not None and abs(objective - reported) > 1e-6 * max(1.0, abs(reported)):
        # measured (HiGHS 1.16, LyapunovNN setting A): with a partial start HiGHS can report
        # "optimal" with an objective (476) that the solution it returns does not have (that
        # solution is the start, 588; without the start the optimum found is 534). Solve again
        # without the start: first within the same window (fast: ACC5NN A finds 115870 in 0.6 s
        # where the whole model reached only 135818 in 7.9 s, start 119980), then, with the time
        # left, on the whole model (AcrobotNN 1e-5 A: 9282 where the window holds only 15561);
        # keep the cheapest solution by its own cost.
        best = None
        tries = (col_hi, None) if window is not None else (None,)
        for bounds in tries:
            left = time_limit - (time.perf_counter() - t0)
            if best is not None and left < 0.5:
                break
            again = solve_model(model, max(left, 0.5), mip_rel_gap, None, None, stall_s, bounds)
            if again.f is not None and again.objective is not None and again.objective < objective:
                if best is None or again.objective < best.objective:
                    best = again
        if best is not None:
            return replace(best, time_s=time.perf_counter() - t0)
    bsel = x[: model.n_gf * nf].reshape(model.n_gf, nf).argmax(axis=1)
    wsel = x[model.n_gf * nf : (model.n_gf + model.n_gw) * nf].reshape(model.n_gw, nf).argmax(axis=1)
    f = model.fracs[bsel][model.group_f]
    fw = model.fracs[wsel][model.group_w]
    dsel = [int(np.argmax(x[pos : pos + k])) for pos, k in _d_segments(model)]
    return SolveOutcome(status, f, fw, objective, time.perf_counter() - t0,
                        float(info.mip_gap), dsel)  # fmt: skip


def uniform_start(
    model: RefinedModel, slack: float = 1e-9
) -> tuple[np.ndarray, np.ndarray, list[int]] | None:
    """Smallest uniform F = Fw (all neurons), with δ_l = 2^-F clipped to each activation layer's
    candidates (:meth:`RefinedModel.uniform_choice`), whose ILP point satisfies every row, or None.

    The point sets ctr/rad by their definition rows and m_j, layer by layer, to the value of the
    form of j (the max of its two cap rows with m_j = 0); it is feasible iff every m_j <= E_j/U and
    the output rows hold. Rows are evaluated in float with a relative ``slack`` (the point only
    seeds HiGHS; every solution is re-checked exactly and certified anyway).
    """
    nf = model.fracs.size
    nb, nw = model.n_gf * nf, model.n_gw * nf
    n = model.n_neurons
    a = model.a
    c_m = nb + nw + 2 * n
    names = np.array([nm.rsplit("_", 1)[0] for nm in model.row_names])
    offs = np.concatenate([[0], np.cumsum(model.layout.sizes)]).astype(int)
    cap_rows = [
        (np.nonzero(names == f"capup_{li}")[0], np.nonzero(names == f"capdn_{li}")[0])
        for li in range(len(model.layout.sizes))
    ]
    out_rows = np.nonzero(np.char.startswith(names, "err"))[0]
    a_cap = [(a[up_], a[dn_]) for up_, dn_ in cap_rows]
    a_out = a[out_rows]
    m_hi = model.col_hi[c_m : c_m + n]
    for i in range(nf):
        x = np.zeros(model.n_cols)
        x[np.arange(model.n_gf) * nf + i] = 1.0
        x[nb + np.arange(model.n_gw) * nf + i] = 1.0
        x[nb + nw : nb + nw + n] = (model.ctr_f[:, i] + model.ctr_w[:, i]) / model.unit
        x[nb + nw + n : c_m] = (model.rad_f[:, i] + model.rad_w[:, i]) / model.unit
        x[model.d_off :] = 0.0
        dsel = model.uniform_choice(int(model.fracs[i]))
        for (pos, _), di in zip(_d_segments(model), dsel, strict=True):
            x[pos + di] = 1.0
        ok = True
        for li, ((up_, dn_), (a_up, a_dn)) in enumerate(zip(cap_rows, a_cap, strict=True)):
            m = np.maximum(np.maximum(a_up @ x - model.row_hi[up_], a_dn @ x - model.row_hi[dn_]), 0.0)
            m *= 1.0 + slack
            if np.any(m > m_hi[offs[li] : offs[li + 1]]):
                ok = False
                break
            x[c_m + offs[li] : c_m + offs[li + 1]] = m
        if ok and np.all(a_out @ x <= model.row_hi[out_rows] - slack * np.abs(model.row_hi[out_rows])):
            f = np.full(n, model.fracs[i])
            return f, f.copy(), dsel
    return None


# ------------------------------------------------------------------------------------------------
# exact re-check of the rows (dyadic rationals as Python integers)
# ------------------------------------------------------------------------------------------------


def _dyadic(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Exact integers V and exponent e with values = V·2^e (float64 array)."""
    v = np.asarray(values, dtype=np.float64)
    mant, ex = np.frexp(v)
    m = (np.ldexp(mant, 53)).astype(np.int64).astype(object)
    e = ex.astype(np.int64) - 53
    emin = int(e.min()) if e.size else 0
    return m * (np.ones(v.shape, dtype=object) << (e - emin).astype(object)), emin


def exact_dot(coefs: np.ndarray, vals: list[Fraction]) -> Fraction:
    """Σ coefs_i·vals_i exactly (coefs float64, vals dyadic Fractions)."""
    if len(vals) == 0:
        return Fraction(0)
    cm, ce = _dyadic(coefs)
    den = max(v.denominator for v in vals)
    vi = np.array([v.numerator * (den // v.denominator) for v in vals], dtype=object)
    tot = int(np.sum(cm * vi))
    return Fraction(tot) * Fraction(2) ** ce / den


def exact_row_check(
    model: RefinedModel, f: np.ndarray, fw: np.ndarray, act_choice: list[int] | None = None
) -> tuple[bool, list[str]]:
    """Recompute ctr/rad of every z column from the chosen binaries (and the radius δ_l of every
    activation layer's a columns from ``act_choice``, default δ_l = 2^-maxLen) and check cap and
    error rows in exact rational arithmetic (m_j set to the exact max of its two cap rows)."""
    idx_f = np.searchsorted(model.fracs, f)
    idx_w = np.searchsorted(model.fracs, fw)
    rows = np.arange(model.n_neurons)
    ctr = [
        Fraction(float(a / model.unit)) + Fraction(float(b / model.unit))
        for a, b in zip(model.ctr_f[rows, idx_f], model.ctr_w[rows, idx_w], strict=True)
    ]
    rad = [
        Fraction(float(a / model.unit)) + Fraction(float(b / model.unit))
        for a, b in zip(model.rad_f[rows, idx_f], model.rad_w[rows, idx_w], strict=True)
    ]
    lay = model.layout
    dec = np.concatenate(model.decisions)
    rem = model.rem if model.rem is not None else np.where(dec == UNSTABLE, 0.5, 0.0)
    z_idx = np.concatenate([np.arange(lay.z_off[i], lay.z_off[i] + s) for i, s in enumerate(lay.sizes)])
    a_idx = np.concatenate([np.arange(lay.a_off[i], lay.a_off[i] + s) for i, s in enumerate(lay.sizes)])
    m: list[Fraction] = [Fraction(0)] * model.n_neurons
    bad: list[str] = []
    cc = [Fraction(float(v)) for v in model.const_ctr]
    cr = [Fraction(float(v)) for v in model.const_rad]
    for li, d in enumerate(model.act_delta(act_choice)):
        if d > 0:
            for c in range(lay.a_off[li], lay.a_off[li] + lay.sizes[li]):
                cr[c] = Fraction(d) / Fraction(model.unit)

    def row_value(c: np.ndarray, sign: int, upto: int) -> Fraction:
        used = np.nonzero(c[z_idx[:upto]])[0]
        tot = sign * exact_dot(c[z_idx[used]], [ctr[i] for i in used])
        tot += exact_dot(np.abs(c[z_idx[used]]), [rad[i] for i in used])
        un = [i for i in range(upto) if rem[i] != 0.0 and c[a_idx[i]] != 0.0]
        if un:  # |C|·rem rounded up to a float first (exact_dot is exact on the float coefficients)
            prod = np.abs(c[a_idx[un]]) * rem[un]
            coef = np.where(rem[un] == 0.5, prod, np.nextafter(prod, np.inf))
            tot += exact_dot(coef, [m[i] for i in un])
        nz = np.nonzero((c != 0.0) & ((np.array(cc) != 0) | (np.array(cr) != 0)))[0]
        if nz.size:
            tot += sign * exact_dot(c[nz], [cc[i] for i in nz]) + exact_dot(
                np.abs(c[nz]), [cr[i] for i in nz]
            )
        return tot

    pos = 0
    for li, cz in enumerate(model.cz):
        for j in range(cz.shape[0]):
            gj = pos + j
            upto = gj + 1  # z columns of this neuron and earlier
            val = max(row_value(cz[j], 1, upto), row_value(cz[j], -1, upto))
            m[gj] = val
            if val > Fraction(float(model.caps[li][j])) / Fraction(model.unit):
                bad.append(f"cap_{li}_{j}")
        pos += cz.shape[0]
    eps_u = Fraction(model.target) / Fraction(model.unit)
    for o in range(model.co.shape[0]):
        val = max(row_value(model.co[o], 1, model.n_neurons), row_value(model.co[o], -1, model.n_neurons))
        if val > eps_u:
            bad.append(f"err_{o}")
    return not bad, bad


# ------------------------------------------------------------------------------------------------
# CPLEX-LP text
# ------------------------------------------------------------------------------------------------


def lp_text(model: RefinedModel, comment: str = "") -> str:
    """CPLEX-LP text of the model (rows exactly as passed to HiGHS)."""
    names = model.col_names
    out = ["\\ refined-mode precision assignment (aster_ext)"]
    out += [f"\\ {line}" for line in comment.splitlines()]
    out.append("Minimize")
    nzc = np.nonzero(model.cost)[0]
    out.append(" obj: " + _expr(model.cost[nzc], [names[i] for i in nzc]))
    out.append("Subject To")
    a = model.a
    for r in range(a.shape[0]):
        s, e = a.indptr[r], a.indptr[r + 1]
        expr = _expr(a.data[s:e], [names[i] for i in a.indices[s:e]])
        lo, hi = model.row_lo[r], model.row_hi[r]
        if lo == hi:
            out.append(f" {model.row_names[r]}: {expr} = {lo!r}")
        else:
            out.append(f" {model.row_names[r]}: {expr} <= {hi!r}")
    out.append("Bounds")
    for i, nm in enumerate(names):
        if model.integer[i]:
            continue
        lo, hi = model.col_lo[i], model.col_hi[i]
        if np.isinf(lo) and np.isinf(hi):
            out.append(f" {nm} free")
        elif np.isinf(hi):
            out.append(f" {nm} >= {lo!r}")
        else:
            out.append(f" {lo!r} <= {nm} <= {hi!r}")
    out.append("Binaries")
    ints = [names[i] for i in np.nonzero(model.integer)[0]]
    out += [" " + " ".join(ints[i : i + 20]) for i in range(0, len(ints), 20)]
    out.append("End")
    return "\n".join(out) + "\n"


def _expr(coefs: np.ndarray, names: list[str]) -> str:
    if len(names) == 0:
        return "0 ctr_0"
    terms = [f"{'-' if c < 0 else '+'} {abs(float(c))!r} {n}" for c, n in zip(coefs, names, strict=True)]
    lines = [" ".join(terms[i : i + 8]) for i in range(0, len(terms), 8)]
    return "\n   ".join(lines)
