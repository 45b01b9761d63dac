"""JPype bridge: clear errors without a build; a real run only where ASTER_HOME names one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aster_ext.bridge import aster_classpath, find_aster_home
from aster_ext.errors import UserError


def test_unset_home_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="ASTER_HOME is not set"):
        find_aster_home({})


def test_home_without_build_is_a_clear_error(tmp_path: Path) -> None:
    home = find_aster_home({"ASTER_HOME": str(tmp_path)})
    with pytest.raises(UserError, match="no built jars or classes"):
        aster_classpath(home)


def test_classpath_collects_classes_and_jars(tmp_path: Path) -> None:
    (tmp_path / "target" / "scala-2.12" / "classes").mkdir(parents=True)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "dep.jar").write_bytes(b"PK")
    cp = aster_classpath(tmp_path)
    assert any(p.endswith("classes") for p in cp) and any(p.endswith("dep.jar") for p in cp)


@pytest.mark.skipif(
    not os.environ.get("ASTER_HOME"), reason="optional: needs a user's build of the original Aster"
)
def test_original_runs_when_available() -> None:
    from aster_ext.bridge import run_original

    out = run_original(["--help"])
    assert isinstance(out, str)
