"""quantize --out / verify never delete or overwrite a file the tool did not write (issue 8).

Every case measured in the issue is here: an existing folder with unrelated files, '.', '',
the model's own folder, permissions of the output folder, plus --force on an earlier output,
failures and Ctrl-C leaving nothing behind, and a hypothesis test over random --out choices in
a sandbox whose every pre-existing file and folder is hashed before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aster_ext import pipeline
from aster_ext.cli import main
from aster_ext.outdir import MARKER, read_marker

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tiny_controller.scala"
FAST = ["--error", "1e-3", "--mode", "aster-sound", "--quiet"]  # ~1 s on the tiny example


def _run(args: list[object]) -> int:
    return main([str(a) for a in args])


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file and folder below ``root``: content hash (or 'dir') and permission bits."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            kind = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            snap[rel] = (kind, stat.S_IMODE(p.lstat().st_mode))
    return snap


def _assert_preserved(before: dict[str, tuple[str, int]], after: dict[str, tuple[str, int]]) -> None:
    changed = {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v}
    assert not changed, f"pre-existing entries changed or deleted: {changed}"


def _no_temp_left(folder: Path) -> None:
    left = [p for p in folder.rglob(".*") if ".tmp-" in p.name]
    assert not left, left


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("aster-ext: error:"), err
    return err[0]


def _user_tree(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "keep.txt").write_text("user data")
    (root / "sub").mkdir()
    (root / "sub" / "more.bin").write_bytes(b"\x00\x01\x02")


def test_existing_folder_with_user_files_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Measured: an existing folder with keep.txt and a subfolder was deleted, exit 0."""
    out = tmp_path / "results"
    _user_tree(out)
    before = _snapshot(tmp_path)
    assert _run(["quantize", EXAMPLE, *FAST, "--out", out]) == 2
    assert "not empty" in _one_error_line(capsys)
    _assert_preserved(before, _snapshot(tmp_path))
    # --force does not make a user's folder ours
    assert _run(["quantize", EXAMPLE, *FAST, "--out", out, "--force"]) == 2
    _one_error_line(capsys)
    _assert_preserved(before, _snapshot(tmp_path))


