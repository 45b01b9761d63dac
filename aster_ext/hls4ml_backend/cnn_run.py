"""``quantize --backend hls4ml`` and ``verify`` for CNN classifiers (regions from the spec).

quantize: load the ONNX model and its spec's regions (input box + label), compute each region's
real ranges and margin lower bounds (the graph backbone's back-substitution), choose per-layer
types certifying ε on the logits over every region (:func:`.cnn.choose_types`), let hls4ml
generate and compile ``hls4ml_prj/`` with that config, read the types and weights back from
hls4ml's model, certify *that* program from scratch, and check our simulator bit for bit against
``hls_model.predict`` on random and corner inputs of every region before anything is written.
``report.json``: ``certified_error`` (max over regions and logits) and per region its bound and
whether top-1 is preserved on the whole box.

verify: rebuild the program from the report's types, run the project's compiled library on
random, corner and adversarially searched inputs of every region, compare it bit for bit with the
simulator and against the real network and the certificate (logit error and label).
"""

from __future__ import annotations

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
from ..ir import Network
from . import cnn as C
from . import cnn_project as CP
from . import project as P
from .attack import box_local_search
from .types import HlsType

CNN_KINDS = frozenset({"conv2d", "conv1d", "maxpool", "avgpool"})


def is_cnn(net: Network) -> bool:
    return any(op.kind in CNN_KINDS for op in net.ops())


@dataclass
class CnnResult:
    program: C.CnnProgram
    certificate: C.CnnCertificate
    structure: C.CnnStructure
    regions: list[C.RegionRanges]
    config: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    hls_model: Any = None
    out_dir: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)


def load_regions(net: Network, spec: Any) -> list[C.RegionRanges]:
    from ..classify import regions_from_spec
    from ..graph_program.certify import prepare

    s = C.structure(net)
    if spec is None:
        raise UserError(f"{net.name}: a CNN needs a classification spec with 'regions' (--spec FILE)")
    if not spec.extra.get("regions"):
        raise UserError(
            f"{net.name}: --backend hls4ml on a CNN certifies --error on the spec's 'regions' and "
            f"spec '{spec.name}' has none; for an ε over the whole input box use the default backend "
            "(--task regress --error EPS)"
        )
    return [C.region_ranges(s, prepare(net, r)) for r in regions_from_spec(spec, net)]


def analyse_cnn(
    model_path: Path, spec_path: Path | None
) -> tuple[Network, C.CnnStructure, list[C.RegionRanges], dict[str, float]]:
    t = time.perf_counter()
    net, spec = load_model(model_path, spec_path)
    s = C.structure(net)  # a one-line UnsupportedError for layer kinds not modelled
    regions = load_regions(net, spec)
    return net, s, regions, {"load_s": time.perf_counter() - t}


def check_options(opts: Any) -> None:
    """io_parallel and io_stream, Latency and Resource. Resource performs the same products, bias
    cast, accum_t additions and result cast as Latency (``nnet_conv2d_resource.h``,
    ``nnet_dense_resource.h``) in another order when ReuseFactor > 1: the same bits with WRAP
    accumulators (modular), and certified SAT ones cannot saturate; io_stream: see
    :class:`.cnn.CnnProgram` ``stream``."""
    if opts.io_type not in ("io_parallel", "io_stream") or opts.strategy not in ("Latency", "Resource"):
        raise UserError(
            f"--backend hls4ml for CNNs models io_parallel/io_stream with the Latency/Resource strategy "
            f"(got {opts.io_type}, {opts.strategy})"
        )


def region_inputs(regions: list[C.RegionRanges], n_random: int, n_corner: int, seed: int = 0) -> np.ndarray:
    """Random points and random corners of every region's box (network input order)."""
    rng = np.random.default_rng(seed)
    xs = []
    for r in regions:
        lo, hi = np.asarray(r.lower, float), np.asarray(r.upper, float)
        xs.append(lo + (hi - lo) * rng.random((n_random, lo.size)))
        xs.append(np.where(rng.random((n_corner, lo.size)) < 0.5, hi, lo))
        xs.append(np.stack([lo, hi, (lo + hi) / 2]))
    return np.concatenate(xs)


