"""How a layer's neurons map onto loops and hardware: the single place codegen and cost read.

Neurons of a dense layer are partitioned into *groups* of identical type signature (the whole row
of weight / product / partial-sum formats plus the dot / bias / bias-sum / output formats). A
group is emitted as

- ``rolled``: every format of the row is uniform along the inputs k (per-neuron / per-row types,
  the refined mode). The group is one loop nest: neurons j (unrolled) x inputs k (a MAC loop
  unrolled by U = ceil(n_in / R), R the reuse factor; pipelined II=1 when R > 1). Instantiated
  hardware: n_g·U multipliers and n_g·min(U, n_in - 1) partial-sum adders of the group's types,
  plus one bias adder / activation per neuron;
- ``loop``: formats vary along k but are shared by the group's neurons (Aster's per-column weight
  formats and per-position partial-sum integer bits): one statement per input column k in the
  body of a neuron loop unrolled by V = ceil(n_g / R); hardware: V copies of one neuron's datapath;
- ``scalar``: a group of one neuron whose formats vary along k: straight-line code, one datapath.

Layer inputs are one array of a *container* type, the union of the previous layer's output
formats (max integer bits, max fractional bits; the network input type for layer 0). Storing a
value in its container is exact, so every product w·x has the exact value the program says and
bit-exactness is untouched. ``loop`` and ``scalar`` groups have one statement per input column k,
which narrows x[k] to its own format (exact: the value was produced in that format), so their
multipliers are as wide as that format. ``rolled`` groups read the inputs through *input groups*
(:func:`input_groups`): the inputs are partitioned by their own format (at most
``MAX_INPUT_GROUPS`` parts, merged greedily where a layer has more distinct formats), each part
copied once per layer into an array of its own union type (exact: every member's format is
included), and the MAC loop of a neuron is one loop per part. Multipliers reading part q are
W_w + W_q wide, not container-wide. This reorders the sum of a row, which is exact only under
wrap-around overflow: the partial sums of a rolled row share one format at the products' F, so
with ``overflow == "WRAP"`` the accumulation is exact modulo 2^width and does not depend on the
order of the products (the refined mode sizes that format for the final sum only). Programs that
saturate keep one part, the container, in input order. So does a reuse factor R > 1: a
time-shared multiplier reads inputs of every format, so it is container-wide anyway, and one
part per format would only multiply the multipliers (Σ_q ceil(n_q / R) instead of ceil(n_in / R)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..program import FixedProgram, LayerProgram


@dataclass(frozen=True)
class Group:
    """One neuron group of a dense layer: ``neurons`` (indices), ``kind`` rolled | loop | scalar."""

    neurons: np.ndarray
    kind: str

    @property
    def size(self) -> int:
        return int(self.neurons.size)

    @property
    def first(self) -> int:
        return int(self.neurons[0])


def neuron_groups(lp: LayerProgram) -> list[np.ndarray]:
    """Neurons of ``lp`` partitioned by identical type signature, in order of first occurrence."""
    cols = [
        lp.weight_t.width,
        lp.weight_t.int_bits,
        lp.product_t.width,
        lp.product_t.int_bits,
        lp.psum_t.width,
        lp.psum_t.int_bits,
    ]
    vecs = [lp.dot_t, lp.bias_t, lp.bsum_t, lp.out_t]
    sig = np.concatenate(
        cols + [v.width[:, None] for v in vecs] + [v.int_bits[:, None] for v in vecs], axis=1
    )
    _, first, inverse = np.unique(sig, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    return [np.flatnonzero(inverse == g) for g in np.argsort(first)]


def rows_uniform_along_inputs(lp: LayerProgram) -> np.ndarray:
    """[n_out] bool: weight, product and partial-sum formats of row j are the same for every k."""
    ok = np.ones(lp.n_out, dtype=bool)
    for fmt in (lp.weight_t, lp.product_t, lp.psum_t):
        ok &= np.all(fmt.width == fmt.width[:, :1], axis=1) & np.all(
            fmt.int_bits == fmt.int_bits[:, :1], axis=1
        )
    return ok


def dense_groups(lp: LayerProgram) -> list[Group]:
    """The groups of a dense layer with the kind of code each becomes (module docstring)."""
    uniform = rows_uniform_along_inputs(lp)
    out = []
    for g in neuron_groups(lp):
        if uniform[g[0]]:
            out.append(Group(g, "rolled"))
        else:
            out.append(Group(g, "loop" if g.size > 1 else "scalar"))
    return out


def container(program: FixedProgram, layer_index: int) -> tuple[int, int]:
    """(width, int_bits) of the array holding the inputs of layer ``layer_index`` (module docstring).

    ``layer_index == len(program.layers)`` gives the network output type ``out_t``."""
    if layer_index == 0:
        return int(program.input_t.width), int(program.input_t.int_bits)
    out = program.layers[layer_index - 1].out_t
    i = int(out.int_bits.max())
    return int(out.frac.max()) + i, i


MAX_INPUT_GROUPS = 8
"""Most input groups per layer (:func:`input_groups`): loop nests per layer = neuron groups x parts."""


@dataclass(frozen=True)
class InputGroup:
    """A part of a layer's inputs: ``inputs`` (indices, ascending) held in one array whose type
    ``(width, int_bits)`` is the union of their formats."""

    inputs: np.ndarray
    width: int
    int_bits: int

    @property
    def frac(self) -> int:
        return self.width - self.int_bits


def input_groups(
    program: FixedProgram, layer_index: int, reuse_factor: int = 1, max_groups: int = MAX_INPUT_GROUPS
) -> list[InputGroup]:
    """Partition of the inputs of layer ``layer_index`` by format (module docstring).

    Distinct formats (I, F) with multiplicities n start as one part each; while there are more
    than ``max_groups`` parts, the two whose union (max I, max F) adds the least multiplier width,
    n_a·(I_ab + F_ab - I_a - F_a) + n_b·(I_ab + F_ab - I_b - F_b), are merged. Parts come out in
    order of their first input. Saturating programs and ``reuse_factor`` > 1: one part, the
    container (module docstring)."""
    fmts = program.input_formats(layer_index)
    if program.overflow != "WRAP" or reuse_factor > 1:  # one container part (module docstring)
        w, i = container(program, layer_index)
        return [InputGroup(np.arange(fmts.width.size), w, i)]
    ib = np.asarray(fmts.int_bits, dtype=np.int64).reshape(-1)
    fr = np.asarray(fmts.frac, dtype=np.int64).reshape(-1)
    keys, inverse = np.unique(np.stack([ib, fr], axis=1), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    members = [[int(g)] for g in range(keys.shape[0])]
    i_max, f_max = keys[:, 0].copy(), keys[:, 1].copy()
    count = np.bincount(inverse, minlength=keys.shape[0]).astype(np.int64)
    while len(members) > max(1, max_groups):
        wi = np.maximum(i_max[:, None], i_max[None, :])
        wf = np.maximum(f_max[:, None], f_max[None, :])
        own = i_max + f_max
        extra = count[:, None] * (wi + wf - own[:, None]) + count[None, :] * (wi + wf - own[None, :])
        extra = extra.astype(np.float64)
        np.fill_diagonal(extra, np.inf)
        a, b = np.unravel_index(int(np.argmin(extra)), extra.shape)
        a, b = min(a, b), max(a, b)
        members[a] += members[b]
        i_max[a], f_max[a], count[a] = max(i_max[a], i_max[b]), max(f_max[a], f_max[b]), count[a] + count[b]
        del members[b]
        i_max, f_max, count = np.delete(i_max, b), np.delete(f_max, b), np.delete(count, b)
    part_of_key = np.empty(keys.shape[0], dtype=np.int64)
    for q, ms in enumerate(members):
        part_of_key[ms] = q
    part = part_of_key[inverse]
    out = []
    for q in range(len(members)):
        idx = np.flatnonzero(part == q)
        i, f = int(ib[idx].max()), int(fr[idx].max())
        out.append(InputGroup(idx, i + f, i))
    out.sort(key=lambda g: int(g.inputs[0]))
    return out


def check_reuse_factor(reuse_factor: int) -> int:
    if int(reuse_factor) != reuse_factor or reuse_factor < 1:
        raise ValueError(f"reuse factor must be an integer >= 1, got {reuse_factor!r}")
    return int(reuse_factor)


def lanes(n: int, reuse_factor: int) -> int:
    """Parallel copies of an operation repeated n times when each copy is reused R times."""
    return -(-int(n) // int(reuse_factor))


def layer_layouts(program: FixedProgram) -> list[str]:
    """Per layer: "rolled (g loops)", "loop" (one neuron loop), "unrolled" (straight-line) or
    "grouped (g loops, s scalar)"."""
    out = []
    for lp in program.layers:
        groups = dense_groups(lp)
        kinds = [g.kind for g in groups]
        singles = kinds.count("scalar")
        if all(k == "rolled" for k in kinds):
            out.append(f"rolled ({len(groups)} loop{'s' if len(groups) > 1 else ''})")
        elif len(groups) == 1 and kinds[0] == "loop":
            out.append("loop")
        elif singles == len(groups):
            out.append("unrolled")
        else:
            out.append(f"grouped ({len(groups) - singles} loops, {singles} scalar)")
    return out
