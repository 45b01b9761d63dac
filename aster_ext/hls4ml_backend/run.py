"""``aster-ext quantize --backend hls4ml`` and ``aster-ext verify`` of its output directory.

quantize: load the ONNX dense chain, compute sound ranges of the real network
(back-substitution), choose per-layer types (:mod:`.search`), write ``hls4ml_config.yml/.json``,
let hls4ml generate and compile ``hls4ml_prj/`` from the qonnx-cleaned ONNX with that config,
read the types back from hls4ml's model and certify *that* program from scratch
(:func:`.certify.walk`); the report's ``certified_error`` is that certificate. A smoke check
compares our simulator with hls4ml's ``predict`` before anything is written.

verify: rebuild the program from the report's types, run the project's compiled library
(``<project>_double`` of ``firmware/<project>-*.so``, what ``hls_model.predict`` calls) on random,
corner and adversarially searched inputs, and compare it bit for bit with the simulator and
against the real network (exact rational reference for the worst candidates).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..frontend import load_model
from ..ir import DenseLayer, dense_chain
from ..refined.symbolic_ranges import symbolic_ranges
from ..spec import Spec
from . import project as P
from .certify import Certificate, walk
from .program import ActStage, DenseStage, Hls4mlProgram
from .search import choose_types, program_cost
from .simulate import simulate
from .types import HlsType

ALLOWED = frozenset({"relu", "identity", "tanh", "sigmoid"})
REF_MARGIN = 2.0**-80


@dataclass
class Hls4mlOptions:
    error: float
    io_type: str = "io_parallel"
    strategy: str = "Latency"
    reuse_factor: int = 1
    table_size: int = 1024
    spec_path: Path | None = None
    input_lower: list[float] | None = None
    input_upper: list[float] | None = None
    smoke_samples: int = 200


@dataclass
class Hls4mlResult:
    program: Hls4mlProgram
    certificate: Certificate
    config: dict[str, Any]
    report: dict[str, Any]
    layers: list[DenseLayer]
    spec: Spec
    hls_model: Any = None
    out_dir: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)


def _resolve_spec(net: Any, model_spec: Spec | None, opts: Hls4mlOptions) -> Spec:
    from ..pipeline import resolve_spec

    return resolve_spec(net, model_spec, opts)  # type: ignore[arg-type]


def analyse(model_path: Path, opts: Hls4mlOptions) -> tuple[list[DenseLayer], Spec, Any, dict[str, float]]:
    if opts.error <= 0 or not np.isfinite(opts.error):
        raise UserError(f"--error must be a positive number, got {opts.error}")
    if Path(model_path).suffix.lower() != ".onnx":
        raise UserError("--backend hls4ml needs an ONNX model (hls4ml converts the ONNX file itself)")
    t = time.perf_counter()
    net, model_spec = load_model(model_path)
    spec = _resolve_spec(net, model_spec, opts)
    layers = dense_chain(net, ALLOWED)
    return layers, spec, net, {"load_s": time.perf_counter() - t}


def hls4ml_config(cleaned: Any, program: Hls4mlProgram, opts: Hls4mlOptions) -> dict[str, Any]:
    """hls4ml's own generated config for the cleaned model with our precisions filled in."""
    cfg = P.base_config(cleaned)
    mats, acts = P.node_names(cleaned)
    dense = [s for s in program.stages if isinstance(s, DenseStage)]
    if len(mats) != len(dense):
        raise UserError(f"hls4ml sees {len(mats)} MatMul layers, the analysis {len(dense)}")
    cfg["Model"]["Strategy"] = opts.strategy
    cfg["Model"]["ReuseFactor"] = int(opts.reuse_factor)
    names = cfg["LayerName"]
    names["global_in"]["Precision"]["result"] = program.input_t.to_string()
    stages = list(program.stages)
    k = 0
    for mat, act in zip(mats, acts, strict=True):
        st = stages[k]
        assert isinstance(st, DenseStage)
        k += 1
        prec = names[mat]["Precision"]
        prec.update(weight=st.weight_t.to_string(), bias=st.bias_t.to_string(), accum=st.accum_t.to_string())
        prec["result"] = "auto"  # must stay 'auto' so that hls4ml fuses the Add into the Dense bias
        names[mat]["ReuseFactor"] = int(opts.reuse_factor)
        if act is not None:
            a = stages[k]
            assert isinstance(a, ActStage)
            k += 1
            names[act]["Precision"]["result"] = a.result_t.to_string()
            if a.table_t is not None:
                names[act]["Precision"]["table"] = a.table_t.to_string()
                names[act]["table_t"] = a.table_t.to_string()
                names[act]["TableSize"] = int(a.table_size or 1024)
    return cfg


