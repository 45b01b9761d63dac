"""Sound descent after the ILP: lower one knob group at a time while the sound analysis certifies.

The ILP of :mod:`.ilp` chooses formats under a linear model of every region's margin error,
calibrated at one point; near the boundary of the certified set that model misjudges steps of
several bits, so its last certified solution usually leaves slack on every row. The descent spends
that slack with the sound analysis itself. A *group* is one channel of one knob block (the input,
an output format, a weight format, an average-pool constant) at granularity "channel", or the
whole block at "layer". Starting from a certified choice c with hw cost h, in reverse topological
order of the blocks, each group's fractional bits F_g are lowered to F_g - 1 (not below
``min_frac``) as long as

    check(c') certifies c'  and  hw(c') < h      (c' = c with F_g - 1),

accepting every such step at once (first improvement) and moving to the next group at the first
refusal. Passes repeat until one accepts nothing or ``max_passes`` have run; with ``max_checks``
the descent also stops once it has asked ``check`` that many times (each check is one sound
analysis of every region), keeping the best choice so far. Only choices that ``check`` certified
are ever returned: the descent adds search, not trust.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ir import Network
from ..progress import note
from .ilp import GRANULARITIES, knob_groups
from .program import FracChoice
from .sensitivity import block_fracs, knob_blocks, set_block_fracs

#: (certified, hw, worst slack, analyses) of a choice: the ILP search's re-certification
Check = Callable[[FracChoice], tuple[bool, int, float, Any]]


@dataclass
class DescentResult:
    """The cheapest certified choice found (``start`` itself when no step certified)."""

    fracs: FracChoice
    hw: int
    moves: int
    checks: int
    pass_hw: list[int]  # hw after each pass
    seconds: float
    out_of_checks: bool = False  # stopped by ``max_checks`` before the passes ended


def sound_descent(
    net: Network,
    start: FracChoice,
    start_hw: int,
    check: Check,
    granularity: str,
    min_frac: int,
    max_passes: int = 1,
    max_checks: int | None = None,
) -> DescentResult:
    """The descent of the module docstring from the certified ``start`` (hw ``start_hw``), asking
    ``check`` at most ``max_checks`` times (no limit when None)."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, not {granularity!r}")
    if max_checks is not None and max_checks < 0:
        raise ValueError(f"max_checks must be >= 0 or None, not {max_checks}")
    t0 = time.perf_counter()
    blocks = knob_blocks(net)
    group_ids = knob_groups(blocks, granularity)
    fc, hw = start, int(start_hw)
    moves = checks = 0
    pass_hw: list[int] = []
    for _ in range(max_passes):
        moved = 0
        for b, ids in reversed(list(zip(blocks, group_ids, strict=True))):
            for group in (ids == g for g in np.unique(ids)):  # the block's channels of group g
                while True:
                    fr = block_fracs(fc, b).copy()
                    if fr[group].min() <= min_frac:
                        break
                    if max_checks is not None and checks >= max_checks:  # a check is due: none left
                        pass_hw.append(hw)
                        return DescentResult(
                            fc, hw, moves + moved, checks, pass_hw, time.perf_counter() - t0, True
                        )
                    fr[group] -= 1
                    cand = fc.copy()
                    set_block_fracs(cand, b, fr)
                    checks += 1
                    note(f"descent ({granularity}): {checks} checks, hw {hw}")
                    ok, cand_hw, _, _ = check(cand)
                    if not (ok and cand_hw < hw):
                        break
                    fc, hw = cand, int(cand_hw)
                    moved += 1
        moves += moved
        pass_hw.append(hw)
        if not moved:
            break
    return DescentResult(fc, hw, moves, checks, pass_hw, time.perf_counter() - t0)
