"""Summaries and reports say exactly what is certified (issue 8).

Settings C/D state the in_t-grid condition and verify measures off-grid inputs too; time-limit
and maximum-width fallback are flagged (tests/test_cli_options.py); verify checks the top-level
certified_error against the per-output values and counts violating inputs; the infinite
independent certificate is explained; large input boxes are summarised; an infeasible target
names what works; progress goes to stderr and --quiet silences it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from aster_ext import progress as progress_mod
from aster_ext.cli import main
from aster_ext.frontend import load_model
from aster_ext.ir import dense_chain
from aster_ext.outdir import read_marker, write_marker
from aster_ext.pipeline import QuantizeOptions, quantize
from aster_ext.progress import ProgressReporter, phase
from aster_ext.report import BOX_LISTED, box_text, render_markdown, summary_line
from aster_ext.verify import verify_program

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tiny_controller.scala"
VERIFY_FAST = ["--samples", "200", "--search-iters", "5", "--no-cpp", "--quiet"]


def _run(args: list[object]) -> int:
    return main([str(a) for a in args])


@pytest.mark.parametrize("setting", ["C", "D"])
def test_on_grid_settings_state_the_condition_and_verify_measures_off_grid(
    setting: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert _run(["quantize", EXAMPLE, "--error", "1e-3", "--mode", "aster-sound", "--setting", setting,
                 "--out", out, "--quiet"]) == 0  # fmt: skip
    line = capsys.readouterr().out
    r = json.loads((out / "report.json").read_text())
    cond = f"for inputs on the in_t grid: {r['input_format']}"
    assert cond in line and "(certified for every input" not in line
    assert cond in (out / "report.md").read_text() and cond in r["certificate_condition"]
    assert _run(["verify", out, *VERIFY_FAST]) == 0
    line = capsys.readouterr().out
    v = json.loads((out / "verify.json").read_text())
    assert v["input_on_grid"] is True and v["off_grid_max_error"] > 0 and v["off_grid_samples"] > 0
    assert "off-grid inputs (not covered by the certificate)" in line


def test_box_settings_state_every_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert (
        _run(["quantize", EXAMPLE, "--error", "1e-3", "--mode", "aster-sound", "--out", out, "--quiet"]) == 0
    )
    assert "(certified for every input in the box)" in capsys.readouterr().out
    assert _run(["verify", out, *VERIFY_FAST]) == 0
    v = json.loads((out / "verify.json").read_text())
    assert v["off_grid_max_error"] is None and "off-grid" not in capsys.readouterr().out


@pytest.mark.slow
def test_mountaincar_setting_c_off_grid_error_is_reported(
    shared_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Measured: 'error <= X (certified)' while off-grid inputs reach ~42x X on MountainCarNN."""
    out = tmp_path / "mc"
    model = shared_dir / "benchmarks" / "aster" / "MountainCarNN.scala"
    assert _run(["quantize", model, "--error", "1e-3", "--setting", "C", "--out", out, "--quiet"]) == 0
    assert "for inputs on the in_t grid" in capsys.readouterr().out
    assert _run(["verify", out, "--samples", "500", "--search-iters", "20", "--no-cpp", "--quiet"]) == 0
    v = json.loads((out / "verify.json").read_text())
    assert v["violations"] == 0  # on the grid the certificate holds
    assert v["off_grid_max_error"] > 5 * v["certified_error"]  # off the grid it does not, and we say so


def _edit_report(out: Path, **changes: object) -> None:
    """Hand-edit report.json and re-record it in the marker (as a tampering user could)."""
    path = out / "report.json"
    r = json.loads(path.read_text())
    r.update(changes)
    path.write_text(json.dumps(r))
    listed = read_marker(out) or {}
    import hashlib

    listed["report.json"] = hashlib.sha256(path.read_bytes()).hexdigest()
    write_marker(out, listed)