def _types_json(program: Hls4mlProgram) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"stage": "input", "result": program.input_t.to_string()}]
    for st in program.stages:
        if isinstance(st, DenseStage):
            out.append(
                {
                    "stage": st.name,
                    "kind": "dense",
                    "weight": st.weight_t.to_string(),
                    "bias": st.bias_t.to_string(),
                    "accum": st.accum_t.to_string(),
                    "result": st.result_t.to_string(),
                }
            )
        else:
            d: dict[str, Any] = {"stage": st.name, "kind": st.kind, "result": st.result_t.to_string()}
            if st.table_t is not None:
                d.update(table=st.table_t.to_string(), table_size=st.table_size)
            out.append(d)
    return out


def program_from_json(types: list[dict[str, Any]], layers: list[DenseLayer]) -> Hls4mlProgram:
    """Rebuild the program from report.json's types and the model's real parameters."""
    input_t = HlsType.parse(types[0]["result"])
    stages: list[DenseStage | ActStage] = []
    li = 0
    for d in types[1:]:
        if d["kind"] == "dense":
            layer = layers[li]
            li += 1
            stages.append(
                DenseStage(
                    d["stage"],
                    layer.weight,
                    layer.bias,
                    HlsType.parse(d["weight"]),
                    HlsType.parse(d["bias"]),
                    HlsType.parse(d["accum"]),
                    HlsType.parse(d["result"]),
                )
            )
        else:
            tt = HlsType.parse(d["table"]) if "table" in d else None
            stages.append(
                ActStage(d["stage"], d["kind"], HlsType.parse(d["result"]), tt, d.get("table_size"))
            )
    return Hls4mlProgram(input_t, stages)


