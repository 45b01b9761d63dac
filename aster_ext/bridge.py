"""Optional JPype bridge to a user's existing build of the original (Scala) Aster tool.

The original cannot be vendored or built here (its build needs Maven Central and CPLEX), so
this module only *drives* a build the user already has, found through ``ASTER_HOME``: it puts
the build's jars and class folders on a JVM class path, starts one JVM per process with the
options the tool needs (a deep thread stack: its recursive phases overflow the default), and runs
the tool's main class in-process, capturing what it prints on stdout and stderr.

Between runs it clears static state that would leak from one run into the next: each entry of
``reset_fields`` names a static field (``pkg.Class.field``) or a field of a Scala ``object``
(``pkg.Object$.field``, reached through its ``MODULE$`` instance) holding a collection; the
collection is emptied with ``clear()``. By default that is the original's NN quantisation phase's
list of weight maxima (``DEFAULT_RESET_FIELDS``), which otherwise grows from run to run;
``ASTER_RESET_FIELDS`` (comma-separated) replaces the list from the environment. The working
folder is the one the tool reads and writes relative paths against (``run_original``: ``ASTER_HOME``;
``aster_ext.original``: a fresh one per run); both the process's current directory and Java's
``user.dir`` are set to it for the run and restored after.

Output capture: the JVM's ``System.out``/``System.err`` are pointed at one pair of in-memory streams
per JVM, reset before each run. They stay the same objects from run to run because Scala's
``Console`` (the original prints through it) keeps the ``System.out`` it saw when it was first
used; fresh streams per run would leave a second run's output in the first run's buffer. A run
whose main method throws (the original ends an infeasible run with an exception) still returns
what it printed, with the exception's text in ``OriginalRun.failure``.

``parse_original_output`` reads the tool's report lines (labelled values: the solver objective,
``dot_i``/``bias_i`` fractional bits per layer, "Total Error", Daisy's cost, "infeasible");
``parse_cpp_signature`` reads the calling convention of its generated C++
(``void nn1(ap_fixed<W,I> x_0, ..., ap_fixed<W,I> _result[m])``). These formats are written from
the tool's documented output names; no build of the original was available to check them against,
so the tests use a stand-in Java class printing this format.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError

DEFAULT_MAIN_CLASS = "daisy.Main"
#: JVM options the original needs: a 1 GiB thread stack for its deeply recursive phases
DEFAULT_JVM_OPTIONS = ("-Xss1G",)
#: static state of the original cleared before each run: its NN quantisation phase (a Scala object)
#: appends every run's per-layer weight maxima to this list and reads it by layer index
DEFAULT_RESET_FIELDS = ("daisy.opt.NNQuantizationPhase$.weightMaxList",)


def find_aster_home(env: dict[str, str] | None = None) -> Path:
    """The directory named by ASTER_HOME (a built checkout of the original tool)."""
    value = (env if env is not None else os.environ).get("ASTER_HOME")
    if not value:
        raise UserError("ASTER_HOME is not set: point it at a built copy of the original Aster tool")
    home = Path(value)
    if not home.is_dir():
        raise UserError(f"ASTER_HOME={home} is not a directory")
    return home


def aster_classpath(home: Path) -> list[str]:
    """Jars and compiled class folders of an sbt build: target/scala-*/, lib/, lib_managed/."""
    entries: list[Path] = []
    for pattern in ("target/scala-*/*.jar", "lib/*.jar", "lib_managed/**/*.jar", "target/pack/lib/*.jar"):
        entries += sorted(home.glob(pattern))
    entries += sorted(p for p in home.glob("target/scala-*/classes") if p.is_dir())
    if not entries:
        raise UserError(
            f"ASTER_HOME={home} holds no built jars or classes (expected target/scala-*/classes or jars "
            "under lib/): build the original tool there first"
        )
    return [str(p) for p in entries]


def reset_fields_from_env(env: dict[str, str] | None = None) -> tuple[str, ...]:
    """``ASTER_RESET_FIELDS`` split at commas, or ``DEFAULT_RESET_FIELDS`` when it is not set
    (set it empty to clear nothing)."""
    source = env if env is not None else os.environ
    if "ASTER_RESET_FIELDS" not in source:
        return DEFAULT_RESET_FIELDS
    return tuple(v.strip() for v in source["ASTER_RESET_FIELDS"].split(",") if v.strip())


def start_jvm(classpath: list[str], options: tuple[str, ...] = DEFAULT_JVM_OPTIONS) -> None:
    """Start the process's JVM with ``classpath`` and ``options``; a JVM started before must have
    been started with the same class path (a JVM cannot be restarted in one process)."""
    import jpype

    if jpype.isJVMStarted():
        runtime = jpype.JClass("java.lang.System").getProperty("java.class.path")
        missing = [c for c in classpath if c not in str(runtime).split(os.pathsep)]
        if missing:
            raise UserError(
                f"the JVM of this process was started without {missing[0]}; run the original tool in a "
                "fresh process"
            )
        return
    jpype.startJVM(*options, classpath=classpath, convertStrings=True)


def jvm_options() -> list[str]:
    """Input arguments of the running JVM (for checking that the options took effect)."""
    import jpype

    bean = jpype.JClass("java.lang.management.ManagementFactory").getRuntimeMXBean()
    return [str(a) for a in bean.getInputArguments()]


def clear_static_state(specs: tuple[str, ...]) -> list[str]:
    """Empty the collections named by ``specs`` (see the module docstring); returns what was cleared."""
    import jpype

    cleared = []
    for spec in specs:
        cls_name, _, field_name = spec.rpartition(".")
        if not cls_name or not field_name:
            raise UserError(f"reset field {spec!r}: expected pkg.Class.field")
        try:
            cls = jpype.JClass("java.lang.Class").forName(cls_name)
            fld = cls.getDeclaredField(field_name)
        except Exception as exc:  # java exceptions surface as Python ones
            raise UserError(f"reset field {spec!r} not found in the original tool: {exc}") from exc
        fld.setAccessible(True)
        modifiers = jpype.JClass("java.lang.reflect.Modifier")
        owner = None
        if not modifiers.isStatic(fld.getModifiers()):
            owner = cls.getField("MODULE$").get(None)  # a Scala object: its single instance
        value = fld.get(owner)
        if value is None or not hasattr(value, "clear"):
            raise UserError(f"reset field {spec!r} holds no collection with clear()")
        value.clear()
        cleared.append(spec)
    return cleared


@dataclass
class OriginalRun:
    """What one in-process run of the original printed, and where it ran."""

    stdout: str
    stderr: str
    workdir: Path
    cleared: list[str] = field(default_factory=list)
    failure: str | None = None  # the exception main threw, if it threw (its output is kept above)


_CAPTURE: list[object] = []  # per JVM: [out buffer, err buffer, out stream, err stream] (module docstring)


def _capture_streams() -> tuple[object, object, object, object]:
    """This JVM's capture buffers and their print streams, created once, emptied for a new run."""
    import jpype

    if not _CAPTURE:
        buffers = [jpype.JClass("java.io.ByteArrayOutputStream")() for _ in range(2)]
        streams = [jpype.JClass("java.io.PrintStream")(b, True, "UTF-8") for b in buffers]
        _CAPTURE.extend([*buffers, *streams])
    for buffer in _CAPTURE[:2]:
        buffer.reset()  # type: ignore[attr-defined]
    return tuple(_CAPTURE)  # type: ignore[return-value]


