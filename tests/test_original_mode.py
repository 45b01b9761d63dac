"""``quantize --mode aster-original`` and ``verify`` on its output, against a STAND-IN for the original.

``daisy.Main`` below is NOT the original Aster: it is a small Java class, compiled here with javac
into a fake ASTER_HOME, that behaves like the original's main as far as aster_ext sees it: it reads
the ``.scala`` file and command line it is given, prints SCIP-style ``dot_1 25 (obj:0)`` lines, a
"Total Error" claim of 0.9·ε (ε read from the file's ``ensuring``) times the length of a static
list ``daisy.opt.NNQuantizationPhase$.weightMaxList`` that grows on every run unless cleared, and
writes ``output/<object>.cpp`` in the original's style (ap_fixed arrays, ``fmax(0, ...)`` ReLUs,
``void nn1(ap_fixed<W,I> x_0, ..., ap_fixed<W,I> _result[1])``) for the tiny network below. It
prints through a PrintStream it caches on first use, as Scala's Console does. For ε >= 0.01 it
uses only 3 fractional bits while still claiming 0.9·ε (an unsound claim, as the original makes
on some networks); for ε < 1e-9 it reports "The solution is infeasible!" and throws.
Every JVM runs in a child process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aster_ext.bridge import parse_cpp_signature
from aster_ext.cli import main

ROOT = Path(__file__).resolve().parents[1]

TINY_SCALA = """\
import daisy.lang._
import Vector._

object TinyNN {

  def nn1(x: Vector): Vector = {
    require(lowerBounds(x, List(-1.0, -0.5)) &&
      upperBounds(x, List(1.0, 1.5)))

    val weights1 = Matrix(List(
      List(0.5, -0.25),
      List(0.75, 0.125)))

    val weights2 = Matrix(List(
      List(1.0, -0.5)))

    val bias1 = Vector(List(0.1, -0.2))
    val bias2 = Vector(List(0.3))

    val layer1 = relu(weights1 * x + bias1)
    val layer2 = linear(weights2 * layer1 + bias2)
    layer2

  } ensuring(res => res +/- 1e-3)
  // ensuring(res => res +/- 1e-5)

}
"""

STANDIN_MAIN = r"""
package daisy;