def quantize_hls4ml(
    model_path: Path,
    opts: Hls4mlOptions,
    out_dir: Path | None,
    progress: Callable[[str], None] | None = None,
    build: bool = True,
) -> Hls4mlResult:
    """Choose certified hls4ml precisions; with ``out_dir`` (and ``build``) write the config, the
    hls4ml project and the report."""
    model_path = Path(model_path)
    if model_path.suffix.lower() == ".onnx" and model_path.is_file():
        from .cnn_run import is_cnn, quantize_hls4ml_cnn

        if is_cnn(load_model(model_path)[0]):  # Conv/pooling: the CNN path (regions from the spec)
            return quantize_hls4ml_cnn(model_path, opts, out_dir, progress, build)  # type: ignore[return-value]
    layers, spec, net, timings = analyse(model_path, opts)
    t = time.perf_counter()
    ranges = symbolic_ranges(layers, spec.input_lower, spec.input_upper)
    res = choose_types(layers, ranges, spec.input_lower, spec.input_upper, opts.error, opts.table_size)
    timings["certify_s"] = time.perf_counter() - t
    if progress:
        progress(
            f"types chosen: certified {res.certificate.max_bound:.4g} <= {opts.error:g} "
            f"({res.evaluations} candidates)"
        )
    program, cert = res.program, res.certificate
    result = Hls4mlResult(program, cert, {}, {}, layers, spec, timings=timings)
    if not build:
        result.report = _report(net, spec, opts, model_path, program, cert, timings, None)
        return result
    P.require_hls4ml()
    out_dir = Path(out_dir) if out_dir is not None else Path("out") / model_path.stem
    protected = [model_path] + ([Path(opts.spec_path)] if opts.spec_path is not None else [])
    with P.project_folder(out_dir, protected):
        t = time.perf_counter()
        cleaned = P.clean_onnx(P.write_dense_onnx(layers, out_dir / "dense_chain.onnx"))
        cfg = hls4ml_config(cleaned, program, opts)
        hls_model = P.convert(
            cleaned, cfg, out_dir / "hls4ml_prj", opts.io_type, opts.strategy, opts.reuse_factor
        )
        timings["hls4ml_convert_s"] = time.perf_counter() - t
        t = time.perf_counter()
        P.compile_model(hls_model)
        timings["hls4ml_compile_s"] = time.perf_counter() - t
        # certify what hls4ml actually built
        built = P.read_program(hls_model)
        cert_built = walk(layers, ranges, spec.input_lower, spec.input_upper, built)
        if not cert_built.ok or cert_built.max_bound > opts.error:
            why = "; ".join(cert_built.overflow) or f"bound {cert_built.max_bound:.4g}"
            raise UserError(f"the project hls4ml built does not certify ε = {opts.error:g}: {why}")
        rng = np.random.default_rng(0)
        span = spec.input_upper - spec.input_lower
        xs = spec.input_lower + span * rng.random((opts.smoke_samples, len(spec.input_lower)))
        xs = np.concatenate([xs, spec.input_lower[None, :], spec.input_upper[None, :]])
        y_hls = P.predict(hls_model, xs)
        y_sim = simulate(built, xs)
        mismatch = int(np.sum(np.any(y_hls != y_sim, axis=1)))
        if mismatch:
            raise UserError(
                f"our simulator disagrees with hls4ml's C simulation on {mismatch} of {len(xs)} inputs "
                f"(io_type={opts.io_type}, strategy={opts.strategy}): this configuration is not modelled"
            )
        # IOType/Backend are convert_from_onnx_model arguments; hls4ml ignores them inside hls_config
        _write_config(out_dir, {**cfg, "IOType": opts.io_type, "Backend": "Vivado"})
        report = _report(net, spec, opts, model_path, built, cert_built, timings, hls_model)
        report["smoke_bit_exact_samples"] = len(xs)
        (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    result.program, result.certificate, result.config, result.report = built, cert_built, cfg, report
    result.hls_model, result.out_dir = hls_model, out_dir
    return result


def _write_config(out: Path, cfg: dict[str, Any]) -> None:
    import yaml

    (out / "hls4ml_config.json").write_text(json.dumps(cfg, indent=1, default=str))
    (out / "hls4ml_config.yml").write_text(
        yaml.safe_dump(json.loads(json.dumps(cfg, default=str)), sort_keys=False)
    )


def _report(
    net: Any,
    spec: Spec,
    opts: Hls4mlOptions,
    model_path: Path,
    program: Hls4mlProgram,
    cert: Certificate,
    timings: dict[str, float],
    hls_model: Any,
) -> dict[str, Any]:
    version = None
    if hls_model is not None:
        import hls4ml

        version = hls4ml.__version__
    return {
        "network": net.name,
        "backend": "hls4ml",
        "hls4ml_version": version,
        "model_path": str(Path(model_path).resolve()),
        "model_sha256": hashlib.sha256(Path(model_path).read_bytes()).hexdigest(),
        "input_lower": [float(v) for v in spec.input_lower],
        "input_upper": [float(v) for v in spec.input_upper],
        "target_error": opts.error,
        "certified_error": cert.max_bound,
        "certified_per_output": [float(v) for v in cert.bound],
        "sound": True,
        "io_type": opts.io_type,
        "strategy": opts.strategy,
        "reuse_factor": opts.reuse_factor,
        "types": _types_json(program),
        "cost": program_cost(program),
        "timings": timings,
        "project_dir": "hls4ml_prj",
    }


# ---------------------------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------------------------


class CompiledProject:
    """The compiled C simulation library of an hls4ml project, called like ``hls_model.predict``."""

    def __init__(self, prj_dir: Path):
        libs = sorted((prj_dir / "firmware").glob("*.so"))
        if not libs:
            raise UserError(f"{prj_dir}: no compiled library in firmware/ (hls_model.compile() not run?)")
        self.lib = ctypes.cdll.LoadLibrary(str(libs[-1].resolve()))
        name = libs[-1].name.rsplit("-", 1)[0]
        self.fn = getattr(self.lib, f"{name}_double")
        self.fn.restype = None

    def __call__(self, x: np.ndarray, n_out: int) -> np.ndarray:
        x = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float64)
        out = np.zeros((x.shape[0], n_out), dtype=np.float64)
        for i in range(x.shape[0]):
            xi = np.ascontiguousarray(x[i])
            yi = np.zeros(n_out, dtype=np.float64)
            self.fn(
                xi.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
                yi.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
            )
            out[i] = yi
        return out


@dataclass
class Hls4mlVerifyResult:
    samples: int
    max_observed_error: float
    certified_error: float
    violations: int
    bit_exact: bool
    mismatches: int
    worst_input: list[float]
    time_s: float

    @property
    def ratio(self) -> float:
        return self.certified_error / self.max_observed_error if self.max_observed_error > 0 else float("inf")