def run_main(
    main_class: str,
    args: list[str],
    classpath: list[str],
    workdir: Path,
    reset_fields: tuple[str, ...] = (),
    options: tuple[str, ...] = DEFAULT_JVM_OPTIONS,
) -> OriginalRun:
    """``main_class.main(args)`` in this process's JVM, run in ``workdir``, stdout/stderr captured;
    ``reset_fields`` are cleared first so no state of an earlier run leaks into this one. An
    exception thrown by main is returned in ``failure`` (with the output printed until then)."""
    import jpype

    start_jvm(classpath, options)
    try:
        main = jpype.JClass(main_class)
    except Exception as exc:
        where = os.pathsep.join(classpath)
        raise UserError(f"class {main_class} not found on the class path {where}") from exc
    cleared = clear_static_state(reset_fields)
    system = jpype.JClass("java.lang.System")
    out_buf, err_buf, out_stream, err_stream = _capture_streams()
    old_out, old_err, old_dir = system.out, system.err, system.getProperty("user.dir")
    cwd = os.getcwd()
    system.setOut(out_stream)
    system.setErr(err_stream)
    failure = None
    try:
        os.chdir(workdir)
        system.setProperty("user.dir", str(Path(workdir).resolve()))
        _call_on_deep_stack(lambda: main.main(jpype.JArray(jpype.JString)(args)), _stack_bytes(options))
    except Exception as exc:  # java exceptions surface as Python ones
        failure = f"{type(exc).__name__}: {exc}"
    finally:
        os.chdir(cwd)
        system.setProperty("user.dir", old_dir)
        system.setOut(old_out)
        system.setErr(old_err)
    out, err = (str(b.toString("UTF-8")) for b in (out_buf, err_buf))  # type: ignore[attr-defined]
    return OriginalRun(out, err, Path(workdir), cleared, failure)


