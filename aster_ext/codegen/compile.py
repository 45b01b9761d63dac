"""Compile generated C++ with g++ against the real Xilinx ``ap_types`` headers, and run harnesses.

The headers come from the ``hls4ml`` wheel (``hls4ml/templates/vivado/ap_types``); hls4ml is
located with ``importlib.util.find_spec`` and never imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import UserError

CXX_STD = "-std=c++14"


class CompileError(RuntimeError):
    """g++ rejected generated code (a code-generator bug, not a user error)."""


def find_ap_types() -> Path:
    """Directory holding ``ap_fixed.h`` (from the installed hls4ml wheel)."""
    spec = importlib.util.find_spec("hls4ml")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the Xilinx ap_types headers are needed to compile the generated C++; they ship with "
            "the hls4ml wheel: pip install hls4ml"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "templates" / "vivado" / "ap_types"
    if not (path / "ap_fixed.h").is_file():
        raise UserError(f"hls4ml is installed but {path / 'ap_fixed.h'} is missing")
    return path


def find_cxx() -> str:
    """The C++ compiler: $CXX or g++ on PATH."""
    cxx = os.environ.get("CXX", "g++")
    found = shutil.which(cxx)
    if found is None:
        raise UserError(f"C++ compiler {cxx!r} not found on PATH (install g++ or set CXX)")
    return found


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        shown = "\n".join(msg[:40])
        raise CompileError(f"compilation failed ({' '.join(cmd[:2])} ... {cmd[-1]}):\n{shown}")


def compile_harness(
    cpp_files: Sequence[Path],
    out_binary: Path,
    opt: str = "-O1",
    include_dirs: Sequence[Path] = (),
    jobs: int | None = None,
    extra_flags: Sequence[str] = (),
    pch_dir: Path | None = None,
) -> Path:
    """Compile ``cpp_files`` (each its own translation unit, in parallel) and link ``out_binary``.

    Include path: the ap_types headers, the folder of every source file, then ``include_dirs``.
    With ``pch_dir`` every unit is compiled with ``ap_fixed.h`` precompiled (``precompiled_ap_fixed``,
    built once per compiler, flags and header contents): the same code with the same types (g++
    emits the same object code) without parsing the ap_types headers once per unit.
    """
    cxx = find_cxx()
    ap = find_ap_types()
    files = [Path(f).resolve() for f in cpp_files]
    incs: list[Path] = [ap]
    for d in [*(f.parent for f in files), *(Path(d).resolve() for d in include_dirs)]:
        if d not in incs:
            incs.append(d)
    flags = [CXX_STD, opt, "-Wno-unknown-pragmas", *extra_flags, *(f"-I{d}" for d in incs)]
    if pch_dir is not None:
        header = precompiled_ap_fixed(Path(pch_dir), cxx, [CXX_STD, opt, *extra_flags], ap)
        flags += ["-Winvalid-pch", "-include", str(header)]
    out_binary = Path(out_binary)
    out_binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aster-ext-obj-", dir=out_binary.parent) as tmp:
        objs = [Path(tmp) / f"{i}_{f.stem}.o" for i, f in enumerate(files)]
        cmds = [[cxx, *flags, "-c", str(f), "-o", str(o)] for f, o in zip(files, objs, strict=True)]
        n_jobs = jobs or max(1, min(len(cmds), os.cpu_count() or 1))
        with ThreadPoolExecutor(n_jobs) as pool:
            for fut in [pool.submit(_run, c) for c in cmds]:
                fut.result()
        _run([cxx, *(str(o) for o in objs), "-o", str(out_binary)])
    return out_binary


def precompiled_ap_fixed(folder: Path, cxx: str, flags: Sequence[str], ap: Path) -> Path:
    """``folder/<key>/ap_fixed.h`` (a link to the real header) beside its precompiled
    ``ap_fixed.h.gch``; ``<key>``: SHA-256 of the compiler's version text and path, the flags and the
    name and bytes of every file of the ap_types folder, so another compiler, other flags or other
    headers never use it. Built on first use (atomically: concurrent builders keep the first).
    ``-include`` of the returned path reads the .gch; were it unusable, g++ reads the linked header
    (``-Winvalid-pch`` says so), so the code compiled is the same either way."""
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    h = hashlib.sha256(f"{cxx}\0{version}\0{' '.join(flags)}\0".encode())
    for f in sorted(p for p in ap.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(ap)).encode() + b"\0" + f.read_bytes())
    target = Path(folder) / h.hexdigest()[:24]
    header = target / "ap_fixed.h"
    if (target / "ap_fixed.h.gch").is_file():
        return header
    Path(folder).mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".pch-", dir=folder))
    try:
        (build / "ap_fixed.h").symlink_to(ap / "ap_fixed.h")
        _run([cxx, *flags, "-Wno-unknown-pragmas", f"-I{ap}", "-x", "c++-header", str(ap / "ap_fixed.h"),
              "-o", str(build / "ap_fixed.h.gch")])  # fmt: skip
        try:
            build.rename(target)
        except OSError:  # another process built it meanwhile: keep theirs
            pass
    finally:
        if build.exists():
            shutil.rmtree(build)
    return header


def run_harness(
    binary: Path,
    x_raw: np.ndarray,
    args: Sequence[str] = (),
    timeout: float | None = None,
    check_stderr: bool = True,
) -> np.ndarray:
    """Feed raw input rows to a harness binary; returns its raw outputs as an object int array.

    With ``check_stderr`` any text on stderr (ap_types C-simulation warnings) is an error.
    """
    rows = np.asarray(x_raw, dtype=object)
    if rows.ndim == 1:
        rows = rows[None, :]
    text = "".join(" ".join(str(int(v)) for v in row) + "\n" for row in rows)
    proc = subprocess.run([str(binary), *args], input=text, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"harness {binary} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    if check_stderr and proc.stderr.strip():
        raise RuntimeError(f"harness {binary} wrote to stderr: {proc.stderr.strip()[:2000]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if len(lines) != rows.shape[0]:
        raise RuntimeError(f"harness {binary} printed {len(lines)} lines for {rows.shape[0]} samples")
    out = [[int(t) for t in ln.split()] for ln in lines]
    width = {len(r) for r in out}
    if len(width) > 1:
        raise RuntimeError(f"harness {binary} printed rows of different lengths {sorted(width)}")
    arr = np.empty((len(out), width.pop() if out else 0), dtype=object)
    for i, r in enumerate(out):
        arr[i, :] = r
    return arr
