"""Safe output directories: the tool never deletes or overwrites a file it did not write.

Rules for ``quantize --out DIR`` (checked before any analysis runs, and again when moving):

- refused outright: an empty name, ``/``, the current folder, the home folder, and the folder of
  the model or spec file or any parent of those folders;
- DIR absent: the outputs are written into a fresh temporary folder beside DIR
  (``.NAME.tmp-*``), which is renamed to DIR (one atomic ``os.rename``) only when every file is
  written; missing parent folders are created and removed again on failure;
- DIR an empty folder: the finished files are moved into it (the folder itself, its permissions
  and owner are kept);
- DIR a non-empty folder: refused unless it holds the marker ``MARKER`` written by an earlier
  run, and then only with ``force``; the files the marker lists (with their sha256) are replaced
  or removed, every other file is left alone; a listed file whose content changed since the tool
  wrote it, or a new output whose name collides with a file the marker does not list, is refused;
- DIR an existing file: refused.

On any failure, KeyboardInterrupt included, the temporary folder (the tool's own) is removed and
nothing else has changed. New folders get the permissions the umask gives (0777 & ~umask).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError

MARKER = ".aster_ext-output.json"
MARKER_TOOL = "aster_ext"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def read_marker(out_dir: Path) -> dict[str, str | list[str]] | None:
    """{file name: sha256} of the files an earlier run wrote into ``out_dir``, or None.

    While ``--force`` moves new files in, a name maps to [old sha256, new sha256] (either content
    is the tool's), so an interrupted replacement can be finished by running again."""
    path = Path(out_dir) / MARKER
    if not path.is_file() or path.is_symlink():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if data.get("tool") != MARKER_TOOL or not isinstance(files, dict):
        return None
    for k, v in files.items():
        digests = v if isinstance(v, list) else [v]
        if not (
            isinstance(k, str) and _plain_name(k) and digests and all(isinstance(d, str) for d in digests)
        ):
            return None
    return dict(files)


def is_tools_file(path: Path, listed: dict[str, str | list[str]] | None) -> bool:
    """``path`` is a plain file the marker lists with its current content."""
    if listed is None or path.name not in listed or path.is_symlink() or not path.is_file():
        return False
    accepted = listed[path.name]
    return _sha256(path) in (accepted if isinstance(accepted, list) else [accepted])


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..", MARKER) and "/" not in name and "\\" not in name


def write_marker(out_dir: Path, files: dict[str, str | list[str]]) -> None:
    """Write the marker atomically (temporary file in ``out_dir``, then ``os.replace``)."""
    text = json.dumps({"tool": MARKER_TOOL, "version": 1, "files": dict(sorted(files.items()))}, indent=1)
    fd, tmp = tempfile.mkstemp(prefix=".aster_ext-marker-", dir=out_dir)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, Path(out_dir) / MARKER)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _is_within(path: Path, folder: Path) -> bool:
    """``path`` equals ``folder`` or lies below it (both resolved)."""
    return path == folder or folder in path.parents


