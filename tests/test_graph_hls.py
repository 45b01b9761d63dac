"""Graph-program C++ (aster_ext/codegen/graph_hls.py): bit-exact with the simulator on synthetic
graphs covering every node kind with random per-channel (wrapping) formats, on wide (> 64-bit)
formats and on the certified Convnet_maxpool program; the code shape (loops, not statements per
pixel; one typedef per channel format; pragmas; testbench and Tcl) without compiling."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aster_ext.codegen.compile import compile_harness
from aster_ext.codegen.graph_hls import (
    container,
    generate_graph_hls,
    graph_cpp_matches_simulator,
    graph_identifier,
    simulate_outputs,
)
from aster_ext.errors import UnsupportedError
from aster_ext.fixedpoint import FixedFormat
from aster_ext.graph_program.program import LINEAR_KINDS, FracChoice, build_program, is_rounding_node
from aster_ext.graph_program.simulate import simulate_graph
from aster_ext.ops import logits_node
from aster_ext.program import FormatArray

from .cpp_support import require_toolchain
from .graph_hls_support import GraphBuilder, random_program, zoo_1d, zoo_2d

SUPPRESS = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


def _box(net, r: float = 2.0):
    n = int(np.prod(net.input_shape))
    return -r * np.ones(n), r * np.ones(n)


def _assert_bit_exact(prog, tmp_path, n=40, seed=0, **gen):
    require_toolchain()
    generate_graph_hls(prog, tmp_path, "net", **gen)
    lo, hi = _box(prog.net)
    ok, msg = graph_cpp_matches_simulator(prog, tmp_path, lo, hi, seed, n)
    assert ok, msg
    assert msg.startswith("bit-exact on")


# ---------------------------------------------------------------------------------------------
# bit-exactness (compiles: slow)


@pytest.mark.slow
@settings(max_examples=3, deadline=None, suppress_health_check=SUPPRESS)
@given(seed=st.integers(0, 2**31 - 1), quant=st.sampled_from(["TRN", "RND"]), small_ints=st.booleans())
def test_zoo_2d_bit_exact(tmp_path_factory, seed, quant, small_ints):
    rng = np.random.default_rng(seed)
    prog = random_program(rng, zoo_2d(rng), quant, small_ints)
    _assert_bit_exact(prog, tmp_path_factory.mktemp("zoo2d"), seed=seed % 1000)


@pytest.mark.slow
@settings(max_examples=2, deadline=None, suppress_health_check=SUPPRESS)
@given(seed=st.integers(0, 2**31 - 1), quant=st.sampled_from(["TRN", "RND"]), small_ints=st.booleans())
def test_zoo_1d_bit_exact(tmp_path_factory, seed, quant, small_ints):
    rng = np.random.default_rng(seed)
    prog = random_program(rng, zoo_1d(rng), quant, small_ints)
    _assert_bit_exact(prog, tmp_path_factory.mktemp("zoo1d"), seed=seed % 1000)


@pytest.mark.slow
def test_small_formats_wrap_and_match(tmp_path):
    """A program whose accumulators and outputs do wrap on the checked inputs is still bit-exact."""
    rng = np.random.default_rng(5)
    prog = random_program(rng, zoo_2d(rng), "RND", True)
    lo, hi = _box(prog.net)
    tr = simulate_graph(prog, np.vstack([lo, hi, (lo + hi) / 2 + 0.3]))
    assert sum(tr.overflows.values()) > 0
    _assert_bit_exact(prog, tmp_path, reuse_factor=3)


@pytest.mark.slow
def test_wide_formats_use_limbs_and_match(tmp_path):
    """Accumulators and weights beyond 64 bits (raw constants as 64-bit limbs, object simulation)."""
    rng = np.random.default_rng(8)
    net = zoo_1d(rng)
    fc = FracChoice.uniform(net, 40)
    ib = {n: np.full(v.size, 30) for n, v in fc.out.items()}
    prog = build_program(net, fc, ib, 12, {n: np.full(v.size, 34) for n, v in fc.out.items()})
    assert max(int(nd.acc_t.width.max()) for nd in prog.nodes.values() if nd.acc_t is not None) > 64
    assert simulate_graph(prog, np.zeros((1, *net.input_shape))).dtype == "object"
    _assert_bit_exact(prog, tmp_path, n=20)


@pytest.mark.slow
def test_testbench_runs_and_passes(tmp_path):
    """The emitted testbench reads its default vector files, prints raw outputs and says PASS;
    a corrupted expected file makes it FAIL with exit code 1."""
    require_toolchain()
    rng = np.random.default_rng(2)
    prog = random_program(rng, zoo_1d(rng), "TRN", False)
    paths = generate_graph_hls(prog, tmp_path, "tb net", tb_samples=5)
    ident = graph_identifier("tb net")
    assert [p.name for p in paths] == [
        f"{ident}.h", f"{ident}.cpp", f"{ident}_tb.cpp", f"{ident}_hls.tcl", f"{ident}_tb_in.txt",
        f"{ident}_tb_out.txt",
    ]  # fmt: skip
    exe = compile_harness([paths[1], paths[2]], tmp_path / "tb", opt="-O1", jobs=1)
    run = subprocess.run([str(exe)], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[-1].startswith("PASS: 0 of")
    assert lines[:-1] == paths[5].read_text().strip().splitlines()
    bad = paths[5].read_text().splitlines()
    first = bad[0].split()
    first[0] = str(int(first[0]) + 1)
    bad[0] = " ".join(first)
    (tmp_path / "bad.txt").write_text("\n".join(bad) + "\n")
    run = subprocess.run([str(exe), paths[4].name, "bad.txt"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 1 and "FAIL: 1 of" in run.stdout


@pytest.mark.slow
def test_convnet_maxpool_certified_program_bit_exact(shared_dir, tmp_path):
    """The certified program of a benchmark CNN (per-channel integer bits) on >= 200 inputs of a
    region: random, corners, and points outside the box."""
    from aster_ext.frontend.onnx_import import load_onnx
    from aster_ext.graph_program.certify import Region, certify_cnn

    require_toolchain()
    cnn = shared_dir / "benchmarks" / "cnn"
    net = load_onnx(cnn / "Convnet_maxpool.onnx")
    spec = json.loads((cnn / "Convnet_maxpool.spec.json").read_text())
    regs = [
        Region(str(i), np.array(r["lower"], float), np.array(r["upper"], float), int(r["label"]))
        for i, r in enumerate(spec["regions"][:2])
    ]
    prog = certify_cnn(net, regs, search="greedy", granularity="layer").search.program  # C++ under test
    conv = prog.nodes["Conv_0"]
    assert len({int(v) for v in conv.out_t.int_bits}) > 1  # per-channel formats are exercised
    generate_graph_hls(prog, tmp_path, "convnet")
    reg = regs[0]
    ok, msg = graph_cpp_matches_simulator(prog, tmp_path, reg.lower, reg.upper, 1, 100, name="convnet")
    assert ok, msg
    assert int(re.search(r"on (\d+) inputs", msg).group(1)) >= 200


# ---------------------------------------------------------------------------------------------
# code shape (no compiler)


def _program(seed=0, quant="TRN", net_fn=zoo_2d):
    rng = np.random.default_rng(seed)
    return random_program(rng, net_fn(rng), quant, False)


def test_every_channel_format_is_a_typedef(tmp_path):
    prog = _program(1, "RND")
    cpp = generate_graph_hls(prog, tmp_path)[1].read_text()
    typedefs = set(re.findall(r"typedef (ap_fixed<[^;]*>) \w+;", cpp))
    for op in prog.net.ops():
        if not is_rounding_node(op):
            continue
        nd = prog.nodes[op.name]
        for w, i in nd.out_t.distinct():
            assert FixedFormat(w, i, "RND", "WRAP").cpp() in typedefs, (op.name, w, i)
        for w, i in nd.acc_t.distinct() if nd.acc_t is not None else []:
            assert FixedFormat(w, i, "RND", "WRAP").cpp() in typedefs, (op.name, "acc", w, i)
        if op.kind in LINEAR_KINDS:
            for w, f in zip(nd.weight_width, nd.weight_frac, strict=True):
                assert FixedFormat(int(w), int(w - f), "RND", "WRAP").cpp() in typedefs, (op.name, "w")
    assert "AP_RND, AP_WRAP" in cpp


def test_multipliers_read_each_operand_class_in_its_own_format(tmp_path):
    """The cost counts per multiplier (o, t) its weight width plus the width of the format its
    lane reads: the union format of the input channel (conv) or element (dense). Checked
    against an independent count over every multiplier, and the code declares each class's type
    (a cast of the container element) wherever a node's classes differ."""
    from aster_ext.graph_program.certify import program_cost

    prog = _program(3)
    bits = 0
    for op in prog.net.ops():
        if op.kind == "avgpool":  # the 1/k constant multipliers (none when every k is a shift)
            nd = prog.nodes[op.name]
            consts = [int(v) for v in nd.const_raw]
            if any(v <= 0 or v & (v - 1) for v in consts):
                bits += int(np.sum(nd.acc_t.width)) + op.shape[0] * (max(consts).bit_length() + 1)
        if op.kind not in LINEAR_KINDS:
            continue
        nd, x_t = prog.nodes[op.name], prog.out_t(op.inputs[0])
        w = nd.weight_raw
        in_shape = prog.net.op(op.inputs[0]).shape
        for o in range(w.shape[0]):
            for t in range(int(np.prod(w.shape[1:]))):
                if op.kind == "affine":
                    elems = [t]
                else:
                    c_in = int(in_shape[0])
                    og = w.shape[0] // int(op.attrs.get("group", 1))
                    c = (o // og) * w.shape[1] + t // int(np.prod(w.shape[2:]))
                    per = int(np.prod(in_shape)) // c_in
                    elems = list(range(c * per, (c + 1) * per))
                wx = int(x_t.int_bits[elems].max()) + int(x_t.frac[elems].max())
                bits += int(nd.weight_width[o]) + wx
    assert program_cost(prog).mult_operand_bits == bits
    cpp = generate_graph_hls(prog, tmp_path)[1].read_text()
    assert re.search(r"\* fx\d+_\d+\(x\[", cpp)  # a narrowed operand read


def test_code_size_does_not_grow_with_pixels(tmp_path):
    """Loops over constant arrays: the same layers on a 4x larger image give the same code size
    (up to the digits of the loop bounds)."""

    def net_of(h):
        rng = np.random.default_rng(0)
        b = GraphBuilder(rng, (2, h, h))
        c = b.relu(b.conv("x", 3, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)))
        p = b.pool("avgpool", c, (2, 2), (2, 2), (0, 0, 0, 0))
        b.dense(b.global_pool("maxpool", p), 2)
        return b.network("n")

    sizes = []
    for h in (8, 32):
        net = net_of(h)
        fc = FracChoice.uniform(net, 6)
        out_ib = {n: np.full(len(v), 6) for n, v in fc.out.items()}
        prog = build_program(net, fc, out_ib, 4, {n: np.full(len(v), 14) for n, v in fc.out.items()})
        sizes.append(len(generate_graph_hls(prog, tmp_path / str(h))[1].read_text()))
    assert abs(sizes[1] - sizes[0]) < 200, sizes


