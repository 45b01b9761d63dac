"""Generated HLS C++ compiled with g++ against ap_types agrees bit for bit with the simulator.

Random programs (fixed seeds) cover TRN/RND x WRAP/SAT, every layout (one loop, grouped,
fully unrolled), formats that overflow, > 64-bit constants and intermediates. They are compiled
into one binary (one translation unit per program, in parallel, plus one harness unit).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from aster_ext.codegen import (
    compile_harness,
    generate_harness,
    generate_hls,
    generate_multi_harness,
    layer_layouts,
    run_harness,
)
from aster_ext.codegen.hls import c_identifier, neuron_groups
from aster_ext.codegen.layout import MAX_INPUT_GROUPS, container, input_groups
from aster_ext.fixedpoint import FixedFormat
from aster_ext.program import FormatArray
from aster_ext.simulate import choose_dtype, intermediate_bits, simulate_raw
from tests.cpp_support import require_toolchain
from tests.programs import aster_like_program, random_inputs, random_program, reference_outputs


def _degenerate_rnd_program():
    """AP_RND products whose whole value lies below half an lsb (ap_fixed C-sim would assert)."""
    rng = np.random.default_rng(99)
    p = random_program(
        rng,
        [2, 2],
        quant="RND",
        overflow="SAT",
        layout="uniform",
        width=(3, 3),
        int_bits=(0, 0),
        name="degenerate_rnd",
    )
    lp = p.layers[0]
    p.input_t = FixedFormat(3, -7, "RND", "SAT")  # F = 10
    lp.weight_t = FormatArray.uniform((2, 2), 2, -8)  # F = 10
    lp.weight_raw = np.array([[1, -2], [-1, 1]], dtype=object)
    lp.product_t = FormatArray(np.array([[4, 6], [4, 6]]), np.array([[4, -14], [4, -14]]))  # F = 0, 20
    return p


def _programs() -> list:
    rng = np.random.default_rng(20240611)
    spec = [
        # name, sizes, quant, overflow, layout, width, acc_width, pool
        ("col_trn_wrap", [4, 5, 3], "TRN", "WRAP", "column", (1, 16), (1, 24), 4),
        ("col_rnd_sat", [5, 4, 2], "RND", "SAT", "column", (1, 16), (1, 24), 4),
        ("elem_trn_sat", [3, 3, 2], "TRN", "SAT", "element", (1, 12), (1, 20), 3),
        ("mixed_rnd_wrap", [4, 6, 3, 2], "RND", "WRAP", "mixed", (1, 14), (1, 22), 3),
        ("wide_trn_wrap", [3, 3, 2], "TRN", "WRAP", "column", (40, 75), (70, 130), 2),
        ("wide_rnd_sat", [2, 3, 2], "RND", "SAT", "row", (40, 80), (70, 100), 2),
        ("row_rnd_wrap", [5, 4, 3], "RND", "WRAP", "row", (1, 10), (1, 16), 3),
        # per-row formats, all distinct: > MAX_INPUT_GROUPS input formats, merged; sums reordered
        ("row_trn_wrap_many", [6, 20, 12, 3], "TRN", "WRAP", "row", (1, 14), (1, 18), None),
        ("uni_trn_sat", [6, 8, 5, 3], "TRN", "SAT", "uniform", (4, 16), (8, 30), None),
        ("single", [1, 1], "TRN", "WRAP", "uniform", (1, 8), (1, 8), None),
    ]
    progs = []
    for name, sizes, q, o, layout, width, acc, pool in spec:
        progs.append(
            random_program(
                rng,
                sizes,
                quant=q,
                overflow=o,
                layout=layout,
                width=width,
                acc_width=acc,
                int_bits=(-4, 9),
                name=name,
                pool=pool,
            )
        )
    progs.append(_degenerate_rnd_program())
    progs.append(aster_like_program(rng, [4, 6, 3], name="aster_like"))  # simulated on the int128 path
    return progs


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Generate every program, compile them into one dispatching harness binary."""
    require_toolchain()
    tmp = tmp_path_factory.mktemp("codegen")
    progs = _programs()
    sources = [generate_hls(p, tmp / "hls")["source"] for p in progs]
    main = generate_multi_harness(progs, tmp / "harness")
    # -O0 keeps the batch fast; test_single_program_harness_as_used_by_verify compiles at -O1
    binary = compile_harness([*sources, main], tmp / "harness" / "bin", include_dirs=[tmp / "hls"], opt="-O0")
    return {"programs": progs, "binary": binary, "dir": tmp / "hls"}


