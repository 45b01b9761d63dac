"""The JPype bridge's own mechanics against a STAND-IN for the original Aster tool.

``FakeAster`` below is not the original: it is a small Java class, compiled here with javac, that
prints its report in the format ``aster_ext.bridge`` parses, writes a C++ file with the original's
calling convention into ``output/`` of its working folder, recurses deeper than a default thread
stack allows, and keeps a static list that grows on every run (like the original's list of weight
maxima). The JVM runs in a child process, so this test's JVM never mixes with others.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aster_ext.bridge import parse_cpp_signature, parse_original_output
from aster_ext.errors import UserError

ROOT = Path(__file__).resolve().parents[1]

STANDIN = r"""
package standin;

import java.io.File;
import java.io.PrintWriter;
import java.util.ArrayList;

public class FakeAster {
    public static final ArrayList<Double> weightMaxima = new ArrayList<>();

    static int depth(int n) { return n == 0 ? 0 : 1 + depth(n - 1); }

    public static void main(String[] args) throws Exception {
        weightMaxima.add(1.5);
        FakePhase$.MODULE$.maxima().add(2.5);
        int phase = FakePhase$.MODULE$.maxima().size();
        System.out.println("weight maxima kept: " + weightMaxima.size() + " " + phase);
        System.out.println("deep recursion: " + depth(Integer.parseInt(args[1])));
        new File("output").mkdirs();
        try (PrintWriter w = new PrintWriter("output/" + args[0] + ".cpp")) {
            w.println("#include <ap_fixed.h>");
            w.println("void nn1(ap_fixed<16,5> x_0, ap_fixed<16,5> x_1, ap_fixed<24,8> _result[3]) {}");
        }
        System.out.println("Objective value: 2394826.0");
        System.out.println("dot_1 = 25");
        System.out.println("bias_1 = 31");
        System.out.println("dot_2 = 22");
        System.out.println("bias_2 = 29");
        System.out.println("Total Error: 9.99991e-4");
        System.out.println("Daisy area cost: 4391966");
        System.err.println("stand-in warning");
    }
}
"""

SCALA_OBJECT = r"""
package standin;

import java.util.ArrayList;

public final class FakePhase$ {
    public static final FakePhase$ MODULE$ = new FakePhase$();
    private final ArrayList<Double> maxima = new ArrayList<>();
    private FakePhase$() {}
    public ArrayList<Double> maxima() { return maxima; }
}
"""

DRIVER = r"""
import json, os, sys
from pathlib import Path
from aster_ext.bridge import aster_classpath, find_aster_home, jvm_options, run_main
home = find_aster_home()
cp = aster_classpath(home)
work = Path(sys.argv[1])
cwd = os.getcwd()
reset = ("standin.FakeAster.weightMaxima", "standin.FakePhase$.maxima")
runs = [
    run_main("standin.FakeAster", ["net1", "400000"], cp, work, reset),
    run_main("standin.FakeAster", ["net2", "400000"], cp, work),
    run_main("standin.FakeAster", ["net3", "400000"], cp, work, reset),
]
print(json.dumps({
    "stdout": [r.stdout for r in runs], "stderr": [r.stderr for r in runs],
    "cleared": [r.cleared for r in runs], "jvm": jvm_options(), "cwd_kept": os.getcwd() == cwd,
}))
"""


def _javac(tmp_path: Path) -> Path:
    if shutil.which("javac") is None:
        pytest.skip("javac not found: the stand-in Java class cannot be compiled")
    pytest.importorskip("jpype")
    src = tmp_path / "src" / "standin"
    src.mkdir(parents=True)
    (src / "FakeAster.java").write_text(STANDIN)
    (src / "FakePhase$.java").write_text(SCALA_OBJECT)
    home = tmp_path / "aster-home"
    classes = home / "target" / "scala-2.12" / "classes"
    classes.mkdir(parents=True)
    subprocess.run(["javac", "-d", str(classes), *map(str, src.glob("*.java"))], check=True, timeout=120)
    return home


@pytest.mark.slow
def test_bridge_runs_the_standin_in_process(tmp_path: Path) -> None:
    home = _javac(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    env = {"ASTER_HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(work)], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "-Xss1G" in got["jvm"]
    # the static lists are emptied before runs 1 and 3; run 2 (no reset) sees run 1's entries
    kept = [line for out in got["stdout"] for line in out.splitlines() if line.startswith("weight maxima")]
    assert kept == ["weight maxima kept: 1 1", "weight maxima kept: 2 2", "weight maxima kept: 1 1"]
    assert got["cleared"][1] == [] and len(got["cleared"][2]) == 2
    # 400000 nested calls overflow a default stack; the bridge's 1 GiB thread stack holds them
    assert all("deep recursion: 400000" in out for out in got["stdout"])
    assert all(err.strip() == "stand-in warning" for err in got["stderr"])
    assert got["cwd_kept"]
    # relative paths resolved against the working folder given to the bridge
    assert sorted(p.name for p in (work / "output").iterdir()) == ["net1.cpp", "net2.cpp", "net3.cpp"]
    res = parse_original_output(got["stdout"][0])
    assert (res.status, res.objective, res.dot_bits, res.bias_bits) == ("ok", 2394826.0, [25, 22], [31, 29])
    assert res.claimed_error == 9.99991e-4 and res.daisy_area == 4391966
    sig = parse_cpp_signature((work / "output" / "net1.cpp").read_text())
    assert (sig.name, sig.inputs, sig.output, sig.n_outputs) == ("nn1", [(16, 5), (16, 5)], (24, 8), 3)


@pytest.mark.slow
def test_unknown_reset_field_and_class_are_clear_errors(tmp_path: Path) -> None:
    home = _javac(tmp_path)
    driver = (
        "from aster_ext.bridge import aster_classpath, run_main\n"
        "from aster_ext.errors import UserError\n"
        f"cp = aster_classpath(__import__('pathlib').Path({str(home)!r}))\n"
        "for main, reset in (('standin.Nope', ()), ('standin.FakeAster', ('standin.FakeAster.nope',))):\n"
        "    try:\n"
        "        run_main(main, ['n', '1'], cp, __import__('pathlib').Path('.'), reset)\n"
        "    except UserError as exc:\n"
        "        print('UserError', exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("UserError")]
    assert len(lines) == 2, proc.stderr
    assert "class standin.Nope not found" in lines[0] and "'standin.FakeAster.nope' not found" in lines[1]


def test_parse_output_infeasible_unparsed_and_inconsistent() -> None:
    assert parse_original_output("...\nThe solution is infeasible!\n").status == "infeasible"
    assert parse_original_output("nothing useful").status == "unparsed"
    with pytest.raises(UserError, match="dot/bias bits"):
        parse_original_output("dot_1 = 3\ndot_3 = 4\nbias_1 = 1\nbias_3 = 2\nTotal Error: 1e-3")


def test_parse_cpp_signature_refuses_other_conventions() -> None:
    with pytest.raises(UserError, match="_result"):
        parse_cpp_signature("void nn1(const float x[2], float y[3]) {}")
    two = "void helper(ap_fixed<8,2> a) {}\nvoid nn1(ap_fixed<10,3> x_0, ap_fixed<12,4> _result[1]) {}"
    assert parse_cpp_signature(two).name == "nn1"