def test_pragmas_interface_and_tcl(tmp_path):
    prog = _program(2)
    paths = generate_graph_hls(prog, tmp_path, "top", reuse_factor=4)
    cpp, tcl, hdr = paths[1].read_text(), paths[3].read_text(), paths[0].read_text()
    assert "#pragma HLS INTERFACE mode=ap_ctrl_hs port=return" in cpp
    assert re.search(r"#pragma HLS INTERFACE mode=\w+ port=x", cpp)
    assert re.search(r"#pragma HLS INTERFACE mode=\w+ port=y", cpp)
    assert "#pragma HLS PIPELINE II=4" in cpp and "II=1\n" not in cpp.split("void top(")[0]
    assert re.search(r"ARRAY_PARTITION variable=fx_n\d+_w cyclic factor=\d+ dim=2", cpp)
    for word in ("csim_design", "csynth_design", "set_top top", "add_files -tb top_tb.cpp"):
        assert word in tcl
    assert "void top(const in_t x[N_IN], out_t y[N_OUT]);" in hdr
    assert f"#define N_IN {int(np.prod(prog.net.input_shape))}" in hdr
    assert "#define N_OUT 3" in hdr
    # one block per channel group, not per channel or pixel
    n_groups = len(re.findall(r"^ +// group \d+: ", cpp, flags=re.M))
    n_channels = sum(op.shape[0] for op in prog.net.ops() if is_rounding_node(op))
    assert 0 < n_groups <= n_channels


