"""Small synthetic graph programs for the graph C++ tests: every node kind the graph programs
have (conv 2-D/1-D with stride, asymmetric pads, dilation, groups and depthwise; max/avg pools
with count_include_pad 0/1 and pads; global pools; residual add; concat; transpose; flatten;
dense; relu), random geometry and random per-channel formats (wrapping ones included)."""

from __future__ import annotations

import numpy as np

from aster_ext.graph_program.program import FracChoice, GraphProgram, build_program
from aster_ext.ir import Network, Op, build_network


def out_size(n: int, k: int, s: int, d: int, pb: int, pe: int) -> int:
    return (n + pb + pe - d * (k - 1) - 1) // s + 1


class GraphBuilder:
    """Appends ops with shapes computed from the ONNX formulas; random weights N(0, 0.5)."""

    def __init__(self, rng: np.random.Generator, in_shape: tuple[int, ...]) -> None:
        self.rng = rng
        self.ops = [Op("x", "input", (), tuple(in_shape))]
        self.shapes = {"x": tuple(in_shape)}
        self.n = 0

    def _add(self, kind: str, inputs: tuple[str, ...], shape: tuple[int, ...], attrs=None) -> str:
        self.n += 1
        name = f"{kind}{self.n}"
        self.ops.append(Op(name, kind, inputs, tuple(int(v) for v in shape), attrs or {}))
        self.shapes[name] = tuple(int(v) for v in shape)
        return name

    def conv(self, src, c_out, kernel, stride, pads, dil, group=1) -> str:
        shp = self.shapes[src]
        d = len(shp) - 1
        out = [
            out_size(shp[1 + a], kernel[a], stride[a], dil[a], pads[a], pads[d + a]) for a in range(d)
        ]
        w = self.rng.normal(0, 0.5, (c_out, shp[0] // group, *kernel))
        attrs = {
            "kernel": w, "bias": self.rng.normal(0, 0.2, c_out), "stride": tuple(stride),
            "padding": tuple(pads), "dilation": tuple(dil), "group": group,
        }  # fmt: skip
        return self._add("conv2d" if d == 2 else "conv1d", (src,), (c_out, *out), attrs)

    def pool(self, kind, src, kernel, stride, pads, count_include_pad=False, dil=None) -> str:
        shp = self.shapes[src]
        d = len(shp) - 1
        dil = dil or (1,) * d
        out = [
            out_size(shp[1 + a], kernel[a], stride[a], dil[a], pads[a], pads[d + a]) for a in range(d)
        ]
        attrs = {"kernel": tuple(kernel), "stride": tuple(stride), "padding": tuple(pads), "dilation": dil}
        if kind == "avgpool":
            attrs["count_include_pad"] = bool(count_include_pad)
        return self._add(kind, (src,), (shp[0], *out), attrs)

    def global_pool(self, kind, src) -> str:
        shp = self.shapes[src]
        d = len(shp) - 1
        return self.pool(kind, src, shp[1:], (1,) * d, (0,) * (2 * d))

    def relu(self, src) -> str:
        return self._add("act", (src,), self.shapes[src], {"fn": "relu"})

    def add(self, a, b) -> str:
        return self._add("add", (a, b), self.shapes[a])

    def concat(self, srcs, axis) -> str:
        shp = list(self.shapes[srcs[0]])
        shp[axis] = sum(self.shapes[s][axis] for s in srcs)
        return self._add("concat", tuple(srcs), tuple(shp), {"axis": axis})

    def transpose(self, src, perm) -> str:
        shp = self.shapes[src]
        return self._add("transpose", (src,), tuple(shp[p] for p in perm), {"perm": tuple(perm)})

    def flatten(self, src) -> str:
        n = int(np.prod(self.shapes[src]))
        return self._add("flatten", (src,), (n,), {"shape": (n,)})

    def dense(self, src, n_out) -> str:
        n_in = int(np.prod(self.shapes[src]))
        w = self.rng.normal(0, 0.5, (n_out, n_in))
        return self._add("affine", (src,), (n_out,), {"weight": w, "bias": self.rng.normal(0, 0.2, n_out)})

    def network(self, name: str) -> Network:
        return build_network(name, self.ops, "float64 (exact)")


def zoo_2d(rng: np.random.Generator) -> Network:
    """input (2, H, W) -> grouped strided dilated conv with asymmetric pads -> relu -> depthwise
    conv -> {maxpool (padded), avgpool (padded, count_include_pad random)} -> residual add of two
    convs -> concat with a global-avg/max branch pair -> transpose -> flatten -> dense -> relu ->
    dense."""
    h, w = int(rng.integers(6, 9)), int(rng.integers(6, 9))
    b = GraphBuilder(rng, (2, h, w))
    c1 = b.conv(
        "x", 4, (int(rng.integers(1, 4)), int(rng.integers(1, 4))), (int(rng.integers(1, 3)), 1),
        (int(rng.integers(0, 2)), 0, 0, int(rng.integers(0, 3))), (1, int(rng.integers(1, 3))), group=2,
    )  # fmt: skip
    r1 = b.relu(c1)
    dw = b.conv(r1, 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), group=4)  # depthwise
    mp = b.pool("maxpool", dw, (2, 2), (1, 2), (1, 0, 0, 1))
    ap = b.pool("avgpool", mp, (2, 3), (1, 1), (0, 1, 1, 1), count_include_pad=bool(rng.integers(0, 2)))
    ca = b.conv(ap, 3, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1))
    cb = b.conv(ap, 3, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1))
    s = b.relu(b.add(ca, cb))
    ga = b.global_pool("avgpool", s)
    gm = b.global_pool("maxpool", s)
    cat = b.concat([ga, gm], 0)  # (6, 1, 1)
    cat2 = b.concat([s, b.relu(ca)], 0)  # (6, h', w')
    t = b.transpose(cat2, (1, 2, 0))
    f = b.flatten(t)
    g = b.flatten(cat)
    d1 = b.relu(b.dense(f, int(rng.integers(3, 6))))
    both = b.concat([d1, g], 0)
    b.dense(both, 3)
    return b.network("zoo2d")