def predict(hls_model: Any, program: C.CnnProgram, x: np.ndarray) -> np.ndarray:
    """hls_model.predict on network-order (CHW) inputs: with more than one input channel hls4ml
    keeps qonnx's input Transpose as its first layer (checked by :func:`.cnn_project.read_back`),
    with one channel CHW and HWC orders coincide."""
    return P.predict(hls_model, np.atleast_2d(x))


def quantize_hls4ml_cnn(
    model_path: Path,
    opts: Any,
    out_dir: Path | None,
    progress: Callable[[str], None] | None = None,
    build: bool = True,
) -> CnnResult:
    if opts.error <= 0 or not np.isfinite(opts.error):
        raise UserError(f"--error must be a positive number, got {opts.error}")
    check_options(opts)
    model_path = Path(model_path)
    net, s, regions, timings = analyse_cnn(model_path, opts.spec_path)
    t = time.perf_counter()
    res = C.choose_types(s, regions, opts.error, stream=opts.io_type == "io_stream")
    timings["certify_s"] = time.perf_counter() - t
    if progress:
        progress(
            f"types chosen: certified {res.certificate.max_bound:.4g} <= {opts.error:g} "
            f"({res.evaluations} candidates)"
        )
    result = CnnResult(res.program, res.certificate, s, regions, timings=timings)
    if not build:
        result.report = _report(net, opts, model_path, res.program, res.certificate, timings, None)
        return result
    P.require_hls4ml()
    out_dir = Path(out_dir) if out_dir is not None else Path("out") / model_path.stem
    protected = [model_path] + ([Path(opts.spec_path)] if opts.spec_path is not None else [])
    with P.project_folder(out_dir, protected):
        t = time.perf_counter()
        cleaned = CP.cleaned_model(model_path)
        cfg = CP.cnn_config(cleaned, res.program, opts.strategy, opts.reuse_factor)
        hls_model = P.convert(
            cleaned, cfg, out_dir / "hls4ml_prj", opts.io_type, opts.strategy, opts.reuse_factor
        )
        timings["hls4ml_convert_s"] = time.perf_counter() - t
        built = CP.read_back(hls_model, res.program, cleaned)
        cert = C.certify(s, regions, built)
        if not cert.ok or cert.max_bound > opts.error:
            why = "; ".join(cert.overflow) or f"bound {cert.max_bound:.4g}"
            raise UserError(f"the project hls4ml built does not certify ε = {opts.error:g}: {why}")
        t = time.perf_counter()
        P.compile_model(hls_model)
        timings["hls4ml_compile_s"] = time.perf_counter() - t
        xs = region_inputs(regions, max(opts.smoke_samples // len(regions), 1), 8)
        y_hls = predict(hls_model, built, xs)
        mismatch = int(np.sum(np.any(y_hls != C.simulate(built, xs), axis=1)))
        if mismatch:
            raise UserError(
                f"our simulator disagrees with hls4ml's C simulation on {mismatch} of {len(xs)} inputs: "
                "this configuration is not modelled"
            )
        from .run import _write_config

        _write_config(out_dir, {**cfg, "IOType": opts.io_type, "Backend": "Vivado"})
        report = _report(net, opts, model_path, built, cert, timings, hls_model)
        report["smoke_bit_exact_samples"] = len(xs)
        (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    result.program, result.certificate, result.config, result.report = built, cert, cfg, report
    result.hls_model, result.out_dir = hls_model, out_dir
    return result


def types_json(program: C.CnnProgram) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"stage": "input", "result": program.input_t.to_string()}]
    for st in program.stages:
        if isinstance(st, C.LinearStage):
            d = st.dense
            out.append(
                {
                    "stage": st.name,
                    "kind": "dense" if st.gather is None else "conv",
                    "weight": d.weight_t.to_string(),
                    "bias": d.bias_t.to_string(),
                    "accum": d.accum_t.to_string(),
                    "result": d.result_t.to_string(),
                }
            )
        elif isinstance(st, C.ReluStage):
            out.append({"stage": st.name, "kind": "relu", "result": st.result_t.to_string()})
        elif isinstance(st, C.AddStage):
            out.append({"stage": st.name, "kind": "add", "result": st.result_t.to_string()})
        else:
            out.append(
                {
                    "stage": st.name,
                    "kind": f"{st.kind}pool",
                    "accum": st.accum_t.to_string(),
                    "result": st.result_t.to_string(),
                }
            )
    return out


def program_from_types(
    s: C.CnnStructure, types: list[dict[str, Any]], stream: bool = False
) -> C.CnnProgram:
    """Rebuild the program from report.json's types (matched to the layers by name, in the
    report's order) and the network's real parameters."""
    by_node = {ly.node: ly for ly in s.layers}
    names = [d.get("stage") for d in types[1:]]
    if len(types) != len(s.layers) + 1 or sorted(map(str, names)) != sorted(by_node):
        raise UserError("report.json: the types do not match the network's layers")
    stages: list[C.Stage] = []
    for d in types[1:]:
        ly = by_node[d["stage"]]
        if d.get("kind", ly.kind) != ly.kind:
            raise UserError(f"report.json: stage {ly.node} is a {ly.kind}, not {d.get('kind')}")
        if any(src != s.net.input_name and src not in {st.node for st in stages} for src in ly.src):
            raise UserError(f"report.json: stage {ly.node} comes before the layers it reads")
        res_t = HlsType.parse(d["result"])
        if ly.kind == "add":
            stages.append(C.AddStage(ly.node, ly.node, res_t, ly.n_in, ly.src))
        elif ly.kind in ("conv", "dense"):
            assert ly.weight is not None and ly.bias is not None
            dense = C.DenseStage(
                ly.node,
                ly.weight,
                ly.bias,
                HlsType.parse(d["weight"]),
                HlsType.parse(d["bias"]),
                HlsType.parse(d["accum"]),
                res_t,
            )
            stages.append(C.LinearStage(ly.node, ly.node, dense, ly.gather, ly.kind == "dense", ly.src))
        elif ly.kind == "relu":
            stages.append(C.ReluStage(ly.node, ly.node, res_t, ly.src))
        else:
            assert ly.windows is not None
            kind = "max" if ly.kind == "maxpool" else "avg"
            stages.append(
                C.PoolStage(ly.node, ly.node, kind, ly.windows, HlsType.parse(d["accum"]), res_t, ly.src)
            )
    return C.CnnProgram(HlsType.parse(types[0]["result"]), s.input_perm, stages, s.net.input_name, stream)


def _report(
    net: Network,
    opts: Any,
    model_path: Path,
    program: C.CnnProgram,
    cert: C.CnnCertificate,
    timings: dict[str, float],
    hls_model: Any,
) -> dict[str, Any]:
    version = None
    if hls_model is not None:
        import hls4ml

        version = hls4ml.__version__
    regions = []
    for r in cert.regions:
        others = np.delete(np.arange(r.margin_lb.size), r.label)
        slack = C.down(r.margin_lb + r.margin_error_lo())[others]
        regions.append(
            {
                "name": r.name,
                "label": r.label,
                "certified_error": r.max_bound,
                "margin_lb_min": float(np.min(r.margin_lb[others])),
                "margin_slack_min": float(np.min(slack)),
                "top1_preserved": r.top1_preserved,
            }
        )
    return {
        "network": net.name,
        "backend": "hls4ml",
        "task": "classification",
        "hls4ml_version": version,
        "model_path": str(Path(model_path).resolve()),
        "model_sha256": hashlib.sha256(Path(model_path).read_bytes()).hexdigest(),
        "spec_path": str(Path(opts.spec_path).resolve()) if opts.spec_path is not None else None,
        "target_error": opts.error,
        "certified_error": cert.max_bound,
        "certified_per_output": [float(v) for v in cert.bound],
        "regions": regions,
        "sound": True,
        "io_type": opts.io_type,
        "strategy": opts.strategy,
        "reuse_factor": opts.reuse_factor,
        "types": types_json(program),
        "cost": C.program_cost(program),
        "timings": timings,
        "project_dir": "hls4ml_prj",
    }


# ---------------------------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------------------------


@dataclass
class CnnVerifyResult:
    samples: int
    max_observed_error: float
    certified_error: float
    violations: int
    label_violations: int
    bit_exact: bool
    mismatches: int
    time_s: float

    @property
    def ratio(self) -> float:
        return self.certified_error / self.max_observed_error if self.max_observed_error > 0 else float("inf")


def adversarial_inputs(
    program: C.CnnProgram,
    s: C.CnnStructure,
    rr: C.RegionRanges,
    bound: np.ndarray,
    rng: np.random.Generator,
    iters: int = 30,
    keep: int = 4,
    samples: int = 8,
) -> np.ndarray:
    """Local random search in the box for large |simulator - real| / bound (the simulator is
    bit-exact with the library), starting from corners and random points."""
    lo, hi = np.asarray(rr.lower, float), np.asarray(rr.upper, float)

    def score(x: np.ndarray) -> np.ndarray:
        return np.max(np.abs(C.simulate(program, x) - C.real_forward(s, x)) / bound, axis=1)

    x0 = np.concatenate(
        [lo + (hi - lo) * rng.random((16, lo.size)), np.where(rng.random((16, lo.size)) < 0.5, hi, lo)]
    )
    return box_local_search(score, x0, lo, hi, rng, iters, keep, samples, first=0, cycle=6)


def verify_cnn_dir(
    out_dir: Path, samples: int = 200, search_iters: int = 30, seed: int = 0
) -> CnnVerifyResult:
    from .run import CompiledProject

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    report = json.loads((out_dir / "report.json").read_text())
    model_path = Path(report["model_path"])
    if hashlib.sha256(model_path.read_bytes()).hexdigest() != report["model_sha256"]:
        raise UserError(f"{out_dir}: {model_path} changed since it was quantised (sha256 differs)")
    spec_path = Path(report["spec_path"]) if report.get("spec_path") else None
    net, s, regions, _ = analyse_cnn(model_path, spec_path)
    program = program_from_types(s, report["types"], report.get("io_type") == "io_stream")
    cert = C.certify(s, regions, program)
    bound = np.asarray(report["certified_per_output"], dtype=np.float64)
    if not cert.ok or np.any(cert.bound > bound * (1 + 1e-9)):
        raise UserError(f"{out_dir}: re-certification does not reproduce the report's bound")
    lib = CompiledProject(out_dir / report["project_dir"])
    n_out = int(bound.size)
    rng = np.random.default_rng(seed)
    xs, labels = [], []
    for k, rr in enumerate(regions):
        per = region_inputs([rr], max(samples // len(regions), 1), 16, seed + k)
        adv = adversarial_inputs(program, s, rr, cert.regions[k].bound, rng, iters=search_iters)
        xs += [per, adv]
        labels += [np.full(len(per) + len(adv), k)]
    x = np.concatenate(xs)
    reg = np.concatenate(labels)
    y_lib = lib(x, n_out)
    mism = int(np.sum(np.any(y_lib != C.simulate(program, x), axis=1)))
    ref = C.real_forward(s, x)
    err = np.abs(y_lib - ref)
    per_bound = np.stack([cert.regions[k].bound for k in reg])
    violations = int(np.sum(np.any(err > per_bound * (1 + 1e-9) + 2.0**-60, axis=1)))
    label_viol = 0
    for k, rc in enumerate(cert.regions):
        if rc.top1_preserved:
            label_viol += int(np.sum(np.argmax(y_lib[reg == k], axis=1) != rc.label))
    res = CnnVerifyResult(
        int(x.shape[0]),
        float(err.max()),
        float(bound.max()),
        violations,
        label_viol,
        mism == 0,
        mism,
        time.perf_counter() - t0,
    )
    (out_dir / "verify.json").write_text(json.dumps(res.__dict__, indent=1))
    return res
