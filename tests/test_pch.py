"""The precompiled ap_fixed.h of the cpp_check builds (codegen.compile.precompiled_ap_fixed): the same
binary as without it, and never reused across other headers or flags."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from aster_ext.codegen.compile import compile_harness, find_ap_types, find_cxx, precompiled_ap_fixed

pytestmark = pytest.mark.slow

SOURCE = """#include "ap_fixed.h"
#include <iostream>
int main() {
  ap_fixed<12, 3, AP_RND, AP_SAT> a = 1.3;
  ap_fixed<9, 2, AP_TRN, AP_WRAP> b = -0.7;
  ap_fixed<20, 6> c = a * b + a;
  std::cout << c.to_string(10) << " " << (a * b).to_string(2) << "\\n";
  return 0;
}
"""


def test_pch_build_gives_the_same_binary_and_output(tmp_path: Path) -> None:
    src = tmp_path / "t.cpp"
    src.write_text(SOURCE)
    plain = compile_harness([src], tmp_path / "plain")
    pch = compile_harness([src], tmp_path / "pch", pch_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*/ap_fixed.h.gch"))) == 1
    assert plain.read_bytes() == pch.read_bytes()
    out = subprocess.run([str(pch)], capture_output=True, text=True, check=True).stdout
    assert out == subprocess.run([str(plain)], capture_output=True, text=True, check=True).stdout
    # a second build reuses it; other flags get their own
    compile_harness([src], tmp_path / "again", pch_dir=tmp_path / "cache")
    compile_harness([src], tmp_path / "o0", opt="-O0", pch_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*/ap_fixed.h.gch"))) == 2


def test_changed_headers_never_meet_a_stale_pch(tmp_path: Path) -> None:
    ap = tmp_path / "ap_types"
    shutil.copytree(find_ap_types(), ap)
    cxx, flags = find_cxx(), ["-std=c++14", "-O1"]
    first = precompiled_ap_fixed(tmp_path / "cache", cxx, flags, ap)
    assert precompiled_ap_fixed(tmp_path / "cache", cxx, flags, ap) == first
    with (ap / "ap_int.h").open("a") as f:
        f.write("\n// edited\n")
    second = precompiled_ap_fixed(tmp_path / "cache", cxx, flags, ap)
    assert second != first and (second.parent / "ap_fixed.h.gch").is_file()
