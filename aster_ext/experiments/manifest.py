"""``results/MANIFEST.json``: what produced the tables (commit, versions, CPU, date, seeds, wall times)."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError

PACKAGES = (
    "aster_ext",
    "numpy",
    "scipy",
    "highspy",
    "onnx",
    "onnxruntime",
    "python-flint",
    "mpmath",
    "networkx",
    "jpype1",
    "rich",
    "matplotlib",
    "ray",
)


def _git(repo: Path, *args: str, strip: bool = True) -> str:
    """Output of ``git -C repo ARGS`` (``strip``: without surrounding white space);
    CalledProcessError / OSError when it fails."""
    out = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return out.strip() if strip else out


def git_commit(repo: Path) -> dict[str, Any]:
    """HEAD of the checkout holding the package, and whether its tracked files differ from it."""
    try:
        head = _git(repo, "rev-parse", "HEAD")
        return {"commit": head, "dirty": bool(_git(repo, "status", "--porcelain", "-uno"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    try:
        from highspy import _core

        out["HiGHS"] = f"{_core.HIGHS_VERSION_MAJOR}.{_core.HIGHS_VERSION_MINOR}.{_core.HIGHS_VERSION_PATCH}"
    except Exception:  # the version query is informational only
        out["HiGHS"] = None
    out["python"] = sys.version.split()[0]
    return out


def cpu() -> dict[str, Any]:
    model = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "model": model,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
    }


def build_manifest(tables: dict[str, dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    """``tables``: per table, its files, wall time and the sweep that fed it; ``extra``: run options."""
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **git_commit(Path(__file__).resolve().parents[2]),
        "packages": package_versions(),
        "cpu": cpu(),
        **extra,  # may override commit/dirty with the state at the start of the run
        "tables": tables,
    }


def check_manifest_is_ours(path: Path) -> None:
    """UserError unless ``path`` is absent or a manifest this tool wrote (a JSON object with a
    ``tables`` object): someone else's MANIFEST.json is never replaced."""
    if not path.exists():
        return
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not (isinstance(data, dict) and isinstance(data.get("tables"), dict)):
        raise UserError(f"{path} is not a manifest written by aster-ext; not replacing it (move it away)")


def owned_files(manifest: dict[str, Any]) -> set[str]:
    """The files of its results folder that ``manifest`` says this tool wrote (paths relative to the
    folder): every table entry's ``files`` (failed entries included) and the ``written_files`` list
    that each reproduction extends with what it planned to write."""
    tables = manifest.get("tables")
    owned = {str(f) for f in manifest.get("written_files") or []}
    for entry in tables.values() if isinstance(tables, dict) else []:
        if isinstance(entry, dict):
            owned |= {str(f) for f in entry.get("files") or []}
    return owned


def git_tracked(repo: Path, folder: Path) -> set[str]:
    """Files under ``folder`` that the git checkout ``repo`` tracks, relative to ``folder`` (the
    project's own committed tables); empty when ``repo`` is not a checkout or git is missing."""
    base = folder.resolve()
    try:  # ls-files names paths relative to the folder git runs in (-C repo)
        out = _git(repo, "ls-files", "-z", "--", str(base), strip=False)
    except (OSError, subprocess.SubprocessError):
        return set()
    paths = ((repo.resolve() / name).resolve() for name in out.split("\0") if name)
    return {str(p.relative_to(base)) for p in paths if p.is_relative_to(base)}


def check_files_are_ours(
    results: Path, files: list[str], also_ours: set[str] | frozenset[str] = frozenset()
) -> None:
    """UserError unless each of ``files`` (relative to ``results``) is absent there or was written by
    this tool: listed by the folder's MANIFEST.json (:func:`owned_files`) or in ``also_ours``. A table
    of the same name as a user's file in a ``--results`` folder is never written over it."""
    owned = owned_files(read_manifest(results / "MANIFEST.json")) | set(also_ours)
    foreign = [f for f in files if (results / f).exists() and f not in owned]
    if foreign:
        shown = ", ".join(foreign[:6]) + (f" and {len(foreign) - 6} more" if len(foreign) > 6 else "")
        raise UserError(
            f"{results} holds files this tool did not write and would replace: {shown}; "
            "choose an empty --results folder or move them away"
        )


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` to ``path`` atomically (a reader never sees a half-written file); a file
    there that is not one of our manifests is refused (:func:`check_manifest_is_ours`)."""
    check_manifest_is_ours(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, path)


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at ``path``; {} when there is none or it cannot be read as JSON."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