@pytest.mark.parametrize("out", [".", "", "./", "sub/.."])
def test_current_folder_and_empty_name_are_refused(
    out: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Measured: '--out .' / '--out ""' deleted the whole current folder."""
    _user_tree(tmp_path / "work")
    monkeypatch.chdir(tmp_path / "work")
    before = _snapshot(tmp_path)
    assert _run(["quantize", EXAMPLE, *FAST, "--out", out]) == 2
    line = _one_error_line(capsys)
    assert "current folder" in line or "empty" in line
    _assert_preserved(before, _snapshot(tmp_path))
    _no_temp_left(tmp_path)


def test_model_folder_and_its_parents_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Measured: '--out' the model's folder deleted the model; verify then failed."""
    models = tmp_path / "proj" / "models"
    models.mkdir(parents=True)
    model = models / "tiny.scala"
    shutil.copy(EXAMPLE, model)
    before = _snapshot(tmp_path)
    for out in (models, models.parent, tmp_path):
        assert _run(["quantize", model, *FAST, "--out", out]) == 2
        assert "model" in _one_error_line(capsys)
    _assert_preserved(before, _snapshot(tmp_path))
    # a new folder beside the model is fine, and verify then works on it
    out = models / "out"
    assert _run(["quantize", model, *FAST, "--out", out]) == 0
    _assert_preserved(before, _snapshot(tmp_path))
    assert _run(["verify", out, "--samples", "50", "--search-iters", "2", "--no-cpp", "--quiet"]) == 0


def test_spec_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    spec = specs / "box.spec.json"
    spec.write_text(json.dumps({"input_lower": [-1, -2, -0.5], "input_upper": [1, 2, 0.5]}))
    before = _snapshot(tmp_path)
    assert _run(["quantize", EXAMPLE, *FAST, "--spec", spec, "--out", specs]) == 2
    assert "model/spec" in _one_error_line(capsys)
    _assert_preserved(before, _snapshot(tmp_path))


def test_root_home_and_file_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    _user_tree(home)
    (tmp_path / "afile.txt").write_text("x")
    monkeypatch.setenv("HOME", str(home))
    before = _snapshot(tmp_path)
    for out, word in (("/", "root"), ("~", "home"), (home, "home"), (tmp_path / "afile.txt", "not a folder"),
                      (tmp_path / "afile.txt" / "below", "is a file")):  # fmt: skip
        assert _run(["quantize", EXAMPLE, *FAST, "--out", out]) == 2
        assert word in _one_error_line(capsys), out
    _assert_preserved(before, _snapshot(tmp_path))


def test_new_folder_respects_umask_and_existing_empty_folder_keeps_its_mode(tmp_path: Path) -> None:
    """Measured: the output folder was recreated 0700."""
    old = os.umask(0o022)
    try:
        new = tmp_path / "a" / "b" / "new"
        assert _run(["quantize", EXAMPLE, *FAST, "--out", new]) == 0
        for d in (tmp_path / "a", tmp_path / "a" / "b", new):
            assert stat.S_IMODE(d.stat().st_mode) == 0o755, d
        for f in new.iterdir():
            assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
        empty = tmp_path / "empty"
        empty.mkdir()
        empty.chmod(0o750)
        ino = empty.stat().st_ino
        assert _run(["quantize", EXAMPLE, *FAST, "--out", empty]) == 0
        assert stat.S_IMODE(empty.stat().st_mode) == 0o750 and empty.stat().st_ino == ino
        assert (empty / "report.json").is_file() and read_marker(empty) is not None
    finally:
        os.umask(old)


def test_force_replaces_only_the_tools_own_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert _run(["quantize", EXAMPLE, *FAST, "--out", out]) == 0
    first = read_marker(out)
    assert first is not None and "report.json" in first and MARKER not in first
    assert set(first) == {p.name for p in out.iterdir()} - {MARKER}
    # verify.json is the tool's own file too: recorded in the marker
    assert _run(["verify", out, "--samples", "30", "--search-iters", "1", "--no-cpp", "--quiet"]) == 0
    assert "verify.json" in (read_marker(out) or {})
    (out / "mine.txt").write_text("user notes")
    # an earlier output is kept without --force
    assert _run(["quantize", EXAMPLE, *FAST, "--setting", "B", "--out", out]) == 2
    assert "--force" in _one_error_line(capsys)
    assert json.loads((out / "report.json").read_text())["setting"] == "A"
    # with --force: outputs replaced, the stale verify.json (ours) removed, mine.txt kept
    assert _run(["quantize", EXAMPLE, *FAST, "--setting", "B", "--out", out, "--force"]) == 0
    assert json.loads((out / "report.json").read_text())["setting"] == "B"
    assert (out / "mine.txt").read_text() == "user notes"
    assert not (out / "verify.json").exists()
    assert set(read_marker(out) or {}) == set(first) - {"verify.json"}
    # a listed file the user edited is no longer the tool's: --force refuses
    (out / "report.md").write_text("my edits")
    before = _snapshot(tmp_path)
    assert _run(["quantize", EXAMPLE, *FAST, "--out", out, "--force"]) == 2
    assert "report.md changed" in _one_error_line(capsys)
    _assert_preserved(before, _snapshot(tmp_path))


def test_verify_does_not_overwrite_a_foreign_verify_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert _run(["quantize", EXAMPLE, *FAST, "--out", out]) == 0
    (out / "verify.json").write_text("a user's own file")
    assert _run(["verify", out, "--samples", "30", "--search-iters", "1", "--no-cpp", "--quiet"]) == 2
    assert "not overwritten" in _one_error_line(capsys)
    assert (out / "verify.json").read_text() == "a user's own file"


@pytest.mark.parametrize("exc", [KeyboardInterrupt, OSError])
def test_failure_or_ctrl_c_while_writing_leaves_nothing(
    exc: type[BaseException],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Nothing half-written: the temporary folder and any parent folders created for it go away."""
    _user_tree(tmp_path / "user")

    def broken(program, folder, **options):  # noqa: ANN001, ANN003
        (Path(folder) / "partial.cpp").write_text("half")
        raise exc("simulated interruption")

    monkeypatch.setattr(pipeline, "generate_hls", broken)
    before = _snapshot(tmp_path)
    code = _run(["quantize", EXAMPLE, *FAST, "--out", tmp_path / "new" / "deep" / "out"])
    assert code == (130 if exc is KeyboardInterrupt else 2)
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert _snapshot(tmp_path) == before  # nothing added, nothing changed
    # the same with --force on an earlier output: its files stay as they were
    monkeypatch.undo()
    out = tmp_path / "earlier"
    assert _run(["quantize", EXAMPLE, *FAST, "--out", out]) == 0
    monkeypatch.setattr(pipeline, "generate_hls", broken)
    before = _snapshot(tmp_path)
    _run(["quantize", EXAMPLE, *FAST, "--out", out, "--force"])
    assert _snapshot(tmp_path) == before


_CHOICES = [
    "new",
    "user/new",
    "deep/a/b",
    "user",
    "user/sub",
    "emptydir",
    "models",
    "models/new",
    ".",
    "",
    "afile.txt",
    "afile.txt/x",
    "..",
    "user/..",
    "earlier",
]


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(out=st.sampled_from(_CHOICES), force=st.booleans(), absolute=st.booleans())
def test_random_out_choices_never_change_a_preexisting_file(out: str, force: bool, absolute: bool) -> None:
    """Random --out among existing / absent / file / parent paths over a sandbox tree: every
    pre-existing file and folder keeps its content and permissions (hash of the whole sandbox)."""
    base = Path(tempfile.mkdtemp(prefix="aster-ext-sandbox-"))
    cwd = Path.cwd()
    try:
        box = base / "box"
        _user_tree(box / "user")
        (box / "emptydir").mkdir()
        (box / "models").mkdir()
        shutil.copy(EXAMPLE, box / "models" / "tiny.scala")
        (box / "models" / "notes.txt").write_text("notes")
        (box / "afile.txt").write_text("a file")
        (box / "earlier").mkdir()
        (box / "earlier" / "report.json").write_text("{}")  # looks like an output, has no marker
        os.chdir(box)
        before = _snapshot(base)
        target = str(box / out) if absolute and out else out
        args = ["quantize", "models/tiny.scala", *FAST, "--out", target] + (["--force"] if force else [])
        code = _run(args)
        assert code in (0, 2)
        after = _snapshot(base)
        if out in ("emptydir",):
            assert code == 0
        if out in (
            "user",
            "user/sub",
            "models",
            ".",
            "",
            "afile.txt",
            "afile.txt/x",
            "..",
            "user/..",
            "earlier",
        ):
            assert code == 2, out
        # outputs appear only inside the requested folder
        new = set(after) - set(before)
        dest = (box / out).resolve() if out else None
        for rel in new:
            assert code == 0 and dest is not None
            p = (base / rel).resolve()
            assert p == dest or dest in p.parents or (p in dest.parents and p.is_dir()), rel
        os.chdir(cwd)
        _assert_preserved(before, after)
        _no_temp_left(base)
    finally:
        os.chdir(cwd)
        shutil.rmtree(base, ignore_errors=True)


def test_interrupted_force_replacement_can_be_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while --force moves files in: a mix of old and new files, all still the tool's;
    running again with --force completes it, and a user's file in the folder is untouched."""
    import aster_ext.outdir as outdir

    out = tmp_path / "out"
    assert _run(["quantize", EXAMPLE, *FAST, "--out", out]) == 0
    (out / "mine.txt").write_text("keep")
    real_replace = os.replace
    calls = {"n": 0}

    def flaky(src, dst):  # noqa: ANN001
        calls["n"] += 1
        if calls["n"] == 3:  # 1: the transition marker, 2: first file, 3: second file
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(outdir.os, "replace", flaky)
    assert _run(["quantize", EXAMPLE, *FAST, "--setting", "B", "--out", out, "--force"]) == 130
    monkeypatch.undo()
    _no_temp_left(tmp_path)
    assert _run(["quantize", EXAMPLE, *FAST, "--setting", "B", "--out", out, "--force"]) == 0
    assert json.loads((out / "report.json").read_text())["setting"] == "B"
    assert (out / "mine.txt").read_text() == "keep"
    assert all(isinstance(v, str) for v in (read_marker(out) or {}).values())