@pytest.mark.slow
def test_random_programs_cover_the_intended_cases(built: dict) -> None:
    progs = {p.name: p for p in built["programs"]}
    assert choose_dtype(progs["aster_like"]) == "int128"
    assert choose_dtype(progs["wide_trn_wrap"]) == "object" and intermediate_bits(progs["wide_rnd_sat"]) > 100
    assert any(w > 64 for p in progs.values() for lp in p.layers for w in lp.weight_t.width.reshape(-1))
    layouts = {p.name: layer_layouts(p) for p in progs.values()}
    assert layouts["col_trn_wrap"][0] == "loop" and layouts["elem_trn_sat"][0] == "unrolled"
    assert layouts["mixed_rnd_wrap"][0].startswith("grouped")


@pytest.mark.slow
@pytest.mark.parametrize("index", range(12))
def test_cpp_matches_simulator_bit_for_bit(built: dict, index: int) -> None:
    p = built["programs"][index]
    rng = np.random.default_rng(index)
    x = random_inputs(rng, p, 60)
    y_sim = simulate_raw(p, x)
    y_cpp = run_harness(built["binary"], x, args=[c_identifier(p.name)])
    mism = [
        (i, list(x[i]), list(y_sim[i]), list(y_cpp[i]))
        for i in range(len(x))
        if list(y_sim[i]) != list(y_cpp[i])
    ]
    assert not mism, f"{p.name}: {len(mism)} of {len(x)} samples differ, first: {mism[0]}"
    # the overflow paths are exercised (most random programs wrap or saturate somewhere)
    if p.name not in ("single", "degenerate_rnd", "aster_like"):
        assert simulate_raw(p, x, trace=True).first_overflow() is not None


@pytest.mark.slow
def test_simulator_equals_scalar_reference_on_the_compiled_programs(built: dict) -> None:
    for i, p in enumerate(built["programs"]):
        x = random_inputs(np.random.default_rng(i), p, 4)
        assert simulate_raw(p, x).tolist() == reference_outputs(p, x).tolist(), p.name


@pytest.mark.slow
def test_header_declares_the_interface(built: dict) -> None:
    p = built["programs"][0]
    h = (built["dir"] / f"{p.name}.h").read_text()
    assert f"#define N_IN {p.n_in}" in h and f"#define N_OUT {p.n_out}" in h
    assert f"typedef {p.input_t.cpp()} in_t;" in h and f"typedef {p.output_t.cpp()} out_t;" in h
    assert f"void {p.name}(const in_t x[N_IN], out_t y[N_OUT]);" in h


@pytest.mark.slow
def test_constants_are_raw_integers_never_decimals(built: dict) -> None:
    for p in built["programs"]:
        src = (built["dir"] / f"{p.name}.cpp").read_text()
        code = "\n".join(ln.split("//")[0] for ln in src.splitlines())
        assert not re.search(r"\d\.\d|\d[eE][-+]?\d(?![0-9a-fA-F]*ULL)", code), p.name
        assert "double" not in code and "float" not in code
    wide = (built["dir"] / "wide_trn_wrap.cpp").read_text()
    assert "unsigned long long" in wide and "ULL" in wide  # > 64-bit constants as 64-bit limbs


@pytest.mark.slow
def test_single_program_harness_as_used_by_verify(tmp_path: Path) -> None:
    """generate_harness's main.cpp in its own folder, linked with the emitted .cpp elsewhere."""
    require_toolchain()
    rng = np.random.default_rng(5)
    p = random_program(
        rng,
        [3, 4, 2],
        quant="RND",
        overflow="WRAP",
        layout="mixed",
        width=(20, 70),
        acc_width=(30, 90),
        name="net-1",
        pool=2,
    )
    assert choose_dtype(p) == "object"
    files = generate_hls(p, tmp_path / "out")
    assert files["source"].name == "net_1.cpp" and files["header"].name == "net_1.h"
    harness = generate_harness(p, tmp_path / "h")
    binary = compile_harness(
        [files["source"], harness], tmp_path / "h" / "bin", include_dirs=[tmp_path / "out"]
    )
    x = random_inputs(rng, p, 30)
    assert run_harness(binary, x).tolist() == simulate_raw(p, x).tolist()
    with pytest.raises(RuntimeError, match="expected 3 raw integers"):
        run_harness(binary, np.array([[1, 2]], dtype=object))


