"""Command line: ``aster-ext quantize`` and ``aster-ext verify`` (thin layer over the Python API).

Exit codes: 0 success, 1 verify found a violation (or the C++ disagreed with the simulator),
2 bad input or infeasible target (one clear line on stderr, no partial output).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import UserError

EPILOG = """examples:
  aster-ext quantize SmallNN.scala --error 1e-3 --out out/SmallNN
  aster-ext quantize net.onnx --error 1e-3 --spec net.spec.json --mode aster --setting C --out out/net
  aster-ext verify out/SmallNN --samples 5000
"""


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a list of numbers, got {text!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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
        "activation of MODEL so that |fixed(x) - real(x)| <= EPS on every output for all x in the input box.",
    )
    q.add_argument("model", type=Path, help="network: .onnx or Aster .scala DSL")
    q.add_argument(
        "--error", type=float, required=True, metavar="EPS", help="absolute error bound on outputs"
    )
    q.add_argument(
        "--spec", type=Path, help="input box as a .spec.json (default: the model's own / NAME.spec.json)"
    )
    q.add_argument("--input-lower", type=_floats, help="input lower bounds, e.g. '-1,-1,0'")
    q.add_argument("--input-upper", type=_floats, help="input upper bounds")
    q.add_argument(
        "--mode",
        default="refined",
        choices=["refined", "aster", "aster-sound"],
        help="refined (default): symbolic per-neuron error analysis and per-neuron formats; aster: Aster's "
        "published analysis (not sound); aster-sound: Aster's ILP with its unsound points repaired",
    )
    q.add_argument(
        "--granularity",
        default="neuron",
        choices=["neuron", "layer"],
        help="refined mode: one format per neuron/weight row (default) or one per layer",
    )
    q.add_argument(
        "--setting",
        default="A",
        choices=["A", "B", "C", "D"],
        help="Aster's (minLen, maxLen, initLen, noInitError): A=(5,32,20,no) B=(10,32,32,no) "
        "C=(5,32,10,yes) D=(10,32,17,yes); default A",
    )
    q.add_argument("--out", type=Path, default=None, help="output directory (default: out/<network>)")
    q.add_argument(
        "--time-limit", type=float, default=60.0, help="ILP solver time limit in seconds (default 60)"
    )
    q.add_argument(
        "--reuse-factor", type=int, default=1, help="HLS reuse factor of the emitted C++ (default 1)"
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
        "--samples", type=int, default=2000, help="random samples before the search (default 2000)"
    )
    v.add_argument("--search-iters", type=int, default=60, help="adversarial search iterations (default 60)")
    v.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    v.add_argument("--no-cpp", action="store_true", help="skip compiling the C++ (bit_exact_cpp = null)")
    v.add_argument("--quiet", action="store_true", help="no progress messages")
    return p


def _progress(quiet: bool):
    if quiet:
        return None

    def emit(msg: str) -> None:
        print(f"[aster-ext] {msg}", file=sys.stderr, flush=True)

    return emit


def cmd_quantize(args: argparse.Namespace) -> int:
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
    )
    out = args.out if args.out is not None else Path("out") / args.model.stem
    res = quantize(args.model, opts, out, _progress(args.quiet))
    r = res.report
    kind = "certified" if r["sound"] else "claimed by Aster (not sound)"
    print(
        f"{r['network']}: error <= {r['certified_error']:.4g} ({kind}), target {r['target_error']:g}; "
        f"Daisy area {r['cost']['daisy_area']}, hw {r['cost']['hw']}; wrote {res.out_dir}"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify_dir import verify_directory

    res = verify_directory(
        args.dir, args.samples, args.search_iters, args.seed, not args.no_cpp, _progress(args.quiet)
    )
    status = "OK" if res.violations == 0 and res.bit_exact_cpp is not False else "FAILED"
    print(
        f"verify {status}: {res.samples} inputs, max observed error {res.max_observed_error:.4g}, certified "
        f"{res.certified_error:.4g} (ratio {res.ratio:.3g}), violations {res.violations}, "
        f"C++ bit-exact {res.bit_exact_cpp}"
    )
    return 0 if status == "OK" else 1


_VALUE_OPTIONS = ("--input-lower", "--input-upper", "--error")


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
    args = parser.parse_args(_join_negative_values(list(sys.argv[1:] if argv is None else argv)))
    try:
        if args.command == "quantize":
            return cmd_quantize(args)
        return cmd_verify(args)
    except UserError as exc:
        print(f"aster-ext: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, json.JSONDecodeError) as exc:
        print(f"aster-ext: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
