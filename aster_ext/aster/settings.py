"""Aster's command-line settings A-D of its evaluation (DESIGN §7)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ..errors import UserError


@dataclass(frozen=True)
class AsterSetting:
    """Fractional-bit range [min_len, max_len] of the ILP, input fractional bits, noInitError flag."""

    name: str
    min_len: int
    max_len: int
    init_len: int
    no_init_error: bool
    weight_width: int = 32  # Aster's objective multiplies dot bits by the Fixed32 weight width (a constant)

    def to_json(self) -> dict[str, object]:
        return {
            "minLen": self.min_len,
            "maxLen": self.max_len,
            "initLen": self.init_len,
            "noInitError": self.no_init_error,
        }

    @property
    def n_candidates(self) -> int:
        return self.max_len - self.min_len + 1

    @property
    def init_error(self) -> Fraction:
        """e_in = 2^-initLen, or 0 when inputs are declared exactly representable (noInitError)."""
        return Fraction(0) if self.no_init_error else Fraction(1, 2**self.init_len)


SETTINGS: dict[str, AsterSetting] = {
    "A": AsterSetting("A", 5, 32, 20, False),
    "B": AsterSetting("B", 10, 32, 32, False),
    "C": AsterSetting("C", 5, 32, 10, True),
    "D": AsterSetting("D", 10, 32, 17, True),
}


def get_setting(setting: str | AsterSetting) -> AsterSetting:
    if isinstance(setting, AsterSetting):
        s = setting
    else:
        key = str(setting).upper()
        if key not in SETTINGS:
            raise UserError(f"unknown Aster setting {setting!r} (choose one of {', '.join(SETTINGS)})")
        s = SETTINGS[key]
    if not (0 <= s.min_len <= s.max_len):
        raise UserError(f"Aster setting {s.name}: need 0 <= minLen <= maxLen, got {s.min_len}, {s.max_len}")
    return s