def test_neuron_groups_follow_format_signatures() -> None:
    rng = np.random.default_rng(3)
    p = random_program(rng, [3, 6], layout="mixed", width=(2, 9))
    lp = p.layers[0]
    groups = neuron_groups(lp)
    assert sorted(int(j) for g in groups for j in g) == list(range(6))
    for g in groups:
        for fmt in (lp.weight_t, lp.product_t, lp.psum_t):
            assert (fmt.width[g] == fmt.width[g[0]]).all() and (fmt.int_bits[g] == fmt.int_bits[g[0]]).all()
    uniform = random_program(rng, [3, 6], layout="column")
    assert len(neuron_groups(uniform.layers[0])) == 1


def test_c_identifier() -> None:
    assert c_identifier("net-1") == "net_1"
    assert c_identifier("1net") == "net_1net"
    assert c_identifier("int") == "net_int"
    assert c_identifier("ok_name") == "ok_name"


def test_missing_toolchain_gives_clear_user_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from aster_ext.codegen import compile as comp
    from aster_ext.errors import UserError

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install hls4ml"):
        comp.find_ap_types()
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    with pytest.raises(UserError, match="not found"):
        comp.find_cxx()


def test_compile_errors_are_reported(tmp_path: Path) -> None:
    from aster_ext.codegen.compile import CompileError

    require_toolchain()
    bad = tmp_path / "bad.cpp"
    bad.write_text("int main() { return undefined_symbol; }\n")
    with pytest.raises(CompileError, match="undefined_symbol"):
        compile_harness([bad], tmp_path / "bad")


def _type_name(width: int, int_bits: int) -> str:
    return f"fx{int(width)}_{'m' if int_bits < 0 else ''}{abs(int(int_bits))}"


def test_rolled_layers_are_one_loop_per_group_with_the_declared_types(tmp_path: Path) -> None:
    """Per-row formats: one MAC statement per neuron group (not per weight), typed as declared."""
    rng = np.random.default_rng(11)
    p = random_program(rng, [40, 30, 4], layout="row", width=(4, 12), acc_width=(8, 20), pool=3, name="rows")
    src = generate_hls(p, tmp_path)["source"].read_text()
    layouts = layer_layouts(p)
    assert all(t.startswith("rolled") for t in layouts), layouts
    n_groups = sum(len(neuron_groups(lp)) for lp in p.layers)
    # one MAC statement per (neuron group, input group), not one per weight
    n_macs = sum(len(neuron_groups(lp)) * len(input_groups(p, li)) for li, lp in enumerate(p.layers))
    assert src.count("= fx_mac<") == n_macs <= n_groups * MAX_INPUT_GROUPS
    for lp in p.layers:
        for j in range(lp.n_out):
            w = _type_name(lp.weight_t.width[j, 0], lp.weight_t.int_bits[j, 0])
            pt = _type_name(lp.product_t.width[j, 0], lp.product_t.int_bits[j, 0])
            st = _type_name(lp.psum_t.width[j, 0], lp.psum_t.int_bits[j, 0])
            assert f"s = fx_mac<{pt}, {st}>(s, fx_raw<{w}>(" in src
    assert "#pragma HLS INTERFACE mode=ap_ctrl_hs port=return" in src
    assert (
        "#pragma HLS INTERFACE mode=ap_vld port=x" in src
        and "#pragma HLS INTERFACE mode=ap_vld port=y" in src
    )


def test_reuse_factor_sets_unroll_and_pipeline_pragmas(tmp_path: Path) -> None:
    p = random_program(np.random.default_rng(12), [9, 6, 2], layout="row", name="rf")
    full = generate_hls(p, tmp_path / "r1")["source"].read_text()
    assert "UNROLL factor" not in full and "PIPELINE" not in full
    src = generate_hls(p, tmp_path / "r3", reuse_factor=3)["source"].read_text()
    assert "#pragma HLS UNROLL factor=3" in src and "#pragma HLS PIPELINE II=1" in src
    assert "cyclic factor=3 dim=2" in src
    with pytest.raises(ValueError, match="reuse factor"):
        generate_hls(p, tmp_path / "bad", reuse_factor=0)


