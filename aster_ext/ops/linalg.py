"""Rigorous float64 linear algebra for the op transfer functions (DESIGN §4, "soundness of the
analysis itself").

Every bound here holds for the *exact real* result although numpy rounds: a dot product of n
terms satisfies |fl(x·y) - x·y| <= γ_n·|x|ᵀ|y| + n·η (γ_n = nμ/(1-nμ), μ = 2^-53, η = 2^-1074),
whatever the summation order (sparse or BLAS kernels). Nonnegative sums |M|·v are themselves
rounded up by the factor (1 + 2γ_{n+4}) plus (n+1)η (:func:`abs_matvec_up`).

A linear map y = Σ_i A_i x_i + b of an op is stored as sparse parts (:class:`MapPart`): the float64
entries, the exact Fractions where an entry is not a double (then a radius |exact - float| <= rad),
and the same for the bias (:class:`LinearMap`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from ..rigorous import ETA, MU, Interval, down, gamma, up


def abs_matvec_up(m, v: np.ndarray, n_terms: int | None = None) -> np.ndarray:
    """Upper bound of M @ v for M >= 0 and v >= 0 (dense or sparse M), under rounding.

    ``n_terms`` bounds the number of products in one row sum (default: M's column count)."""
    n = int(n_terms if n_terms is not None else m.shape[-1])
    prod = np.asarray(m @ v, dtype=np.float64)
    return up(up(prod * (1.0 + 2.0 * gamma(n + 4))) + (n + 1) * ETA)


def finish_slack(slack: np.ndarray) -> np.ndarray:
    """Inflate a sum of a few rounded-up nonnegative terms by its own rounding (as the dense code does)."""
    return up(slack * (1.0 + 4 * MU) + 1e-300)


def shift_const(const: np.ndarray, value: np.ndarray, slack: np.ndarray, upper: bool) -> np.ndarray:
    """const + value ± slack, rounded outward (up for an upper bound, down for a lower one)."""
    if upper:
        return up(up(const + value) + slack)
    return down(down(const + value) - slack)


def rows_of(lam: np.ndarray) -> int:
    return int(lam.shape[0])


@dataclass
class MapPart:
    """Sparse matrix A (n_out x n_in) given by coordinate lists; no (row, col) pair repeats.

    ``exact`` (object array of Fraction, one per entry) is set when some entry's real value is
    not the double in ``values``; ``rad`` then bounds |exact - values| entrywise."""

    n_out: int
    n_in: int
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    exact: np.ndarray | None = None
    rad: np.ndarray | None = None

    @staticmethod
    def selection(n_out: int, n_in: int, rows: np.ndarray, cols: np.ndarray) -> MapPart:
        """A with A[rows[k], cols[k]] = 1 (copies/permutations: exact)."""
        return MapPart(
            n_out, n_in, np.asarray(rows, np.int64), np.asarray(cols, np.int64), np.ones(len(rows))
        )

    @cached_property
    def csr(self) -> sp.csr_matrix:
        return sp.csr_matrix((self.values, (self.rows, self.cols)), shape=(self.n_out, self.n_in))

    @cached_property
    def csr_t(self) -> sp.csr_matrix:
        """Aᵀ in CSR form: Λ A is computed as (Aᵀ Λᵀ)ᵀ."""
        return self.csr.T.tocsr()

    @cached_property
    def abs_csr(self) -> sp.csr_matrix:
        return abs(self.csr)

    @cached_property
    def rad_csr(self) -> sp.csr_matrix | None:
        if self.rad is None or not np.any(self.rad):
            return None
        return sp.csr_matrix((self.rad, (self.rows, self.cols)), shape=(self.n_out, self.n_in))

    @cached_property
    def max_row_nnz(self) -> int:
        return int(np.diff(self.csr.indptr).max(initial=0))

    @cached_property
    def max_col_nnz(self) -> int:
        return int(np.diff(self.csr_t.indptr).max(initial=0))

    def exact_dense(self) -> np.ndarray:
        """The real matrix as a dense object array of Fractions (small cases only)."""
        out = np.empty((self.n_out, self.n_in), dtype=object)
        out[...] = Fraction(0)
        vals = self.exact if self.exact is not None else [Fraction(float(v)) for v in self.values]
        for r, c, v in zip(self.rows.tolist(), self.cols.tolist(), vals, strict=True):
            out[r, c] = Fraction(v)
        return out


@dataclass
class LinearMap:
    """y = Σ_i A_i x_i + b (flattened C-order tensors); real b within ``bias_rad`` of ``bias``."""

    parts: tuple[MapPart, ...]
    bias: np.ndarray
    bias_exact: np.ndarray | None = None
    bias_rad: np.ndarray | None = None
    n_out: int = field(init=False)

    def __post_init__(self) -> None:
        self.n_out = int(self.bias.shape[0])

    def exact_bias(self) -> np.ndarray:
        if self.bias_exact is not None:
            return np.asarray(self.bias_exact, dtype=object)
        out = np.empty(self.n_out, dtype=object)
        out[:] = [Fraction(float(v)) for v in self.bias]
        return out


def float_enclosure(exact: np.ndarray | None, values: np.ndarray) -> np.ndarray | None:
    """Radius with |exact - values| <= rad (None when there is no exact copy)."""
    if exact is None:
        return None
    flat = np.asarray(exact, dtype=object).reshape(-1)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    rad = np.zeros(v.shape)
    for i, q in enumerate(flat):
        if Fraction(float(v[i])) != q:
            rad[i] = float(up(abs(float(v[i])) * MU * 2.0 + 4.9e-324))
    return rad.reshape(np.shape(values))


def linear_interval(lmap: LinearMap, xs: list[Interval]) -> Interval:
    """Enclosure of { Σ_i A_i x_i + b : x_i in its box, A_i, b any real values within the radii }.

    Per part: centre fl(A m), radius (|A| r + γ_n |A||m| + R(|m| + r)) (1 + 2γ_{n+4}) + (n+1)η,
    n = most nonzeros in a row; parts and the bias are added with outward rounding."""
    lo = np.zeros(lmap.n_out)
    hi = np.zeros(lmap.n_out)
    first = True
    for part, x in zip(lmap.parts, xs, strict=True):
        m, r = x.mid_rad()
        m, r = m.reshape(-1), r.reshape(-1)
        n = max(part.max_row_nnz, 1)
        mid = part.csr @ m
        s = part.abs_csr @ r + gamma(n) * (part.abs_csr @ np.abs(m))
        if part.rad_csr is not None:
            s = s + part.rad_csr @ up(np.abs(m) + r)
        rad = up(up(s * (1.0 + 2.0 * gamma(n + 4))) + (n + 1) * ETA)
        p_lo, p_hi = down(mid - rad), up(mid + rad)
        if first:
            lo, hi, first = p_lo, p_hi, False
        else:
            lo, hi = down(lo + p_lo), up(hi + p_hi)
    b_lo, b_hi = lmap.bias, lmap.bias
    if lmap.bias_rad is not None:
        b_lo, b_hi = down(lmap.bias - lmap.bias_rad), up(lmap.bias + lmap.bias_rad)
    return Interval(down(lo + b_lo), up(hi + b_hi))


def linear_backward(
    lmap: LinearMap, lam: np.ndarray, mags: list[np.ndarray], upper: bool
) -> tuple[list[np.ndarray], np.ndarray]:
    """Substitute y = Σ A_i x_i + b into Λ y: returns fl(Λ A_i) per input and the constant.

    Rounding of Λ A_i (k = most nonzeros in a column of A_i) and the exact-parameter radii
    become a slack  γ_k |Λ| |A_i| mag(x_i) + |Λ| R_i mag(x_i) + γ_m |Λ| |b| + |Λ| b_rad,
    added to (upper) or subtracted from (lower) the constant fl(Λ b)."""
    al = np.abs(lam)
    slack = np.zeros(rows_of(lam))
    outs = []
    for part, mag in zip(lmap.parts, mags, strict=True):
        outs.append(np.ascontiguousarray((part.csr_t @ lam.T).T))
        k = max(part.max_col_nnz, 1)
        slack = slack + gamma(k) * abs_matvec_up(al, abs_matvec_up(part.abs_csr, mag, part.max_row_nnz))
        if part.rad_csr is not None:
            slack = slack + abs_matvec_up(al, abs_matvec_up(part.rad_csr, mag, part.max_row_nnz))
    cb = lam @ lmap.bias
    slack = slack + gamma(lmap.n_out) * abs_matvec_up(al, np.abs(lmap.bias))
    if lmap.bias_rad is not None:
        slack = slack + abs_matvec_up(al, lmap.bias_rad)
    return outs, shift_const(np.zeros(rows_of(lam)), cb, finish_slack(slack), upper)


def box_bound(lam: np.ndarray, const: np.ndarray, x: Interval, upper: bool) -> np.ndarray:
    """max (upper) or min (lower) of Λ x + c over the box x, rounded outward."""
    m, r = x.mid_rad()
    m, r = m.reshape(-1), r.reshape(-1)
    n = max(m.size, 1)
    al = np.abs(lam)
    val = lam @ m
    spread = finish_slack(abs_matvec_up(al, r) + gamma(n) * abs_matvec_up(al, np.abs(m)))
    if upper:
        return up(up(val + spread) + const)
    return down(down(val - spread) + const)