def test_out_t_holds_every_logit_format_and_testbench_vectors(tmp_path):
    prog = _program(3)
    paths = generate_graph_hls(prog, tmp_path, tb_samples=6)
    w, i = container(prog.out_t(logits_node(prog.net)))
    assert f"typedef {FixedFormat(w, i).cpp()} out_t;" in paths[0].read_text()
    x_raw = np.array([[int(t) for t in ln.split()] for ln in paths[4].read_text().splitlines()], dtype=object)
    y_raw = np.array([[int(t) for t in ln.split()] for ln in paths[5].read_text().splitlines()], dtype=object)
    assert x_raw.shape == (6, int(np.prod(prog.net.input_shape))) and y_raw.shape == (6, 3)
    f_in = int(prog.input_t.frac[0])
    _, y_sim = simulate_outputs(prog, np.ldexp(x_raw.astype(np.float64), -f_in))
    assert np.array_equal(y_sim, y_raw)


def test_unsupported_inputs_fail_clearly(tmp_path):
    prog = _program(4)
    prog.input_t = FormatArray(prog.input_t.width.copy(), prog.input_t.int_bits.copy())
    prog.input_t.int_bits[0] += 1
    with pytest.raises(UnsupportedError, match="per-element input formats"):
        generate_graph_hls(prog, tmp_path)
    with pytest.raises(ValueError, match="reuse factor"):
        generate_graph_hls(_program(4), tmp_path, reuse_factor=0)