def _tb_programs() -> list:
    rng = np.random.default_rng(77)
    return [
        random_program(
            rng,
            [5, 4, 3],
            quant="RND",
            overflow="SAT",
            layout="row",
            width=(30, 80),
            acc_width=(60, 110),
            name="tb_wide_rows",
            pool=2,
        ),  # fmt: skip
        random_program(
            rng,
            [6, 5, 2],
            quant="TRN",
            overflow="WRAP",
            layout="mixed",
            width=(2, 12),
            acc_width=(4, 20),
            name="tb_mixed",
            pool=3,
        ),  # fmt: skip
        aster_like_program(rng, [4, 6, 3], name="tb_aster"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("reuse_factor", [1, 3])
def test_emitted_testbench_compiles_and_passes(tmp_path: Path, reuse_factor: int) -> None:
    """<net>_tb.cpp holds the simulator's outputs; compiled with g++ it passes, and fails on a
    corrupted expected value. The Tcl script runs csim and csynth on the emitted files."""
    from aster_ext.codegen.hls import testbench_vectors

    require_toolchain()
    for p in _tb_programs():
        out = tmp_path / f"{p.name}_{reuse_factor}"
        files = generate_hls(p, out, reuse_factor=reuse_factor, tb_samples=6)
        exe = compile_harness([files["source"], files["testbench"]], out / "tb", opt="-O0")
        run = subprocess.run([str(exe)], capture_output=True, text=True)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        lines = run.stdout.strip().splitlines()
        assert lines[-1] == f"PASS: 0 of {6 * p.n_out} outputs differ from the simulator"
        x, y = testbench_vectors(p, 6)
        assert (
            [[int(t) for t in ln.split()] for ln in lines[:-1]] == simulate_raw(p, x).tolist() == y.tolist()
        )
        tcl = files["tcl"].read_text()
        for cmd in (f"set_top {p.name}", f"add_files {p.name}.cpp", f"add_files -tb {p.name}_tb.cpp",
                    "open_solution", "set_part", "create_clock", "csim_design", "csynth_design"):  # fmt: skip
            assert cmd in tcl
        if p.name != "tb_wide_rows" or reuse_factor != 1:
            continue
        tb = files["testbench"].read_text()
        first = f'"{int(y[0, 0])}"'
        start = tb.index("TB_Y[TB_N]")
        bad = tb[:start] + tb[start:].replace(first, f'"{int(y[0, 0]) + 1}"', 1)
        files["testbench"].write_text(bad)
        exe = compile_harness([files["source"], files["testbench"]], out / "tb_bad", opt="-O0")
        run = subprocess.run([str(exe)], capture_output=True, text=True)
        assert run.returncode == 1 and run.stdout.strip().splitlines()[-1].startswith("FAIL: 1 of")


@pytest.mark.parametrize("seed", range(6))
def test_input_groups_partition_the_inputs_into_formats_that_hold_them(seed: int) -> None:
    """Every input in exactly one part, at most MAX_INPUT_GROUPS parts, each part's type includes
    its members' formats and is no wider than the container; saturating programs keep one part."""
    rng = np.random.default_rng(seed)
    p = random_program(rng, [5, 30, 17, 2], layout="row", width=(1, 16), int_bits=(-6, 8), pool=None)
    for li in range(len(p.layers)):
        parts = input_groups(p, li)
        assert 1 <= len(parts) <= MAX_INPUT_GROUPS
        idx = np.concatenate([g.inputs for g in parts])
        assert np.array_equal(np.sort(idx), np.arange(p.layers[li].n_in))
        fmts = p.input_formats(li)
        cw, ci = container(p, li)
        for g in parts:
            assert np.all(fmts.int_bits.reshape(-1)[g.inputs] <= g.int_bits)
            assert np.all(fmts.frac.reshape(-1)[g.inputs] <= g.frac)
            assert g.width <= cw and g.int_bits <= ci
    p.overflow = "SAT"
    assert len(input_groups(p, 1)) == 1


def test_cost_counts_input_group_widths_for_rolled_layers() -> None:
    """Rolled layers: the multiplier x operand is its input group's type, so a layer reading
    inputs of very different formats costs less than with the container; with one format for
    every input (or a saturating program) both counts agree."""
    from aster_ext.cost import program_cost

    rng = np.random.default_rng(5)
    p = random_program(rng, [4, 12, 6, 2], layout="row", width=(2, 16), int_bits=(-6, 8), pool=None)
    wrap = program_cost(p)
    p.overflow = "SAT"
    sat = program_cost(p)
    assert wrap.multipliers == sat.multipliers and wrap.hw < sat.hw
    # the difference is exactly the container excess of the x operands of rolled layers 1 and 2
    excess = 0
    for li in (1, 2):
        lp = p.layers[li]
        x_w = np.empty(lp.n_in, dtype=np.int64)
        for g in input_groups(p.__class__(**{**p.__dict__, "overflow": "WRAP"}), li):
            x_w[g.inputs] = g.width
        excess += lp.n_out * int((container(p, li)[0] - x_w).sum())
    assert sat.hw - wrap.hw == excess
