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
bit-exactness is untouched, but the multiplier instantiated for x is container-wide: the cost
uses the container width for x.
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