def _stack_bytes(options: tuple[str, ...]) -> int:
    """The -Xss size of ``options`` in bytes (default 1 GiB)."""
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    for opt in options:
        m = re.fullmatch(r"-Xss(\d+)([kKmMgG]?)", opt)
        if m:
            return int(m.group(1)) * units[m.group(2).lower()]
    return 1 << 30


def _call_on_deep_stack(call: object, stack_bytes: int) -> None:
    """Run ``call`` on a new Java thread with a ``stack_bytes`` stack and wait for it. (-Xss sizes the
    JVM's own threads only; the Python thread that calls into Java keeps its small native stack.)"""
    import jpype

    failure: list[BaseException] = []

    @jpype.JImplements("java.lang.Runnable")
    class _Body:
        @jpype.JOverride
        def run(self) -> None:
            try:
                call()  # type: ignore[operator]
            except BaseException as exc:  # re-raised in the calling thread
                failure.append(exc)

    thread = jpype.JClass("java.lang.Thread")(None, _Body(), "aster-original", stack_bytes)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def run_original(args: list[str], home: Path | None = None, main_class: str = DEFAULT_MAIN_CLASS) -> str:
    """Run ``main_class.main(args)`` of the user's build in an embedded JVM; returns its stdout."""
    root = home if home is not None else find_aster_home()
    run = run_main(main_class, args, aster_classpath(root), root, reset_fields_from_env())
    if run.failure is not None:
        raise UserError(f"the original tool failed: {run.failure}")
    return run.stdout


def original_args(scala_file: Path, n_layers: int, min_len: int, max_len: int, init_len: int,
                  no_init_error: bool) -> list[str]:  # fmt: skip
    """The original's command line for one network, as its run scripts of settings A-D write it:
    NN quantisation with 32-bit fixed point, ``n_layers`` layers, fractional bits in
    [min_len, max_len], inputs with ``init_len`` fractional bits (or exact: ``--noInitError``),
    ap_fixed C++ (written to ``output/<object name>.cpp`` of the working folder)."""
    return [
        "--qnn",
        "--qnn-quant",
        "--precision=Fixed32",
        f"--layer={n_layers}",
        f"--minLen={min_len}",
        f"--maxLen={max_len}",
        f"--initLen={init_len}",
        *(["--noInitError"] if no_init_error else []),
        "--lang=C",
        "--apfixed",
        str(scala_file),
    ]


# -- what the original prints and writes ----------------------------------------------------------