def test_verify_checks_top_level_certified_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Measured: a lowered top-level certified_error passed verify."""
    out = tmp_path / "out"
    assert (
        _run(["quantize", EXAMPLE, "--error", "1e-3", "--mode", "aster-sound", "--out", out, "--quiet"]) == 0
    )
    r = json.loads((out / "report.json").read_text())
    assert _run(["verify", out, *VERIFY_FAST]) == 0
    capsys.readouterr()
    _edit_report(out, certified_error=r["certified_error"] / 1000)
    assert _run(["verify", out, *VERIFY_FAST]) == 1
    line = capsys.readouterr().out
    v = json.loads((out / "verify.json").read_text())
    assert line.startswith("verify FAILED") and "REPORT INCONSISTENT" in line
    assert v["report_problems"] and v["passed"] is False
    # the lowered claim is what was tested: observed errors exceed it
    assert v["violations"] >= 1 and v["certified_error"] == pytest.approx(r["certified_error"] / 1000)
    # a raised top-level value is inconsistent too (not the maximum of the per-output values)
    _edit_report(out, certified_error=r["certified_error"] * 2)
    assert _run(["verify", out, *VERIFY_FAST]) == 1
    assert "REPORT INCONSISTENT" in capsys.readouterr().out


def test_violations_count_distinct_inputs_and_ratio_is_certified_over_observed() -> None:
    net, spec = load_model(EXAMPLE)
    layers = dense_chain(net)
    res = quantize(EXAMPLE, QuantizeOptions(error=1e-3, mode="aster-sound"), None)
    lo, hi = spec.input_lower, spec.input_upper
    tiny = np.full(net.n_outputs, 1e-12)  # every evaluated input violates this bound on every output
    from aster_ext.verify import VerifyBudget

    v = verify_program(res.program, layers, lo, hi, tiny, False, VerifyBudget(samples=50, search_iters=3))
    distinct = {tuple(x) for x in v.violation_inputs}
    assert v.violations == len(v.violation_inputs) == len(distinct) >= 1
    # several outputs exceed at each input, yet each input is counted once
    assert v.violations <= net.n_outputs + VerifyBudget().exact_candidates
    ok = verify_program(res.program, layers, lo, hi, np.asarray(res.certificate.output_bound), False,
                        VerifyBudget(samples=50, search_iters=3))  # fmt: skip
    assert ok.violations == 0
    assert ok.ratio == pytest.approx(ok.certified_error / ok.max_observed_error) and ok.ratio >= 1
    j = ok.to_json()
    assert j["ratio_definition"] == "certified_error / max_observed_error" and j["ratio"] == ok.ratio
    assert "ratio certified/observed" in ok.summary_line()


@pytest.mark.slow
def test_infinite_independent_certificate_is_explained(tmp_path: Path) -> None:
    """Measured: report.md printed 'Independent interval certificate: inf' unexplained."""
    out = tmp_path / "out"
    assert _run(["quantize", EXAMPLE, "--error", "1e-3", "--out", out, "--quiet"]) == 0
    r = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    assert r["mode"] == "refined"
    if r["independent_bound"] == float("inf"):
        assert r["independent_overflow_count"] >= 1 and r["independent_overflows"]
        assert "It is inf because" in md and r["independent_overflows"][0] in md
        assert "does not depend on it" in md
    else:
        assert "It is inf" not in md
    # the same text from a synthetic report either way
    finite = dict(r, independent_bound=0.5, independent_overflow_count=0, independent_overflows=[])
    assert "It is inf" not in render_markdown(finite)
    inf = dict(
        r, independent_bound=float("inf"), independent_overflow_count=3, independent_overflows=["ov A"]
    )
    text = render_markdown(inf)
    assert "It is inf because" in text and "3 place(s)" in text and "ov A" in text
    readme = (ROOT / "README.md").read_text()
    assert "Independent interval certificate" in readme and "inf" in readme


def test_large_input_box_is_summarised(tmp_path: Path) -> None:
    """Measured: report.md listed all 784 bounds of an MNIST-sized net."""
    lo, hi = [0.0] * 784, [1.0] * 784
    text = box_text(lo, hi)
    assert "784 inputs" in text and len(text) < 200
    lo2 = [float(i) / 1000 for i in range(784)]
    text = box_text(lo2, [v + 1 for v in lo2])
    assert "784 inputs" in text and len(text) < 200
    small = box_text([-1.0, -2.0], [1.0, 2.0])
    assert "[-1.0, -2.0]" in small  # small boxes are listed in full
    out = tmp_path / "out"
    assert (
        _run(["quantize", EXAMPLE, "--error", "1e-3", "--mode", "aster-sound", "--out", out, "--quiet"]) == 0
    )
    r = json.loads((out / "report.json").read_text())
    r.update(input_lower=lo2, input_upper=[v + 1 for v in lo2])
    md = render_markdown(r)
    box_line = next(ln for ln in md.splitlines() if ln.startswith("- Input box"))
    assert len(box_line) < 200 and len(lo2) > BOX_LISTED


def test_infeasible_target_names_what_works(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert _run(["quantize", EXAMPLE, "--error", "1e-7", "--out", out, "--quiet"]) == 2
    line = capsys.readouterr().err.strip()
    assert "what works:" in line and "setting B certifies down to" in line
    assert line.endswith("; --mode graph (no 32-bit width cap, up to 48 fractional bits) may certify it")
    suggested = line.split("--error ")[1].split()[0]
    assert float(suggested) > 1e-7
    # the suggested target really works in the same setting
    assert _run(["quantize", EXAMPLE, "--error", suggested, "--out", out, "--quiet"]) == 0
    # aster modes: the input quantisation of setting A is the obstacle; B/C/D are named
    assert _run(["quantize", EXAMPLE, "--error", "1e-7", "--mode", "aster-sound", "--out", tmp_path / "o2",
                 "--quiet"]) == 2  # fmt: skip
    assert "settings B (initLen 32) or C/D" in capsys.readouterr().err


def test_summary_line_from_report(tmp_path: Path) -> None:
    res = quantize(EXAMPLE, QuantizeOptions(error=1e-3, mode="aster"), None)
    assert "claimed by Aster, not sound" in summary_line(res.report)
    assert "in_t grid" not in summary_line(res.report)
    res_c = quantize(EXAMPLE, QuantizeOptions(error=1e-3, mode="aster", setting="C"), None)
    assert "claimed by Aster, not sound; for inputs on the in_t grid" in summary_line(res_c.report)
    r = dict(res.report, sound=True, solver=dict(res.report["solver"], time_limit_hit=True))
    assert "time limit" in summary_line(r) and "fallback" not in summary_line(r)


def test_progress_lines_and_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    # line mode (not a terminal): one line per phase, a 'done in' line only for long phases
    buf = io.StringIO()
    rep = ProgressReporter(buf)
    with phase(rep, "quick"):
        pass
    monkeypatch.setattr(progress_mod, "LONG_S", 0.0)
    with phase(rep, "slow one", total=3, limit_s=10) as h:
        h.advance()
    lines = buf.getvalue().splitlines()
    assert lines == ["[aster-ext] quick ...", "[aster-ext] slow one (limit 10 s) ...", lines[2]]
    assert lines[2].startswith("[aster-ext] slow one: done in")
    # analysis code reports its layer through the running phase
    buf = io.StringIO()
    quantize(EXAMPLE, QuantizeOptions(error=1e-3, mode="aster-sound"), None, ProgressReporter(buf))
    assert "interval certificate: interval certificate, layer 3/3" in buf.getvalue()
    monkeypatch.undo()
    # live mode (rich) runs on any stream; its rendering is not tested, only the line a long
    # phase leaves behind
    live = io.StringIO()
    monkeypatch.setattr(progress_mod, "LONG_S", 0.0)
    with phase(ProgressReporter(live, live=True), "live phase", total=2) as h:
        h.advance(2)
        progress_mod.note("step")
    monkeypatch.undo()
    assert "[aster-ext] live phase: done in" in live.getvalue()
    # a plain callable still works as the progress API
    got: list[str] = []
    with phase(got.append, "plain"):
        pass
    assert got == ["plain ..."]
    with phase(None, "silent") as h:
        h.advance()
    # the CLI: progress on stderr, nothing with --quiet
    out = tmp_path / "a"
    assert _run(["quantize", EXAMPLE, "--error", "1e-3", "--mode", "aster-sound", "--out", out]) == 0
    err = capsys.readouterr().err
    assert "ILP (HiGHS) (limit 60 s)" in err and "write C++ and reports" in err
    assert _run(["verify", out, "--samples", "50", "--search-iters", "2", "--no-cpp"]) == 0
    err = capsys.readouterr().err
    assert "adversarial search rounds" in err and "exact re-check" in err
    assert _run(["quantize", EXAMPLE, "--error", "1e-3", "--mode", "aster-sound", "--out", tmp_path / "b",
                 "--quiet"]) == 0  # fmt: skip
    assert _run(["verify", tmp_path / "b", *VERIFY_FAST]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_readme_commands_run_as_written(tmp_path: Path) -> None:
    """The README's main job (after the pip install) runs as written, in a fresh folder."""
    import os
    import shutil
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text()
    line = next(ln.strip() for ln in readme.splitlines() if "aster-ext quantize examples/" in ln)
    commands = [c.strip() for c in line.split("&&") if c.strip().startswith("aster-ext ")]
    assert [c.split()[1] for c in commands] == ["quantize", "verify"]
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for cmd in commands:
        argv = [sys.executable, "-m", "aster_ext.cli", *cmd.split()[1:]]
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (cmd, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr
    assert (tmp_path / "out" / "tiny" / "verify.json").is_file()