def zoo_1d(rng: np.random.Generator) -> Network:
    """input (2, L) -> conv1d (stride 2, asymmetric pads, dilation 2) -> relu -> maxpool1d ->
    avgpool1d (padded, count_include_pad random) -> depthwise conv1d -> global max -> dense."""
    b = GraphBuilder(rng, (2, int(rng.integers(10, 16))))
    c = b.relu(b.conv("x", 4, (3,), (2,), (1, 2), (2,)))
    m = b.pool("maxpool", c, (2,), (1,), (0, 1))
    a = b.pool("avgpool", m, (3,), (1,), (1, 1), count_include_pad=bool(rng.integers(0, 2)))
    dw = b.conv(a, 4, (2,), (1,), (0, 0), (1,), group=4)
    g = b.global_pool("maxpool", dw)
    b.dense(b.flatten(b.add(g, g)), 2)
    return b.network("zoo1d")


def random_program(
    rng: np.random.Generator, net: Network, quant: str, small_ints: bool, frac_range=(0, 8)
) -> GraphProgram:
    """Random per-channel fractional bits, output / accumulator integer bits (small ones wrap)."""
    lo, hi = frac_range
    fc = FracChoice.uniform(net, int(rng.integers(lo, hi + 1)))
    fc.input = int(rng.integers(lo, hi + 1))
    for d in (fc.out, fc.weight):
        for name in d:
            d[name] = rng.integers(lo, hi + 1, size=d[name].size).astype(np.int64)
    for name in fc.const:
        fc.const[name] = int(rng.integers(0, hi + 2))
    lo_i, hi_i = (1, 4) if small_ints else (8, 12)
    out_ib = {n: rng.integers(lo_i, hi_i + 1, size=v.size) for n, v in fc.out.items()}
    acc_ib = {n: rng.integers(lo_i, hi_i + 1, size=v.size) for n, v in fc.out.items()}
    return build_program(net, fc, out_ib, int(rng.integers(lo_i, hi_i + 1)), acc_ib, quant)
