"""Command line: ``aster-ext quantize`` and ``aster-ext verify`` (thin layer over the Python API).

Exit codes: 0 success, 1 verify found a violation (or the C++ disagreed with the simulator),
2 bad input or infeasible target (one clear line on stderr, no partial output).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UserError

if TYPE_CHECKING:  # annotations only: the CLI imports the analyses lazily
    from .ir import Network
    from .spec import Spec

    Loaded = tuple[Network, Spec | None]

EPILOG = """examples:
  aster-ext quantize SmallNN.scala --error 1e-3 --out out/SmallNN
  aster-ext quantize net.onnx --error 1e-3 --spec net.spec.json --mode aster --setting C --out out/net
  aster-ext verify out/SmallNN --samples 5000
  aster-ext quantize cnn.onnx --spec cnn.spec.json --out out/cnn          (spec with "task": "classification")
  aster-ext quantize cnn.onnx --regions-data test.npz --radius 0.0039 --out out/cnn_test
  ASTER_HOME=~/Aster aster-ext quantize SmallNN.scala --mode aster-original --error 1e-3 --out out/orig
  aster-ext verify out/orig                    (checks the original's claimed error on its own C++)
"""


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a list of numbers, got {text!r}") from exc


MAX_SAMPLES = 10_000_000
MAX_SEARCH_ITERS = 100_000
MAX_SEED = 2**63 - 1
MAX_SPLIT_BOXES = 100_000
DENSE_SAMPLES, DENSE_SEARCH_ITERS = 2000, 60
CLASSIFY_SAMPLES, CLASSIFY_SEARCH_ITERS = 300, 20  # per region (aster_ext/classify_verify.py)


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors ('aster-ext: error: ...', exit 2) instead of usage + error."""

    def error(self, message: str):  # type: ignore[override]
        print(f"aster-ext: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)


def _positive_float(what: str):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not math.isfinite(v) or v <= 0:
            raise argparse.ArgumentTypeError(f"{what} must be a finite number > 0, got {text!r}")
        return v

    return parse


def _int_in(what: str, lo: int, hi: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a whole number, got {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{what} must be between {lo} and {hi}, got {text!r}")
        return v

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="aster-ext",
        description="Certified fixed-point quantisation of neural networks: picks ap_fixed formats whose "
        "roundoff error provably stays below --error for every input in the box, emits HLS C++ and a report.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser(
        "quantize",
        help="assign formats, certify, write C++ and a report",
        description="Assign fixed-point formats to every input, weight, product, partial sum, bias and "
        "activation of MODEL so that |fixed(x) - real(x)| <= EPS on every output for all x in the input box; "
        "with --task classify (CNNs, classifiers), so that the fixed-point argmax keeps each region's label "
        "for all x in the region.",
    )
    q.add_argument("model", type=Path, help="network: .onnx or Aster .scala DSL")
    q.add_argument(
        "--error",
        type=_positive_float("--error"),
        default=None,
        metavar="EPS",
        help="absolute error bound on outputs (a number > 0); required except with --task classify, "
        "where the regions' margins set the target and EPS, if given, also bounds every logit's error",
    )
    q.add_argument(
        "--task",
        default=None,
        choices=["classify", "regress"],
        help="classify: certify that the fixed-point argmax keeps each region's label (graph programs, "
        "CNNs and dense nets); regress: --error on every output over the input box (dense chains: the "
        "refined per-neuron analysis, or --mode graph; other graphs, e.g. CNNs: the graph analysis with "
        "per-channel formats, --mode refined or graph). Default: classify when "
        '--regions-data is given or the spec says "task": "classification" and lists regions',
    )
    q.add_argument(
        "--regions-data",
        type=Path,
        default=None,
        metavar="FILE.npz",
        help="classify: one region per image of FILE.npz (arrays 'x' images, 'y' labels) instead of the "
        "spec's regions; needs --radius",
    )
    q.add_argument(
        "--radius",
        type=float,
        default=None,
        metavar="R",
        help="with --regions-data: each region is the box x - R .. x + R, clipped to the spec's input box; "
        "R in the network's input units (e.g. 1/255 for one grey level of inputs scaled to [0, 1])",
    )
    q.add_argument(
        "--spec", type=Path, help="input box as a .spec.json (default: the model's own / NAME.spec.json)"
    )
    q.add_argument("--input-lower", type=_floats, help="input lower bounds, e.g. '-1,-1,0'")
    q.add_argument("--input-upper", type=_floats, help="input upper bounds")
    q.add_argument(
        "--mode",
        default="refined",
        choices=["refined", "graph", "aster", "aster-sound", "aster-original"],
        help="refined (default): symbolic per-neuron error analysis and per-neuron formats (on dense "
        "chains; other networks take the graph analysis); graph: the analysis CNNs and classifiers use, on "
        "any network: symbolic ranges over the graph, one fractional-bit count per neuron / output channel "
        "from an ILP and a sound descent, up to 48 fractional bits, truncation, no settings A-D (it "
        "certifies some targets refined cannot, usually at a somewhat higher cost); aster: Aster's "
        "published analysis (not sound); aster-sound: Aster's ILP with its unsound points repaired; "
        "aster-original: run the user's build of the original Aster tool (ASTER_HOME) on a .scala model "
        "and collect its C++ and claimed error",
    )
    q.add_argument(
        "--granularity",
        default="neuron",
        choices=["neuron", "layer"],
        help="refined mode: one format per neuron/weight row (default) or one per layer; --task classify: "
        "one fractional-bit count per output channel / dense neuron (default) or one per layer",
    )
    q.add_argument(
        "--setting",
        default="A",
        choices=["A", "B", "C", "D"],
        help="Aster's (minLen, maxLen, initLen, noInitError): A=(5,32,20,no) B=(10,32,32,no) "
        "C=(5,32,10,yes) D=(10,32,17,yes); default A",
    )
    q.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="output folder (default: out/<network>); must be new or empty, or an earlier aster_ext "
        "output with --force; never the current, home or model folder",
    )
    q.add_argument(
        "--force",
        action="store_true",
        help="replace the files of an earlier aster_ext output in DIR (other files are kept)",
    )
    q.add_argument(
        "--time-limit",
        type=_positive_float("--time-limit"),
        default=60.0,
        metavar="SECONDS",
        help="ILP solver time limit in seconds, > 0 (default 60); when it is hit the summary says so",
    )
    q.add_argument(
        "--backend",
        default="hls",
        choices=["hls", "hls4ml"],
        help="hls (default): our own HLS C++; hls4ml: an hls4ml config + project whose arithmetic "
        "is certified",
    )
    q.add_argument(
        "--io-type", default="io_parallel", choices=["io_parallel", "io_stream"], help="hls4ml io type"
    )
    q.add_argument("--strategy", default="Latency", choices=["Latency", "Resource"], help="hls4ml strategy")
    q.add_argument(
        "--reuse-factor",
        type=_int_in("--reuse-factor", 1, 1 << 20),
        default=1,
        help="reuse factor, >= 1 (default 1): the HLS pragmas of the emitted C++ (--backend hls) or "
        "hls4ml's ReuseFactor (--backend hls4ml)",
    )
    q.add_argument(
        "--ilp-rounds",
        type=_int_in("--ilp-rounds", 1, 1000),
        default=None,
        help="graph path (--task classify, CNNs, --mode graph): at most this many ILP solves per linear "
        "margin model (two run in turn), each re-certified by the sound analysis (default 12; fewer: "
        "faster, possibly costlier formats; "
        "with --error a model also stops after 3 solves in a row that save less than 0.5%%)",
    )
    q.add_argument(
        "--descent-checks",
        type=_int_in("--descent-checks", 0, 100000),
        default=None,
        help="graph path (--task classify, CNNs, --mode graph): after the ILP, lower one channel (or "
        "layer) by one bit at a time while the sound analysis still certifies, with at most this many "
        "analyses (default: 200, more on "
        "small networks whose analyses are cheap, up to 5000; 0: no descent; more: possibly cheaper "
        "formats, each check re-analyses every region)",
    )
    q.add_argument(
        "--split-boxes",
        type=_int_in("--split-boxes", 0, MAX_SPLIT_BOXES),
        default=0,
        help="refined mode: after the usual result, aim the ILP at a looser target and accept a cheaper "
        "program when its certificate over up to N sub-boxes of the input box is <= EPS (default 0: off)",
    )
    q.add_argument(
        "--split-ilp",
        action="store_true",
        help="with --split-boxes N: instead, solve ONE ILP whose error rows hold on every sub-box (per-box "
        "ranges, ReLU stability, error forms; shared formats), certify each sub-box, bisect those above "
        "EPS and re-solve; keeps the cheapest program certified over its cover, never costlier than the "
        "usual result, and runs even when the usual (whole-box) search certifies nothing",
    )
    q.add_argument("--quiet", action="store_true", help="no progress messages")

    v = sub.add_parser(
        "verify",
        help="simulate the emitted implementation against the real network; exit 1 on a violation",
        description="Bit-exact simulation on random, corner and adversarially searched inputs; the worst "
        "points are re-checked in exact rational arithmetic; the generated C++ is compiled with g++ "
        "against ap_types and compared bit for bit with the simulator. Writes DIR/verify.json.",
    )
    v.add_argument("dir", type=Path, help="output directory of 'aster-ext quantize'")
    v.add_argument(
        "--samples",
        type=_int_in("--samples", 1, MAX_SAMPLES),
        default=None,
        help=f"random samples before the search, 1..{MAX_SAMPLES} (default 2000; for a --task classify "
        f"output: random + corner inputs per region, default {CLASSIFY_SAMPLES})",
    )
    v.add_argument(
        "--search-iters",
        type=_int_in("--search-iters", 0, MAX_SEARCH_ITERS),
        default=None,
        help=f"adversarial search rounds, 0..{MAX_SEARCH_ITERS} (default 60; for a --task classify output: "
        f"gradient steps per start and region, default {CLASSIFY_SEARCH_ITERS})",
    )
    v.add_argument(
        "--seed", type=_int_in("--seed", 0, MAX_SEED), default=0, help="random seed, >= 0 (default 0)"
    )
    v.add_argument("--no-cpp", action="store_true", help="skip compiling the C++ (bit_exact_cpp = null)")
    v.add_argument(
        "--split-boxes",
        type=_int_in("--split-boxes", 0, MAX_SPLIT_BOXES),
        default=0,
        help="refined outputs: also re-derive the certificate on up to N sub-boxes of the input box "
        "(bisection where the bound is worst) and report it beside the single-pass one (default 0: off)",
    )
    v.add_argument(
        "--exact",
        action="store_true",
        help="small ReLU networks: also measure the true maximum error of the program over the box by a "
        "MILP of both networks (HiGHS); reports the best input (re-evaluated exactly), the solver's bound "
        "and the tightness certified / true maximum. A measurement, not a certificate",
    )
    v.add_argument(
        "--exact-time-limit",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds for all --exact solves together (2 per output; default 600)",
    )
    v.add_argument("--quiet", action="store_true", help="no progress messages")
    add_sweep_parser(sub)
    return p


def add_sweep_parser(sub: argparse._SubParsersAction) -> None:
    """``aster-ext sweep GRID.toml --out DIR``: every cell of a grid, one row each in DIR/results.csv."""
    s = sub.add_parser(
        "sweep",
        help="run a grid of quantize + verify cells into DIR/results.csv (local pool or Ray)",
        description="Run every cell (model x eps x setting x mode) of a TOML grid that DIR/results.csv does "
        "not hold yet; each cell appends one complete row. Rerunning skips finished cells; a killed sweep "
        "resumes where it stopped. With --ray (or RAY_ADDRESS set) the cells run as Ray tasks.",
    )
    s.add_argument(
        "grid",
        type=Path,
        help="grid file (TOML): models, eps, settings, modes (refined, aster, aster-sound, aster-original, "
        "graph: the graph path, no settings), ...; see examples/sweep_tiny.toml",
    )
    s.add_argument("--out", type=Path, required=True, help="results directory (results.csv)")
    s.add_argument("--workers", type=int, default=2, help="parallel cells (default 2)")
    s.add_argument(
        "--ray",
        metavar="ADDRESS",
        default=None,
        help="run the cells on Ray: a cluster address, or 'auto' to start a local Ray instance "
        "(default: $RAY_ADDRESS if set, else a local process pool)",
    )
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    e = sub.add_parser("experiments", help="'experiments reproduce' rebuilds the tables of results/")
    esub = e.add_subparsers(dest="experiment", required=True)
    from .experiments.reproduce import add_arguments

    add_arguments(
        esub.add_parser(
            "reproduce",
            help="rerun the sweeps and rewrite results/ tables, figures and MANIFEST.json",
            description="Rerun the benchmark sweeps behind results/modes.md and "
            "results/aster_reproduction.md and the dense-network tables of their own cells (--quick: "
            "four small benchmarks), with --all also every table the checkout's scripts write, and "
            "rewrite the tables, results/figures/ and results/MANIFEST.json.",
        )
    )


def cmd_sweep(args: argparse.Namespace) -> int:
    import os

    from .experiments import load_grid, run_sweep

    grid = load_grid(args.grid)
    address = args.ray or os.environ.get("RAY_ADDRESS") or None
    summary = run_sweep(grid, args.out, args.workers, address, progress=not args.quiet)
    print(
        f"sweep ({summary.backend}): {summary.total} cells, {summary.skipped} already done, "
        f"{summary.written} rows written in {summary.wall_s:.0f} s to {args.out / 'results.csv'}"
        + (f"; {len(summary.crashed)} crashed twice (no row; rerun to retry)" if summary.crashed else "")
    )
    return 1 if summary.crashed else 0


def _progress(quiet: bool):
    """The progress callback: None with --quiet, else live on a terminal, short lines otherwise."""
    if quiet:
        return None
    from .progress import ProgressReporter

    return ProgressReporter()


def cmd_quantize(args: argparse.Namespace) -> int:
    from .classify import decide_task

    explicit = args.input_lower is not None or args.input_upper is not None
    task = decide_task(args.task, args.model, args.spec, explicit, args.regions_data)
    if task == "classify" and args.backend == "hls4ml":  # CNN/classifier: the spec's regions
        if (
            args.regions_data is not None
            or args.radius is not None
            or args.ilp_rounds is not None
            or args.descent_checks is not None
        ):
            raise UserError("--backend hls4ml certifies the spec's regions; --regions-data, --radius, "
                            "--ilp-rounds and --descent-checks do not apply")  # fmt: skip
        if args.error is None:
            raise UserError("--backend hls4ml on a classifier needs --error EPS (the certified logit "
                            "error on every region); margin-driven --task classify is the default "
                            "backend's")  # fmt: skip
        from .hls4ml_backend.run import cmd_quantize_hls4ml

        return cmd_quantize_hls4ml(args, _progress(args.quiet))
    if task == "classify":
        return cmd_quantize_classify(args)
    if args.regions_data is not None or args.radius is not None:
        raise UserError("--regions-data and --radius apply to --task classify")
    if args.error is None:
        raise UserError(
            "--error EPS is required (unless --task classify, where the regions' margins set the target)"
        )
    if args.mode == "graph":  # any network, --error over the input box on the graph path
        if args.backend != "hls":
            raise UserError(
                "--mode graph writes our own HLS C++ (--backend hls); --backend hls4ml certifies "
                "hls4ml's configurations with its own analysis: drop --mode graph"
            )
        return cmd_quantize_classify(args, whole_box=True)
    loaded = None  # an ONNX model is loaded once, to route it and for the path it takes
    if args.mode == "refined" and args.backend == "hls":
        loaded = load_onnx_model(args.model)
        if loaded is not None and needs_graph_analysis(args.model, loaded):
            return cmd_quantize_classify(args, whole_box=True, loaded=loaded)  # a CNN: the input box
    if args.ilp_rounds is not None:
        raise UserError("--ilp-rounds applies to the graph path (--task classify, CNNs, --mode graph)")
    if args.descent_checks is not None:
        raise UserError("--descent-checks applies to the graph path (--task classify, CNNs, --mode graph)")
    if args.split_boxes and (args.mode != "refined" or args.backend != "hls"):
        raise UserError("--split-boxes applies to --mode refined with the default backend")
    if args.split_ilp and not args.split_boxes:
        raise UserError("--split-ilp needs --split-boxes N (N >= 1)")
    if args.mode == "aster-original":
        return cmd_quantize_original(args)
    if args.backend == "hls4ml":
        from .hls4ml_backend.run import cmd_quantize_hls4ml

        return cmd_quantize_hls4ml(args, _progress(args.quiet))
    from .pipeline import QuantizeOptions, quantize

    opts = QuantizeOptions(
        error=args.error,
        mode=args.mode,
        setting=args.setting,
        granularity=args.granularity,
        spec_path=args.spec,
        input_lower=args.input_lower,
        input_upper=args.input_upper,
        time_limit=args.time_limit,
        reuse_factor=args.reuse_factor,
        split_boxes=args.split_boxes,
        split_ilp=args.split_ilp,
    )
    from .report import summary_line

    out = args.out if args.out is not None else str(Path("out") / args.model.stem)
    if out.strip() == "":
        raise UserError("--out is empty: name a new folder for the outputs")
    from .errors import UnsupportedError

    try:
        res = quantize(args.model, opts, out, _progress(args.quiet), force=args.force, loaded=loaded)
    except UnsupportedError as exc:
        if "dense-chain analyses" not in str(exc):
            raise
        raise UnsupportedError(
            f"{exc}; on such networks --mode refined (the default) certifies --error over the input box, "
            "and --task classify certifies regions (the spec's 'regions' or --regions-data)"
        ) from None
    print(summary_line(res.report, res.out_dir))
    return 0


def load_onnx_model(model_path: Path) -> Loaded | None:
    """``frontend.load_model`` of an existing .onnx file (None for anything else: the paths that
    take other files load and report them themselves)."""
    if Path(model_path).suffix.lower() != ".onnx" or not Path(model_path).is_file():
        return None
    from .frontend import load_model

    return load_model(model_path)


def needs_graph_analysis(model_path: Path, loaded: Loaded | None = None) -> bool:
    """An ONNX model that the dense-chain analyses cannot take (convolutions, pooling, residual
    adds, ...): ``--task regress`` certifies it on the graph path over the whole input box.
    ``loaded``: :func:`load_onnx_model`'s result when the caller has it (else loaded here)."""
    from .errors import UnsupportedError
    from .ir import ACTIVATIONS, dense_chain

    if loaded is None:
        loaded = load_onnx_model(model_path)
    if loaded is None:
        return False
    net, _ = loaded
    try:
        dense_chain(net, frozenset(ACTIVATIONS))
    except UnsupportedError:
        return True
    return False


def cmd_quantize_original(args: argparse.Namespace) -> int:
    """``quantize --mode aster-original``: the user's build of the original tool (aster_ext/original.py)."""
    from .bridge import find_aster_home
    from .original import quantize_original

    find_aster_home()  # first: without ASTER_HOME nothing else matters
    fixed = (("--backend", args.backend, "hls"), ("--granularity", args.granularity, "neuron"),
             ("--reuse-factor", args.reuse_factor, 1))  # fmt: skip
    for flag, value, default in fixed:
        if value != default:
            raise UserError(
                f"{flag} does not apply to --mode aster-original (the original writes its own C++)"
            )
    if args.input_lower is not None or args.input_upper is not None:
        raise UserError("--mode aster-original analyses the box in the model's require(...); "
                        "drop --input-lower/--input-upper")  # fmt: skip
    out = args.out if args.out is not None else str(Path("out") / args.model.stem)
    r = quantize_original(
        args.model, args.error, args.setting, out, args.force, args.spec, _progress(args.quiet)
    )
    print(
        f"{r['network']}: the original Aster claims error <= {r['claimed_error']:.6g} (not certified; "
        f"check it with 'aster-ext verify {out}'), objective {r['objective']},"
        f" C++ {Path(out) / r['cpp_file']}"
    )
    return 0


def cmd_quantize_classify(
    args: argparse.Namespace, whole_box: bool = False, loaded: Loaded | None = None
) -> int:
    """``quantize --task classify``: certified top-1 per region on the graph program path.
    ``whole_box``: ``--task regress`` on a network the dense chain cannot hold: --error over the
    spec's input box on the same path (classify.py, *Whole box*). ``loaded``: the model, when
    the caller loaded it already."""
    from .classify import ClassifyOptions, quantize_classify
    from .report import classify_summary_line

    if args.backend != "hls":
        raise UserError("--task classify: only the default backend (graph programs) is available")
    # where the dense chains' options apply instead (this path has no settings or sub-boxes)
    elsewhere = (
        "--mode refined and Aster's modes, not to --mode graph" if args.mode == "graph"
        else "dense chains (--task regress on a dense network), not to this network's graph analysis"
        if whole_box
        else "--task regress (dense chains), not to --task classify"
    )  # fmt: skip
    for flag, value, ours in (
        ("--mode", args.mode, ("refined", "graph")),
        ("--setting", args.setting, ("A",)),
        ("--split-boxes", args.split_boxes, (0,)),
        ("--split-ilp", args.split_ilp, (False,)),
    ):
        if value not in ours:
            raise UserError(f"{flag}{f' {value}' if flag == '--mode' else ''} applies to {elsewhere}")
    opts = ClassifyOptions(
        spec_path=args.spec,
        input_lower=args.input_lower,
        input_upper=args.input_upper,
        regions_data=args.regions_data,
        radius=args.radius,
        error=args.error,
        reuse_factor=args.reuse_factor,
        granularity="channel" if args.granularity == "neuron" else "layer",
        time_limit=args.time_limit,
        **({} if args.ilp_rounds is None else {"ilp_rounds": args.ilp_rounds}),
        descent_checks=args.descent_checks,
        whole_box=whole_box,
    )
    out = args.out if args.out is not None else str(Path("out") / args.model.stem)
    res = quantize_classify(args.model, opts, out, _progress(args.quiet), force=args.force, loaded=loaded)
    print(classify_summary_line(res.report, res.out_dir))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .hls4ml_backend.run import cmd_verify_hls4ml, is_hls4ml_dir

    classify_samples, classify_iters = args.samples, args.search_iters  # None: the classify defaults
    args.samples = DENSE_SAMPLES if args.samples is None else args.samples
    args.search_iters = DENSE_SEARCH_ITERS if args.search_iters is None else args.search_iters
    if is_hls4ml_dir(args.dir):
        return cmd_verify_hls4ml(args, _progress(args.quiet))
    from .verify_dir import verify_directory

    res = verify_directory(
        args.dir,
        args.samples,
        args.search_iters,
        args.seed,
        not args.no_cpp,
        _progress(args.quiet),
        classify_samples,
        classify_iters,
        args.split_boxes,
        args.exact_time_limit if args.exact else None,
    )
    print(res.summary_line())
    return 0 if res.passed else 1


_VALUE_OPTIONS = (
    "--input-lower",
    "--input-upper",
    "--error",
    "--time-limit",
    "--samples",
    "--search-iters",
    "--seed",
    "--radius",
)


def _join_negative_values(argv: list[str]) -> list[str]:
    """Let '--input-lower -1,-2' and '--error -1' reach their option (argparse would see an option)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in _VALUE_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(_join_negative_values(list(sys.argv[1:] if argv is None else argv)))
    except SystemExit as exc:
        if exc.code in (0, None):
            raise  # --help
        return 2  # the one-line error is already printed (OneLineParser.error)
    try:
        if args.command == "quantize":
            return cmd_quantize(args)
        if args.command == "sweep":
            return cmd_sweep(args)
        if args.command == "experiments":
            from .experiments.reproduce import run

            return run(args)
        return cmd_verify(args)
    except UserError as exc:
        print(f"aster-ext: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, json.JSONDecodeError) as exc:
        print(f"aster-ext: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aster-ext: interrupted; the temporary output folder was removed, nothing else changed",
              file=sys.stderr)  # fmt: skip
        return 130


if __name__ == "__main__":
    sys.exit(main())