def verify_hls4ml_dir(
    out_dir: Path,
    samples: int = 2000,
    search_iters: int = 60,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Hls4mlVerifyResult:
    from ..verify import box_corners, real_forward_exact, real_forward_float
    from .attack import box_local_search

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    report = json.loads((out_dir / "report.json").read_text())
    model_path = Path(report["model_path"])
    if hashlib.sha256(model_path.read_bytes()).hexdigest() != report["model_sha256"]:
        raise UserError(f"{out_dir}: {model_path} changed since it was quantised (sha256 differs)")
    net, _ = load_model(model_path)
    layers = dense_chain(net, ALLOWED)
    lo = np.asarray(report["input_lower"], dtype=np.float64)
    hi = np.asarray(report["input_upper"], dtype=np.float64)
    program = program_from_json(report["types"], layers)
    ranges = symbolic_ranges(layers, lo, hi)
    cert = walk(layers, ranges, lo, hi, program)
    bound = np.asarray(report["certified_per_output"], dtype=np.float64)
    if not cert.ok or np.any(cert.bound > bound * (1 + 1e-9)):
        raise UserError(f"{out_dir}: re-certification does not reproduce the report's bound")
    lib = CompiledProject(out_dir / report["project_dir"])
    n_out = layers[-1].n_out
    rng = np.random.default_rng(seed)
    xs = [
        lo + (hi - lo) * rng.random((samples, lo.size)),
        box_corners(rng, lo, hi, 256),
        ((lo + hi) / 2)[None, :],
    ]
    x = np.concatenate(xs)

    def score(xb: np.ndarray) -> np.ndarray:
        return np.max(np.abs(simulate(program, xb) - real_forward_float(layers, xb)) / bound, axis=1)

    # adversarial local search on the simulator (bit-exact with the library, checked below)
    x = np.concatenate([x, box_local_search(score, x, lo, hi, rng, search_iters)])
    y_lib = lib(x, n_out)
    y_sim = simulate(program, x)
    mism = int(np.sum(np.any(y_lib != y_sim, axis=1)))
    err = np.abs(y_lib - real_forward_float(layers, x))
    ratio = np.max(err / bound, axis=1)
    worst = np.argsort(-ratio)[:8]
    violations = 0
    max_err = float(err.max())
    from fractions import Fraction

    for i in worst:
        ref = real_forward_exact(layers, [Fraction(float(v)) for v in x[i]])
        exact_err = np.array([abs(Fraction(float(y_lib[i, o])) - ref[o]) for o in range(n_out)], dtype=object)
        if any(float(exact_err[o]) > bound[o] + REF_MARGIN for o in range(n_out)):
            violations += 1
    # float screening beyond the exact set: a violation needs a clear margin there
    violations += int(np.sum(np.delete(ratio, worst) > 1 + 1e-9))
    res = Hls4mlVerifyResult(
        int(x.shape[0]),
        max_err,
        float(bound.max()),
        violations,
        mism == 0,
        mism,
        [float(v) for v in x[worst[0]]],
        time.perf_counter() - t0,
    )
    (out_dir / "verify.json").write_text(json.dumps(res.__dict__, indent=1))
    return res


def is_hls4ml_dir(out_dir: Path) -> bool:
    rep = Path(out_dir) / "report.json"
    if not rep.is_file():
        return False
    try:
        return json.loads(rep.read_text()).get("backend") == "hls4ml"
    except json.JSONDecodeError:
        return False


def cmd_quantize_hls4ml(args: Any, progress: Callable[[str], None] | None) -> int:
    """CLI body of ``quantize --backend hls4ml`` (options as parsed by :mod:`aster_ext.cli`)."""
    opts = Hls4mlOptions(
        error=args.error,
        io_type=args.io_type,
        strategy=args.strategy,
        reuse_factor=args.reuse_factor,
        spec_path=args.spec,
        input_lower=args.input_lower,
        input_upper=args.input_upper,
    )
    if args.mode != "refined":
        raise UserError("--backend hls4ml has its own analysis; --mode applies to --backend hls only")
    out = args.out if args.out is not None else Path("out") / args.model.stem
    res = quantize_hls4ml(args.model, opts, out, progress)
    r = res.report
    print(
        f"{r['network']}: error <= {r['certified_error']:.4g} (certified for hls4ml's arithmetic), "
        f"target {r['target_error']:g}; cost {r['cost']['cost']}; wrote {res.out_dir}"
    )
    return 0


def cmd_verify_hls4ml(args: Any, progress: Callable[[str], None] | None) -> int:
    if json.loads((Path(args.dir) / "report.json").read_text()).get("task") == "classification":
        from .cnn_run import verify_cnn_dir

        cres = verify_cnn_dir(args.dir, args.samples, args.search_iters, args.seed)
        ok = cres.violations == 0 and cres.label_violations == 0 and cres.bit_exact
        print(
            f"verify {'OK' if ok else 'FAILED'}: {cres.samples} inputs of the regions through hls4ml's "
            f"compiled model, max observed error {cres.max_observed_error:.4g}, certified "
            f"{cres.certified_error:.4g}, violations {cres.violations} (labels {cres.label_violations}), "
            f"simulator bit-exact {cres.bit_exact}"
        )
        return 0 if ok else 1
    res = verify_hls4ml_dir(args.dir, args.samples, args.search_iters, args.seed, progress)
    ok = res.violations == 0 and res.bit_exact
    print(
        f"verify {'OK' if ok else 'FAILED'}: {res.samples} inputs through hls4ml's compiled model, "
        f"max observed "
        f"error {res.max_observed_error:.4g}, certified {res.certified_error:.4g} (ratio {res.ratio:.3g}), "
        f"violations {res.violations}, simulator bit-exact {res.bit_exact}"
    )
    return 0 if ok else 1