_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
# "dot_1 = 25" or SCIP's solution display "dot_1      25   (obj:0)", at the start of a line (after
# an optional "[ Info ]"-style label)
_BITS = re.compile(r"^\s*(?:\[[^\]\n]*\]\s*)?(dot|bias)_(\d+)(?:\s*[=:]\s*|\s+)" + _NUMBER, re.MULTILINE)
_TOTAL_ERROR = re.compile(r"total\s+error\s*[=:]?\s*" + _NUMBER, re.IGNORECASE)
_OBJECTIVE = re.compile(r"objective(?:\s+value)?\s*[=:]?\s*" + _NUMBER, re.IGNORECASE)
# its quantisation phase's "According to Daisy's cost: N" (not the code generator's "Area cost: N",
# another cost function)
_AREA = re.compile(r"daisy(?:'s|\s+area)\s+cost\s*[=:]?\s*" + _NUMBER, re.IGNORECASE)
_SIGNATURE = re.compile(r"void\s+(\w+)\s*\(([^)]*)\)", re.DOTALL)
_PARAM = re.compile(r"ap_fixed\s*<\s*(\d+)\s*,\s*(-?\d+)[^>]*>\s+(\w+)\s*(?:\[\s*(\d+)\s*\])?")


@dataclass
class OriginalResult:
    """The original's report: ``status`` ok | infeasible | unparsed; per layer i (1-based in its output)
    the fractional bits of the dot products and the biases; its claimed "Total Error"."""

    status: str
    objective: float | None = None
    dot_bits: list[int] = field(default_factory=list)
    bias_bits: list[int] = field(default_factory=list)
    claimed_error: float | None = None
    daisy_area: float | None = None


def _last(pattern: re.Pattern[str], text: str) -> float | None:
    found = pattern.findall(text)
    return float(found[-1]) if found else None


def parse_original_output(text: str) -> OriginalResult:
    """Read the labelled values of one run's output (the last occurrence of each wins)."""
    if re.search(r"solution is infeasible", text, re.IGNORECASE):
        return OriginalResult("infeasible")
    bits: dict[str, dict[int, int]] = {"dot": {}, "bias": {}}
    for kind, layer, value in _BITS.findall(text):
        bits[kind][int(layer)] = round(float(value))
    claimed = _last(_TOTAL_ERROR, text)
    if not bits["dot"] or claimed is None:
        return OriginalResult("unparsed")
    layers = sorted(bits["dot"])
    if layers != list(range(1, len(layers) + 1)) or sorted(bits["bias"]) != layers:
        raise UserError(f"original tool output: dot/bias bits for layers {layers} / {sorted(bits['bias'])}")
    return OriginalResult(
        "ok",
        objective=_last(_OBJECTIVE, text),
        dot_bits=[bits["dot"][i] for i in layers],
        bias_bits=[bits["bias"][i] for i in layers],
        claimed_error=claimed,
        daisy_area=_last(_AREA, text),
    )


@dataclass
class CppSignature:
    """``void name(ap_fixed<W,I> x_0, ..., ap_fixed<W,I> _result[m])``: formats as (width, int bits)."""

    name: str
    inputs: list[tuple[int, int]]
    output: tuple[int, int]
    n_outputs: int


def parse_cpp_signature(cpp: str, name: str | None = None) -> CppSignature:
    """The calling convention of the original's generated C++ (its top function, or ``name``)."""
    for fn, params in _SIGNATURE.findall(cpp):
        if name is not None and fn != name:
            continue
        parsed = _PARAM.findall(params)
        declared = [p for p in re.split(r",(?![^<]*>)", params) if p.strip()]  # commas outside <...>
        if not parsed or len(parsed) != len(declared):
            continue
        *ins, out = parsed
        if not out[3] or any(p[3] for p in ins):
            continue
        inputs = [(int(w), int(i)) for w, i, _, _ in ins]
        return CppSignature(fn, inputs, (int(out[0]), int(out[1])), int(out[3]))
    raise UserError("no function 'void f(ap_fixed<W,I> x_0, ..., ap_fixed<W,I> _result[m])' in the C++")
