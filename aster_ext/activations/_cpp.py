"""C++ building blocks for the activation implementations (Xilinx ``ap_types``).

Idioms (checked with g++ against the ap_types headers of the hls4ml wheel):
- raw bits of an ``ap_fixed`` t:       ``ap_int<T::width> raw; raw.range() = t.range();``
- an ``ap_fixed`` from raw integer r:  ``ap_fixed<W, W - F> v; v.range() = r;`` (r a C integer of
  <= 64 bits, truncated to W bits; wider raws are assigned limb by limb with
  ``v.range(hi, lo) = limb``), then ordinary ``ap_fixed`` assignment to the caller's type;
- integer constants are C integer literals when they fit 63 bits and ``ap_int`` values built
  limb by limb otherwise — never decimals or doubles.
"""

from __future__ import annotations

import re

LIMB = 64
_MASK = (1 << LIMB) - 1


def signed_width(values: list[int]) -> int:
    """Smallest W >= 1 such that every value fits a signed W-bit integer."""
    w = 1
    for v in values:
        v = int(v)
        w = max(w, (v.bit_length() if v >= 0 else (~v).bit_length()) + 1)
    return w


def literal(v: int) -> str:
    """A C++ integer literal for |v| < 2^62 (long long suffix when it does not fit int)."""
    v = int(v)
    if -(1 << 31) <= v < (1 << 31):
        return str(v)
    if not -(1 << 62) <= v < (1 << 62):
        raise ValueError("literal(): value needs more than 63 bits; use const_expr")
    return f"{v}LL"


def const_expr(v: int) -> str:
    """A C++ expression of value v: a literal, or an ``ap_int`` built limb by limb (any width)."""
    v = int(v)
    if -(1 << 62) <= v < (1 << 62):
        return literal(v)
    w = signed_width([v])
    n = -(-w // LIMB)
    u = v % (1 << (n * LIMB))
    parts = []
    for i in range(n):
        hi = min(LIMB * i + LIMB - 1, w - 1)
        parts.append(f"c.range({hi}, {LIMB * i}) = 0x{(u >> (LIMB * i)) & _MASK:x}ULL;")
    return f"([]() {{ ap_int<{w}> c = 0; {' '.join(parts)} return c; }}())"


def identifier(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"not a C++ identifier: {name!r}")
    return name


def rom_lines(name: str, values: list[int], width: int, per_line: int = 12) -> list[str]:
    """``static const`` ROM of raw integers (C ints / long longs, or 64-bit limbs if wider)."""
    n = len(values)
    if width <= LIMB:
        ctype = "int" if width <= 32 else "long long"
        vals = [str(int(v)) if width <= 32 else _ll(int(v)) for v in values]
        head = f"  static const {ctype} {name}[{n}] = {{"
    else:
        nl = -(-width // LIMB)
        vals = []
        for v in values:
            u = int(v) % (1 << (nl * LIMB))
            vals.append("{" + ", ".join(f"0x{(u >> (LIMB * i)) & _MASK:x}ULL" for i in range(nl)) + "}")
        head = f"  static const unsigned long long {name}[{n}][{nl}] = {{"
        per_line = max(1, per_line // nl)
    lines = [head]
    for i in range(0, n, per_line):
        lines.append("      " + ", ".join(vals[i : i + per_line]) + ",")
    lines.append("  };")
    return lines


def table_head_lines(
    nm: str, in_type: str, out_type: str, in_frac: int, entries: list[int], width: int
) -> list[str]:
    """Start of a lookup-table function ``out_type nm(in_type t)``: signature, a static check that
    the input type has ``in_frac`` fractional bits, the ROM ``nm_rom`` of ``entries`` (``width``-bit
    words), the input's raw bits ``raw`` and the index variable ``idx``."""
    return [
        f"inline {out_type} {nm}({in_type} t) {{",
        "#pragma HLS INLINE",
        f"  typedef {in_type} {nm}_in_t;",
        f"  static_assert({nm}_in_t::width - {nm}_in_t::iwidth == {in_frac}, "
        f'"{nm}: the input type must have {in_frac} fractional bits");',
        *rom_lines(f"{nm}_rom", entries, width),
        f"  ap_int<{nm}_in_t::width> raw;",
        "  raw.range() = t.range();",
        "  int idx;",
    ]


def assign_raw_lines(var: str, rom: str, index: str, width: int) -> list[str]:
    """Statements setting the raw bits of ap_fixed ``var`` (``width`` bits) from a ROM entry."""
    if width <= LIMB:
        return [f"  {var}.range() = {rom}[{index}];"]
    nl = -(-width // LIMB)
    out = []
    for i in range(nl):
        hi = min(LIMB * i + LIMB - 1, width - 1)
        out.append(f"  {var}.range({hi}, {LIMB * i}) = {rom}[{index}][{i}];")
    return out


def _ll(v: int) -> str:
    if v == -(1 << 63):
        return "(-9223372036854775807LL - 1)"
    return f"{v}LL"
