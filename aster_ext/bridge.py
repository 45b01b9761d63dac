"""Optional JPype bridge to a user's existing build of the original (Scala) Aster tool.

The original cannot be vendored or built here (its build needs Maven Central and CPLEX), so
this module only *drives* a build the user already has, found through ``ASTER_HOME``: it puts
the build's jars and class folders on a JVM class path and calls the tool's main class with
the user's arguments, capturing what it prints.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError

DEFAULT_MAIN_CLASS = "daisy.Main"


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


def run_original(args: list[str], home: Path | None = None, main_class: str = DEFAULT_MAIN_CLASS) -> str:
    """Run ``main_class.main(args)`` of the user's build in an embedded JVM; returns its stdout."""
    import jpype

    root = home if home is not None else find_aster_home()
    cp = aster_classpath(root)
    if not jpype.isJVMStarted():
        jpype.startJVM(classpath=cp, convertStrings=True)
    try:
        main = jpype.JClass(main_class)
    except Exception as exc:  # jpype raises java exceptions wrapped in Python ones
        raise UserError(f"class {main_class} not found on the class path of ASTER_HOME={root}") from exc
    baos = jpype.JClass("java.io.ByteArrayOutputStream")()
    stream = jpype.JClass("java.io.PrintStream")(baos, True)
    system = jpype.JClass("java.lang.System")
    old = system.out
    system.setOut(stream)
    cwd = os.getcwd()
    try:
        os.chdir(root)
        main.main(jpype.JArray(jpype.JString)(args))
    finally:
        os.chdir(cwd)
        system.setOut(old)
    return str(baos.toString())