@pytest.mark.slow
def test_checker_reports_a_mismatch(tmp_path):
    """The check is not vacuous: C++ generated for the AP_TRN program, compared with the
    simulator of the same formats under AP_RND, differs and names the first difference."""
    import dataclasses

    require_toolchain()
    rng = np.random.default_rng(6)
    prog = random_program(rng, zoo_1d(rng), "TRN", False, frac_range=(1, 3))
    generate_graph_hls(prog, tmp_path)
    lo, hi = _box(prog.net)
    ok, msg = graph_cpp_matches_simulator(dataclasses.replace(prog, quant="RND"), tmp_path, lo, hi, 0, 20)
    assert not ok
    assert msg.startswith("MISMATCH on") and "C++ raw" in msg


def test_top_name_never_clashes_with_generated_names():
    cases = {"in_t": "net_in_t", "fx8_2": "net_fx8_2", "fx_n0": "net_fx_n0", "my net": "my_net"}
    for name, ident in cases.items():
        assert graph_identifier(name) == ident


def test_fx_raw_skips_limbs_above_the_type(tmp_path: Path) -> None:
    """A constant array stored as 64-bit limbs for its widest type and read into a narrower one
    (per-channel types: a 22-bit accumulator beside a 68-bit one) gets limbs wholly above the
    type's width; ``fx_raw`` must drop them (sign extension) instead of assigning a reversed
    range, which asserts in debug builds and would write reversed bits without asserts. Found on
    resnet_2b's whole-box program at ε 0.05."""
    from aster_ext.codegen.compile import find_cxx
    from aster_ext.codegen.hls import _HELPERS

    from .cpp_support import require_toolchain

    ap = require_toolchain()
    cases = [
        (22, -9, 5), (22, -9, -5), (22, -9, (1 << 21) - 1), (22, -9, -(1 << 21)),
        (68, 4, -(1 << 66) + 3), (64, 4, -7), (65, 4, (1 << 63) + 9),
    ]  # fmt: skip
    lines = ["#include <ap_fixed.h>", "#include <cstdio>", _HELPERS, "int main() {"]
    for i, (w, ib, v) in enumerate(cases):
        limbs = [(v >> (64 * k)) & ((1 << 64) - 1) for k in range(3)]  # always three limbs
        args = ", ".join(f"{x}ULL" for x in limbs)
        lines += [
            f"  ap_fixed<{w}, {ib}> t{i} = fx_raw<ap_fixed<{w}, {ib}> >({args});",
            f"  ap_int<{w}> r{i}; r{i}.range({w - 1}, 0) = t{i}.range({w - 1}, 0);",
            f'  printf("%s\\n", r{i}.to_string(10).c_str());',
        ]
    lines += ["  return 0;", "}"]
    src = tmp_path / "limbs.cpp"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "limbs"
    subprocess.run([find_cxx(), "-O0", f"-I{ap}", str(src), "-o", str(exe)], check=True, capture_output=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()
    assert [int(x) for x in out] == [v for _, _, v in cases]