@dataclass
class OutputPlan:
    """A validated output folder (see the module docstring); ``commit`` writes it."""

    target: Path  # resolved DIR
    shown: str  # DIR as the user wrote it (messages)
    force: bool = False
    protected: list[Path] = field(default_factory=list)

    @classmethod
    def prepare(
        cls, out_dir: str | Path, protected_files: Iterable[Path] = (), force: bool = False
    ) -> OutputPlan:
        """Validate ``out_dir`` against the rules; ``protected_files`` are the model and spec files."""
        shown = str(out_dir)
        if shown.strip() == "":
            raise UserError("--out is empty: name a new folder for the outputs")
        target = Path(out_dir).expanduser().resolve()
        folders = [Path(p).expanduser().resolve().parent for p in protected_files]
        plan = cls(target, shown, force, folders)
        plan.check()
        return plan

    def check(self) -> None:
        """Raise UserError unless writing the outputs to ``target`` is allowed now."""
        t, shown = self.target, self.shown
        if t == Path(t.anchor):
            raise UserError(f"--out {shown}: refusing to write into the root folder")
        if t == Path.cwd().resolve():
            raise UserError(f"--out {shown}: refusing to write into the current folder; name a new subfolder")
        home = Path.home().resolve()
        if t == home:
            raise UserError(f"--out {shown}: refusing to write into the home folder; name a new subfolder")
        for folder in self.protected:
            if _is_within(folder, t):
                what = "is the folder of" if folder == t else "contains"
                raise UserError(
                    f"--out {shown}: refusing: it {what} the model/spec ({folder}); name a new folder"
                )
        if t.is_symlink() or (t.exists() and not t.is_dir()):
            raise UserError(f"--out {shown}: exists and is not a folder; name a new folder")
        anc = t.parent
        while not anc.exists():
            anc = anc.parent
        if not anc.is_dir():
            raise UserError(f"--out {shown}: {anc} is a file, not a folder")
        if t.is_dir():
            entries = [p.name for p in t.iterdir()]
            if not entries:
                return
            listed = read_marker(t)
            if listed is None:
                raise UserError(
                    f"--out {shown}: folder exists and is not empty (and is not an aster_ext output); "
                    "name a new folder"
                )
            if not self.force:
                raise UserError(
                    f"--out {shown}: holds an earlier aster_ext output; pass --force to replace its files "
                    "(other files are kept)"
                )
            for name in listed:
                p = t / name
                if p.is_symlink() or (p.exists() and not is_tools_file(p, listed)):
                    raise UserError(
                        f"--out {shown}: {name} changed since aster_ext wrote it; move it away or choose "
                        "another folder"
                    )

    def commit(self, write: Callable[[Path], None]) -> None:
        """Run ``write(tmp)`` into a fresh temporary folder beside ``target``, then move into place."""
        self.check()
        t = self.target
        created: list[Path] = []
        anc = t.parent
        while not anc.exists():
            created.append(anc)
            anc = anc.parent
        tmp: Path | None = None
        try:
            for d in reversed(created):
                d.mkdir()
            tmp = Path(tempfile.mkdtemp(prefix=f".{t.name}.tmp-", dir=t.parent))
            write(tmp)
            names = sorted(p.name for p in tmp.iterdir())
            for n in names:
                if not _plain_name(n) or not (tmp / n).is_file() or (tmp / n).is_symlink():
                    raise RuntimeError(f"output writer produced {n!r}, not a plain file: a bug")
            digests = {n: _sha256(tmp / n) for n in names}
            write_marker(tmp, digests)
            self.check()  # the folder may have changed while the analysis ran
            if not t.exists():
                os.chmod(tmp, 0o777 & ~_umask())
                os.rename(tmp, t)
                tmp = None
                return
            self._move_into(tmp, digests)
        except BaseException:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            for d in created:  # deepest first; only folders this call created
                try:
                    d.rmdir()
                except FileNotFoundError:
                    continue
                except OSError:
                    break
            raise
        shutil.rmtree(tmp, ignore_errors=True)

    def _move_into(self, tmp: Path, digests: dict[str, str]) -> None:
        """Move the finished files into the existing ``target`` (empty, or an earlier output)."""
        t = self.target
        old = read_marker(t) or {}
        for n in digests:
            if (t / n).exists() and n not in old:
                raise UserError(
                    f"--out {self.shown}: {n} exists and was not written by aster_ext; not replaced"
                )
        # while files move, both the old and the new content count as the tool's (read_marker)
        both: dict[str, str | list[str]] = {}
        for n in set(old) | set(digests):
            before = old.get(n, [])
            both[n] = [*(before if isinstance(before, list) else [before])] + (
                [digests[n]] if n in digests else []
            )
        if old:
            write_marker(t, both)
        for n in digests:
            os.replace(tmp / n, t / n)
        for n in old:
            if n not in digests and is_tools_file(t / n, old):
                (t / n).unlink()
        os.replace(tmp / MARKER, t / MARKER)


def record_output_file(out_dir: Path, name: str, text: str) -> None:
    """Write ``out_dir/name`` (a file of the tool's own, e.g. verify.json) and list it in the marker.

    Refused (UserError) when ``name`` exists and the marker does not list it with its current
    content: that file is not the tool's to overwrite."""
    out_dir = Path(out_dir)
    check_output_file(out_dir, name)
    listed = read_marker(out_dir)
    path = out_dir / name
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.tmp-", dir=out_dir)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if listed is not None:
        listed[name] = _sha256(path)
        write_marker(out_dir, listed)


def check_output_file(out_dir: Path, name: str) -> None:
    """Raise UserError now (before long work) if :func:`record_output_file` would refuse ``name``."""
    path = Path(out_dir) / name
    if path.is_symlink() or (path.exists() and not is_tools_file(path, read_marker(Path(out_dir)))):
        raise UserError(
            f"{path} exists and is not recorded as written by aster_ext (in {MARKER}); "
            "not overwritten: move it away"
        )