import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class Main {
    private static PrintStream console;  // cached on first use, like scala.Console

    static void say(String s) {
        if (console == null) console = System.out;
        console.println(s);
    }

    public static void main(String[] args) throws Exception {
        String file = null;
        int layers = -1;
        for (String a : args) {
            if (!a.startsWith("--")) file = a;
            if (a.startsWith("--layer=")) layers = Integer.parseInt(a.substring(8));
        }
        String text = new String(Files.readAllBytes(Paths.get(file)), "UTF-8");
        String active = "\\n\\s*\\}\\s*ensuring\\(res => res \\+/- ([0-9.eE+-]+)\\)";
        Matcher e = Pattern.compile(active).matcher(text);
        Matcher o = Pattern.compile("object\\s+(\\w+)").matcher(text);
        if (!e.find() || !o.find() || layers != 2) throw new IllegalArgumentException("stand-in: bad input");
        double eps = Double.parseDouble(e.group(1));
        daisy.opt.NNQuantizationPhase$.MODULE$.weightMaxList().add(1.0);
        int kept = daisy.opt.NNQuantizationPhase$.MODULE$.weightMaxList().size();
        say("[  Info  ] weight maxima kept: " + kept);
        if (eps < 1e-9) {
            say("[ Error  ] The solution is infeasible! Exiting...");
            throw new RuntimeException("stand-in fatal error");
        }
        int f = eps >= 0.01 ? 3 : (int) Math.ceil(-Math.log(eps) / Math.log(2)) + 6;
        new PrintWriter("model.lp").append("\\ stand-in LP\n").close();
        String w = "ap_fixed<" + (f + 2) + ",2>", a = "ap_fixed<" + (f + 4) + ",4>";
        String in = "ap_fixed<" + (f + 2) + ",2>";
        StringBuilder c = new StringBuilder();
        c.append("#include <hls_math.h>\n#include <ap_fixed.h>\n\n");
        c.append("void nn1(" + in + " x_0, " + in + " x_1, " + a + " _result[1]) {\n");
        c.append("#pragma HLS PIPELINE\n");
        c.append("  " + w + " weights1[2][2] = {{0.5,-0.25},{0.75,0.125}};\n");
        c.append("  " + w + " bias1[2] = {0.1,-0.2};\n");
        c.append("  " + w + " weights2[1][2] = {{1.0,-0.5}};\n");
        c.append("  " + w + " bias2[1] = {0.3};\n");
        c.append("  " + a + " layer1[2];\n  " + a + " _dot_tmp1[2];\n");
        c.append("  for (int i = 0; i < 2; i++) {\n");
        c.append("    _dot_tmp1[0] = weights1[i][0] * x_0;\n    _dot_tmp1[1] = weights1[i][1] * x_1;\n");
        c.append("    " + a + " _bias_tmp = bias1[i];\n");
        c.append("    for (int k = 0; k < 2; k++) { _bias_tmp = _bias_tmp + _dot_tmp1[k]; }\n");
        c.append("    layer1[i] = fmax(0, _bias_tmp);\n  }\n");
        c.append("  " + a + " layer2[1];\n  " + a + " _dot_tmp2[2];\n");
        c.append("  for (int i = 0; i < 1; i++) {\n");
        c.append("    for (int j = 0; j < 2; j++) { _dot_tmp2[j] = weights2[i][j] * layer1[j]; }\n");
        c.append("    " + a + " _bias_tmp = bias2[i];\n");
        c.append("    for (int k = 0; k < 2; k++) { _bias_tmp = _bias_tmp + _dot_tmp2[k]; }\n");
        c.append("    layer2[i] = _bias_tmp;\n  }\n");
        c.append("  _result[0] = layer2[0];\n}\n");
        String dir = System.getProperty("user.dir") + "/output/";
        try (PrintWriter out = new PrintWriter(dir + o.group(1) + ".cpp")) { out.print(c); }
        say("objective value:                              " + (100 * f));
        say("dot_1                                              " + f + " \t(obj:0)");
        say("bias_1                                             " + f + " \t(obj:0)");
        say("twoPowerPiDot_1                                    0.0001 \t(obj:0)");
        say("dot_2                                              " + f + " \t(obj:0)");
        say("bias_2                                             " + f + " \t(obj:0)");
        say("[  Info  ] Total Error: " + (0.9 * eps * kept));
        say("[  Info  ] According to Daisy's cost: " + (1000 * f));
        System.err.println("stand-in: done");
    }
}
"""

STANDIN_PHASE = r"""
package daisy.opt;

import java.util.ArrayList;

public final class NNQuantizationPhase$ {
    public static final NNQuantizationPhase$ MODULE$ = new NNQuantizationPhase$();
    private final ArrayList<Double> weightMaxList = new ArrayList<>();
    private NNQuantizationPhase$() {}
    public ArrayList<Double> weightMaxList() { return weightMaxList; }
}
"""


def _has_ap_types() -> bool:
    import importlib.util

    return shutil.which("g++") is not None and importlib.util.find_spec("hls4ml") is not None


@pytest.fixture(scope="module")
def standin_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake ASTER_HOME holding the compiled stand-in classes."""
    if shutil.which("javac") is None:
        pytest.skip("javac not found: the stand-in for the original Aster cannot be compiled")
    pytest.importorskip("jpype", reason="JPype is not installed (pip install JPype1)")
    root = tmp_path_factory.mktemp("standin")
    src = root / "src"
    (src / "daisy" / "opt").mkdir(parents=True)
    (src / "daisy" / "Main.java").write_text(STANDIN_MAIN)
    (src / "daisy" / "opt" / "NNQuantizationPhase$.java").write_text(STANDIN_PHASE)
    home = root / "aster-home"
    classes = home / "target" / "scala-2.12" / "classes"
    classes.mkdir(parents=True)
    subprocess.run(["javac", "-d", str(classes), *map(str, src.rglob("*.java"))], check=True, timeout=180)
    return home


def _cli(args: list[str], home: Path | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}
    if home is not None:
        env["ASTER_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "aster_ext.cli", *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=cwd)  # fmt: skip


def test_without_aster_home_one_line_error(tmp_path: Path, monkeypatch, capsys) -> None:
    model = tmp_path / "TinyNN.scala"
    model.write_text(TINY_SCALA)
    monkeypatch.delenv("ASTER_HOME", raising=False)
    out = tmp_path / "out"
    rc = main(["quantize", str(model), "--mode", "aster-original", "--error", "1e-3", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "ASTER_HOME" in err
    assert not out.exists()


@pytest.mark.slow
def test_quantize_and_verify_through_the_standin(standin_home: Path, tmp_path: Path) -> None:
    if not _has_ap_types():
        pytest.skip("g++ or the ap_types headers (hls4ml wheel) missing: verify cannot compile the C++")
    model = tmp_path / "TinyNN.scala"
    model.write_text(TINY_SCALA)
    out = tmp_path / "out_ok"
    q = _cli(["quantize", str(model), "--mode", "aster-original", "--error", "2e-3", "--out", str(out),
              "--quiet"], standin_home, tmp_path)  # fmt: skip
    assert q.returncode == 0, q.stderr
    rep = json.loads((out / "report.json").read_text())
    f = int(np.ceil(-np.log2(2e-3))) + 6  # the stand-in's choice for ε = 2e-3
    assert rep["mode"] == "aster-original" and rep["sound"] is False
    # 2e-3 reached the tool through the rewritten ensuring (the file says 1e-3); one run kept one maximum
    assert rep["claimed_error"] == pytest.approx(0.9 * 2e-3) and rep["target_error"] == 2e-3
    assert "res +/- 0.002)" in (out / "TinyNN.original-input.scala").read_text()
    assert "// ensuring(res => res +/- 1e-5)" in (out / "TinyNN.original-input.scala").read_text()
    assert rep["formats"] == [{"layer": k, "dot_frac_bits": f, "bias_frac_bits": f} for k in (1, 2)]
    assert rep["objective"] == 100 * f and rep["daisy_area"] == 1000 * f
    assert rep["input_formats"] == [f"ap_fixed<{f + 2},2>"] * 2
    assert rep["output_format"] == f"ap_fixed<{f + 4},4>"
    assert "--layer=2" in rep["original"]["args"] and "--initLen=20" in rep["original"]["args"]
    assert parse_cpp_signature((out / "TinyNN.cpp").read_text()).name == "nn1"
    assert (out / "model.lp").is_file() and "stand-in: done" in (out / "original_stderr.txt").read_text()
    assert model.read_text() == TINY_SCALA  # the user's model is untouched

    v = _cli(["verify", str(out), "--samples", "300", "--quiet"], None, tmp_path)
    assert v.returncode == 0, v.stdout + v.stderr
    res = json.loads((out / "verify.json").read_text())
    assert res["mode"] == "aster-original" and res["passed"] and res["violations"] == 0
    assert res["samples"] == 300 + 4 + 1  # random, the 4 corners, the centre
    assert 0 < res["max_observed_error"] <= rep["claimed_error"]

    # a second output in the same folder needs --force; the user's files are never replaced
    again = _cli(["quantize", str(model), "--mode", "aster-original", "--error", "2e-3", "--out", str(out)],
                 standin_home, tmp_path)  # fmt: skip
    assert again.returncode == 2 and "--force" in again.stderr


@pytest.mark.slow
def test_unsound_claim_is_reported_as_violations(standin_home: Path, tmp_path: Path) -> None:
    if not _has_ap_types():
        pytest.skip("g++ or the ap_types headers (hls4ml wheel) missing: verify cannot compile the C++")
    model = tmp_path / "TinyNN.scala"
    model.write_text(TINY_SCALA)
    out = tmp_path / "out_bad"
    q = _cli(["quantize", str(model), "--mode", "aster-original", "--error", "0.05", "--setting", "C",
              "--out", str(out), "--quiet"], standin_home, tmp_path)  # fmt: skip
    assert q.returncode == 0, q.stderr
    v = _cli(["verify", str(out), "--samples", "200", "--quiet"], None, tmp_path)
    assert v.returncode == 1, v.stdout + v.stderr
    assert "CLAIM VIOLATED" in v.stdout
    res = json.loads((out / "verify.json").read_text())
    assert res["violations"] > 0 and res["max_observed_error"] > res["certified_error"]
    assert res["input_on_grid"]  # setting C: noInitError, inputs on the 2^-3 grid
    assert all(float(v * 8).is_integer() for row in res["violation_inputs"] for v in row)


@pytest.mark.slow
def test_infeasible_run_writes_nothing(standin_home: Path, tmp_path: Path) -> None:
    model = tmp_path / "TinyNN.scala"
    model.write_text(TINY_SCALA)
    out = tmp_path / "out_inf"
    q = _cli(["quantize", str(model), "--mode", "aster-original", "--error", "1e-12", "--out", str(out),
              "--quiet"], standin_home, tmp_path)  # fmt: skip
    assert q.returncode == 2 and "infeasible" in q.stderr and len(q.stderr.strip().splitlines()) == 1
    assert not out.exists()


RERUN = """
import json, sys
from pathlib import Path
from aster_ext.original import quantize_original
model, base = Path(sys.argv[1]), Path(sys.argv[2])
claims = [quantize_original(model, 1e-3, "A", base / f"run{i}")["claimed_error"] for i in range(2)]
print(json.dumps(claims))
"""


@pytest.mark.slow
def test_two_runs_in_one_process_do_not_leak_state(standin_home: Path, tmp_path: Path) -> None:
    """The stand-in's claim grows with its static list and it prints through a stream it cached in
    the first run: equal claims show the default reset field is cleared and the second run's output
    is captured; with the reset switched off (ASTER_RESET_FIELDS empty) the leak shows."""
    model = tmp_path / "TinyNN.scala"
    model.write_text(TINY_SCALA)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "ASTER_HOME": str(standin_home)}
    claims = []
    for k, extra in enumerate(({}, {"ASTER_RESET_FIELDS": ""})):
        base = tmp_path / f"case{k}"
        p = subprocess.run([sys.executable, "-c", RERUN, str(model), str(base)], capture_output=True,
                           text=True, timeout=600, env={**env, **extra}, cwd=tmp_path)  # fmt: skip
        assert p.returncode == 0, p.stderr
        claims.append(json.loads(p.stdout.strip().splitlines()[-1]))
    assert claims[0] == [pytest.approx(0.9e-3)] * 2
    assert claims[1] == [pytest.approx(0.9e-3), pytest.approx(1.8e-3)]


@pytest.mark.slow
def test_adapter_runs_the_original_calling_convention(tmp_path: Path) -> None:
    """Inputs are converted to their ap_fixed type as a test bench would (truncation, wrap-around),
    fmax(0, v) is the exact maximum, outputs come back as raw integers of the output format."""
    if not _has_ap_types():
        pytest.skip("g++ or the ap_types headers (hls4ml wheel) missing")
    from aster_ext.original import run_cpp

    cpp = tmp_path / "Tiny.cpp"
    cpp.write_text(
        "#include <hls_math.h>\n#include <ap_fixed.h>\n"
        "void nn1(ap_fixed<8,3> x_0, ap_fixed<10,4> _result[2]) {\n"
        "  _result[0] = fmax(0, x_0);\n  _result[1] = x_0 * 2;\n}\n"
    )
    sig = parse_cpp_signature(cpp.read_text())
    x = np.array([[0.3], [-1.5], [2.75], [5.0]])
    # x_0 = floor(32 x) / 32 wrapped to [-4, 4): 9/32, -48/32, 88/32, (160 - 256)/32; outputs in 1/64
    assert run_cpp(cpp, sig, x, tmp_path) == [[18, 36], [0, -192], [176, 352], [0, -384]]


def test_parser_reads_scip_lines_and_daisys_cost_only() -> None:
    from aster_ext.bridge import parse_original_output

    text = (
        "objective value:     2394826\ndot_1      25 \t(obj:0)\nbias_1     29 \t(obj:0)\n"
        "twoPowerPiDot_1     2.98e-08 \t(obj:0)\n[  Info  ] Total Error: 9.99e-4\nArea cost: 17\n"
    )
    res = parse_original_output(text)
    assert (res.objective, res.dot_bits, res.bias_bits, res.claimed_error) == (2394826, [25], [29], 9.99e-4)
    assert res.daisy_area is None  # "Area cost" is the code generator's other cost function
    assert parse_original_output(text + "According to Daisy's cost: 4200038\n").daisy_area == 4200038


@pytest.mark.skipif(
    not os.environ.get("ASTER_HOME"), reason="optional: needs a user's build of the original Aster"
)
def test_real_original_on_smallnn(shared_dir: Path, tmp_path: Path) -> None:
    """With a real build: quantize SmallNN through it and check its claim (violations are allowed:
    the original is not sound; the run must produce a claim and a verdict)."""
    model = shared_dir / "benchmarks" / "aster" / "SmallNN.scala"
    out = tmp_path / "out"
    q = _cli(["quantize", str(model), "--mode", "aster-original", "--error", "1e-3", "--out", str(out),
              "--quiet"], Path(os.environ["ASTER_HOME"]), tmp_path)  # fmt: skip
    assert q.returncode == 0, q.stderr
    v = _cli(["verify", str(out), "--quiet"], None, tmp_path)
    assert v.returncode in (0, 1), v.stderr
    assert json.loads((out / "verify.json").read_text())["mode"] == "aster-original"


@pytest.mark.slow
def test_sweep_runs_the_original_as_a_fourth_mode(standin_home: Path, tmp_path: Path) -> None:
    if not _has_ap_types():
        pytest.skip("g++ or the ap_types headers (hls4ml wheel) missing: verify cannot compile the C++")
    import csv

    (tmp_path / "TinyNN.scala").write_text(TINY_SCALA)
    grid = tmp_path / "grid.toml"
    grid.write_text(
        'models = ["TinyNN.scala"]\neps = [2e-3, 0.05]\nsettings = ["A"]\nmodes = ["aster-original"]\n'
        "[verify]\nsamples = 100\n"
    )
    s = _cli(["sweep", str(grid), "--out", str(tmp_path / "res"), "--workers", "1", "--quiet"],
             standin_home, tmp_path)  # fmt: skip
    assert s.returncode == 0, s.stdout + s.stderr
    with open(tmp_path / "res" / "results.csv") as fh:
        rows = {float(r["eps"]): r for r in csv.DictReader(fh)}
    assert sorted(rows) == [2e-3, 0.05]
    assert all(r["mode"] == "aster-original" and r["status"] == "ok" for r in rows.values())
    assert float(rows[2e-3]["claimed"]) == pytest.approx(0.9 * 2e-3) and int(rows[2e-3]["violations"]) == 0
    bad = rows[0.05]
    assert int(bad["violations"]) > 0 and float(bad["max_observed"]) > float(bad["claimed"])


def test_error_target_rewrite_touches_only_the_active_ensuring() -> None:
    from aster_ext.errors import UserError
    from aster_ext.original import with_error_target

    text = with_error_target(TINY_SCALA, 2.5e-4)
    assert "} ensuring(res => res +/- 0.00025)" in text and "// ensuring(res => res +/- 1e-5)" in text
    assert text.replace("0.00025", "1e-3") == TINY_SCALA
    with pytest.raises(UserError, match="found 0"):
        with_error_target(TINY_SCALA.replace("} ensuring", "} // ensuring"), 1e-3)


@pytest.mark.slow
def test_a_users_workdir_is_never_removed(standin_home: Path, tmp_path: Path) -> None:
    """Only the temporary working folder the tool makes itself is deleted after a run; a folder
    the user names with ASTER_WORKDIR stays, with what was in it."""
    model = tmp_path / "TinyNN.scala"
    model.write_text(TINY_SCALA)
    work = tmp_path / "my-aster-work"
    work.mkdir()
    (work / "keep.txt").write_text("user data")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT),
           "ASTER_HOME": str(standin_home), "ASTER_WORKDIR": str(work)}  # fmt: skip
    out = tmp_path / "o"
    args = ["quantize", str(model), "--mode", "aster-original", "--error", "2e-3", "--out", str(out)]
    q = subprocess.run([sys.executable, "-m", "aster_ext.cli", *args, "--quiet"], capture_output=True,
                       text=True, timeout=600, env=env, cwd=tmp_path)  # fmt: skip
    assert q.returncode == 0, q.stderr
    assert (work / "keep.txt").read_text() == "user data"
