"""Aster's Scala network DSL: import to the IR (exact decimals) and export dense chains back.

Grammar accepted (whitespace, tabs, ``//`` and ``/* */`` comments anywhere)::

    import a.b._ ...
    object NAME {
      def FUNC(x: Vector): Vector = {
        require(lowerBounds(x, List(n, ...)) && upperBounds(x, List(n, ...)))
        val W = Matrix(List(List(n, ...), ...))      // rows = outputs
        val B = Vector(List(n, ...))
        val L = relu(W * PREV + B)                    // or linear(...), or W * PREV + B
        RESULT
      } ensuring(res => res +/- EPS)
      // ensuring(res => res +/- EPS2)               (commented alternatives are read too)
    }

Numbers are decimals with optional sign and exponent; their exact values (``Fraction``) are the
real network (DESIGN §3): affine nodes carry ``weight_exact``/``bias_exact`` and the nearest
float64 values in ``weight``/``bias``. Input bounds in the Spec are the exact bounds rounded
outwards to float64 (the exact ones are in ``spec.extra``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import UnsupportedError, UserError
from ..ir import DenseLayer, Network, Op, build_network, dense_chain
from ..spec import Spec

ACTIVATION_WORDS = {"relu": "relu", "linear": None}

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>[ \t\r\f\v]+)
  | (?P<nl>\n)
  | (?P<line_comment>//[^\n]*)
  | (?P<block_comment>/\*.*?\*/)
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>\+/-|=>|&&|[(){}\[\],.:=*+\-])
    """,
    re.VERBOSE | re.DOTALL,
)

_ENSURING_RE = re.compile(
    r"ensuring\s*\(\s*\w+\s*=>\s*\w+\s*\+/-\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*\)"
)


@dataclass(frozen=True)
class _Tok:
    kind: str  # "num" | "ident" | "punct" | "eof"
    text: str
    line: int


@dataclass
class _Layer:
    name: str
    weights: str
    bias: str
    source: str
    activation: str | None
    line: int


@dataclass
class ScalaProgram:
    """The parsed contents of one DSL file (exact Fractions)."""

    object_name: str
    function_name: str
    input_name: str
    lower: list[Fraction]
    upper: list[Fraction]
    matrices: dict[str, list[list[Fraction]]]
    vectors: dict[str, list[Fraction]]
    layers: list[_Layer]
    result: str
    result_line: int
    error_bounds: list[Fraction]


# --------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------


def load_scala(path: str | Path) -> tuple[Network, Spec]:
    """Parse an Aster ``.scala`` network file into (Network, Spec); errors carry file:line."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"Scala file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{p.name}: cannot read ({exc})") from None
    return scala_to_network(text, name=p.stem, file_name=p.name)


def scala_to_network(text: str, name: str = "network", file_name: str | None = None) -> tuple[Network, Spec]:
    """Parse DSL text; ``name`` names the Network and Spec (the file stem when loading a file)."""
    file_name = file_name or f"{name}.scala"
    prog = parse_scala(text, file_name)
    return _lower(prog, name, file_name), _spec(prog, name, file_name)


def parse_scala(text: str, file_name: str = "<string>") -> ScalaProgram:
    """Tokenise and parse DSL text (see module docstring for the grammar)."""
    tokens, comments = _tokenise(text, file_name)
    prog = _Parser(tokens, file_name).program()
    for _, comment in comments:
        for m in _ENSURING_RE.finditer(comment):
            prog.error_bounds.append(Fraction(m.group(1)))
    return prog


def _tokenise(text: str, file_name: str) -> tuple[list[_Tok], list[tuple[int, str]]]:
    tokens: list[_Tok] = []
    comments: list[tuple[int, str]] = []
    line, pos = 1, 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise UserError(f"{file_name}:{line}: unexpected character {text[pos]!r}")
        kind, value = m.lastgroup, m.group()
        if kind in ("num", "ident", "punct"):
            tokens.append(_Tok(kind, value, line))
        elif kind in ("line_comment", "block_comment"):
            comments.append((line, value))
        line += value.count("\n")
        pos = m.end()
    if text.count("/*") > text.count("*/"):
        raise UserError(f"{file_name}:{line}: unterminated /* comment")
    tokens.append(_Tok("eof", "end of file", line))
    return tokens, comments


class _Parser:
    def __init__(self, tokens: list[_Tok], file_name: str):
        self.toks = tokens
        self.i = 0
        self.file = file_name

    # ---- token helpers -----------------------------------------------------------------

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def error(self, message: str, tok: _Tok | None = None) -> UserError:
        t = tok or self.tok
        return UserError(f"{self.file}:{t.line}: {message}")

    def at(self, text: str) -> bool:
        return self.tok.kind != "eof" and self.tok.text == text

    def take(self, text: str, context: str = "") -> _Tok:
        if not self.at(text):
            where = f" {context}" if context else ""
            raise self.error(f"expected '{text}'{where}, found '{self.tok.text}'")
        t = self.tok
        self.i += 1
        return t

    def ident(self, what: str = "a name") -> _Tok:
        if self.tok.kind != "ident":
            raise self.error(f"expected {what}, found '{self.tok.text}'")
        t = self.tok
        self.i += 1
        return t

    def number(self) -> Fraction:
        return self.signed_number()[0]

    def signed_number(self) -> tuple[Fraction, str]:
        """An optionally signed decimal: (exact value, text as written)."""
        sign = ""
        if self.at("-") or self.at("+"):
            sign = self.tok.text
            self.i += 1
        if self.tok.kind != "num":
            raise self.error(f"expected a number, found '{self.tok.text}'")
        text = self.tok.text
        self.i += 1
        value = Fraction(text)
        return (-value if sign == "-" else value), sign + text

    def number_list(self) -> list[Fraction]:
        """List(n, n, ...) with a clear message when a separating comma is missing."""
        self.take("List")
        self.take("(", "after List")
        values: list[Fraction] = []
        if self.at(")"):
            self.i += 1
            return values
        while True:
            value, text = self.signed_number()
            values.append(value)
            if self.at(","):
                self.i += 1
                continue
            if self.at(")"):
                self.i += 1
                return values
            if self.tok.kind == "num" or self.tok.text in ("-", "+"):
                bad = self.tok
                _, next_text = self.signed_number()
                raise self.error(f"expected ',' between numbers {text} and {next_text} (missing comma)", bad)
            raise self.error(f"expected ',' or ')' in a number list, found '{self.tok.text}'")

    # ---- grammar -----------------------------------------------------------------------

    def program(self) -> ScalaProgram:
        while self.at("import"):
            self.i += 1
            self.ident("an import path")
            while self.at("."):
                self.i += 1
                self.ident("an import path")
        self.take("object", "(one object per file)")
        object_name = self.ident("the object name").text
        self.take("{", "after the object name")
        prog = self.function(object_name)
        if self.at("def"):
            raise self.error("only one function per file is supported")
        self.take("}", "closing the object")
        if self.tok.kind != "eof":
            raise self.error(f"unexpected '{self.tok.text}' after the object")
        return prog

    def function(self, object_name: str) -> ScalaProgram:
        self.take("def", "(the network function)")
        fname = self.ident("the function name").text
        self.take("(")
        input_name = self.ident("the input parameter").text
        self.take(":")
        self.ident("a type")
        self.take(")")
        if self.at(":"):
            self.i += 1
            self.ident("a type")
        self.take("=")
        self.take("{", "opening the function body")
        lower, upper = self.require(input_name)
        matrices: dict[str, list[list[Fraction]]] = {}
        vectors: dict[str, list[Fraction]] = {}
        layers: list[_Layer] = []
        defined: set[str] = {input_name}
        while self.at("val"):
            self.statement(matrices, vectors, layers, defined)
        result_tok = self.ident("the result (a layer name)")
        self.take("}", "closing the function body")
        eps: list[Fraction] = []
        if self.at("ensuring"):
            eps.append(self.ensuring())
        return ScalaProgram(
            object_name,
            fname,
            input_name,
            lower,
            upper,
            matrices,
            vectors,
            layers,
            result_tok.text,
            result_tok.line,
            eps,
        )

    def require(self, input_name: str) -> tuple[list[Fraction], list[Fraction]]:
        start = self.take("require", "(the input bounds)")
        self.take("(")
        bounds: dict[str, list[Fraction]] = {}
        while True:
            kind = self.ident("lowerBounds or upperBounds")
            if kind.text not in ("lowerBounds", "upperBounds"):
                raise self.error(f"expected lowerBounds or upperBounds, found '{kind.text}'", kind)
            if kind.text in bounds:
                raise self.error(f"{kind.text} given twice", kind)
            self.take("(")
            var = self.ident("the input variable")
            if var.text != input_name:
                raise self.error(f"bounds are for '{var.text}', the input is '{input_name}'", var)
            self.take(",")
            bounds[kind.text] = self.number_list()
            self.take(")", f"closing {kind.text}")
            if not self.at("&&"):
                break
            self.i += 1
        self.take(")", "closing require")
        for key in ("lowerBounds", "upperBounds"):
            if key not in bounds:
                raise self.error(f"require(...) lacks {key}", start)
        lower, upper = bounds["lowerBounds"], bounds["upperBounds"]
        if not lower or not upper:
            raise self.error("empty input bounds", start)
        if len(lower) != len(upper):
            raise self.error(f"{len(lower)} lower bounds but {len(upper)} upper bounds", start)
        for k, (lo, hi) in enumerate(zip(lower, upper, strict=True)):
            if lo > hi:
                raise self.error(
                    f"inverted range for input {k}: lower {float(lo)} > upper {float(hi)}", start
                )
        return lower, upper

    def statement(self, matrices, vectors, layers, defined: set[str]) -> None:
        self.take("val")
        name_tok = self.ident("a value name")
        name = name_tok.text
        if name in defined:
            raise self.error(f"'{name}' is defined twice", name_tok)
        self.take("=")
        head = self.tok
        if head.text == "Matrix":
            self.i += 1
            self.take("(")
            self.take("List")
            self.take("(")
            rows = [self.number_list()]
            while self.at(","):
                self.i += 1
                rows.append(self.number_list())
            self.take(")", "closing the list of matrix rows")
            self.take(")", "closing Matrix")
            if not rows[0] or any(len(r) != len(rows[0]) for r in rows):
                lengths = sorted({len(r) for r in rows})
                raise self.error(f"matrix '{name}' has rows of different lengths {lengths}", name_tok)
            matrices[name] = rows
        elif head.text == "Vector":
            self.i += 1
            self.take("(")
            vectors[name] = self.number_list()
            self.take(")", "closing Vector")
            if not vectors[name]:
                raise self.error(f"vector '{name}' is empty", name_tok)
        else:
            layers.append(self.layer(name, name_tok.line, defined))
        defined.add(name)

    def layer(self, name: str, line: int, defined: set[str]) -> _Layer:
        act: str | None = None
        wrapped = False
        if self.tok.kind == "ident" and self.toks[self.i + 1].text == "(":
            word = self.ident()
            if word.text not in ACTIVATION_WORDS:
                raise UnsupportedError(
                    f"{self.file}:{word.line}: activation '{word.text}' is not supported (relu, linear)"
                )
            act = ACTIVATION_WORDS[word.text]
            self.take("(")
            wrapped = True
        w = self.ident("a weight matrix name")
        self.take("*", "(layer = act(weights * input + bias))")
        src = self.ident("the layer input")
        self.take("+", "(layer = act(weights * input + bias))")
        b = self.ident("a bias vector name")
        if wrapped:
            self.take(")", "closing the activation")
        for t in (w, src, b):
            if t.text not in defined:
                raise self.error(f"'{t.text}' is not defined before use", t)
        return _Layer(name, w.text, b.text, src.text, act, line)

    def ensuring(self) -> Fraction:
        self.take("ensuring")
        self.take("(")
        self.ident("the result name")
        self.take("=>")
        self.ident("the result name")
        self.take("+/-", "(ensuring(res => res +/- EPS))")
        eps = self.number()
        self.take(")", "closing ensuring")
        return eps


def _lower(prog: ScalaProgram, name: str, file_name: str) -> Network:
    """IR: input -> (affine [-> act relu]) per layer; exact decimals kept as Fractions."""
    n_in = len(prog.lower)
    ops = [Op(name=prog.input_name, kind="input", inputs=(), shape=(n_in,), source=f"{file_name} (input)")]
    size = {prog.input_name: n_in}
    out_node = {prog.input_name: prog.input_name}
    for layer in prog.layers:
        where = f"{file_name}:{layer.line}"
        if layer.weights not in prog.matrices:
            raise UserError(f"{where}: '{layer.weights}' is not a Matrix")
        if layer.bias not in prog.vectors:
            raise UserError(f"{where}: '{layer.bias}' is not a Vector")
        if layer.source not in size:
            raise UserError(f"{where}: '{layer.source}' is not the input or a layer")
        rows = prog.matrices[layer.weights]
        bias = prog.vectors[layer.bias]
        n_out, n_cols = len(rows), len(rows[0])
        if n_cols != size[layer.source]:
            raise UserError(
                f"{where}: {layer.weights} has {n_cols} columns, "
                f"{layer.source} has {size[layer.source]} values"
            )
        if len(bias) != n_out:
            raise UserError(
                f"{where}: {layer.bias} has {len(bias)} entries but {layer.weights} has {n_out} rows"
            )
        w_exact = _object_array(rows)
        b_exact = _object_array(bias)
        attrs = {
            "weight": _nearest(w_exact),
            "bias": _nearest(b_exact),
            "weight_exact": w_exact,
            "bias_exact": b_exact,
        }
        src = f"{where} (val {layer.name})"
        ops.append(Op(layer.name, "affine", (out_node[layer.source],), (n_out,), attrs, src))
        out_node[layer.name] = layer.name
        if layer.activation is not None:
            act_name = f"{layer.name}_{layer.activation}"
            ops.append(Op(act_name, "act", (layer.name,), (n_out,), {"fn": layer.activation}, src))
            out_node[layer.name] = act_name
        size[layer.name] = n_out
    if prog.result not in out_node or prog.result == prog.input_name:
        raise UserError(f"{file_name}:{prog.result_line}: the result '{prog.result}' is not a layer")
    reference = f"DSL decimals of {file_name} (exact)"
    return build_network(name, ops, reference, output_names=(out_node[prog.result],))


def _spec(prog: ScalaProgram, name: str, file_name: str) -> Spec:
    spec = Spec(
        name=name,
        input_lower=np.array([_round_down(q) for q in prog.lower]),
        input_upper=np.array([_round_up(q) for q in prog.upper]),
        error_bounds=[float(e) for e in prog.error_bounds],
        source=f"Aster DSL {file_name}",
        extra={
            "scala_object": prog.object_name,
            "scala_function": prog.function_name,
            "input_variable": prog.input_name,
            "input_lower_exact": list(prog.lower),
            "input_upper_exact": list(prog.upper),
            "layers": [
                [len(prog.matrices[ly.weights][0]), len(prog.matrices[ly.weights]), ly.activation or "linear"]
                for ly in prog.layers
            ],
        },
    )
    return spec.validate()


def _object_array(values) -> np.ndarray:
    arr = np.empty(
        (len(values), len(values[0])) if isinstance(values[0], list) else (len(values),), dtype=object
    )
    if arr.ndim == 2:
        for i, row in enumerate(values):
            arr[i, :] = row
    else:
        arr[:] = values
    return arr


def _nearest(fr: np.ndarray) -> np.ndarray:
    """float64 nearest to each Fraction (float(Fraction) is correctly rounded)."""
    try:
        return np.array([float(q) for q in fr.reshape(-1)], dtype=np.float64).reshape(fr.shape)
    except OverflowError:
        raise UserError("a DSL number exceeds the float64 range") from None


def _round_down(q: Fraction) -> float:
    f = float(q)
    return float(np.nextafter(f, -np.inf)) if Fraction(f) > q else f


def _round_up(q: Fraction) -> float:
    f = float(q)
    return float(np.nextafter(f, np.inf)) if Fraction(f) < q else f


# --------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------


def export_scala(
    net_or_layers: Network | list[DenseLayer],
    spec: Spec,
    path: str | Path | None = None,
    *,
    object_name: str | None = None,
    float_style: str = "exact",
) -> str:
    """Write a dense relu/linear chain as DSL text; returns the text and writes it to ``path`` if given.

    Every number is written as an exact decimal, so re-importing gives the same real network:
    Fraction parameters must have a finite decimal expansion (denominator 2^a 5^b), float64
    ones are written as their full decimal expansion (``float_style="exact"``) or, with
    ``float_style="repr"``, as the shortest decimal that reads back to the same double (the
    re-imported exact values are then those decimals).
    """
    if float_style not in ("exact", "repr"):
        raise ValueError("float_style must be 'exact' or 'repr'")
    layers = (
        dense_chain(net_or_layers, frozenset({"relu"}))
        if isinstance(net_or_layers, Network)
        else list(net_or_layers)
    )
    if not layers:
        raise UserError("export_scala: no layers to export")
    n_in = layers[0].n_in
    if spec.n_inputs != n_in:
        raise UserError(f"export_scala: spec has {spec.n_inputs} input ranges, the network {n_in} inputs")
    for k, layer in enumerate(layers):
        if layer.activation not in ("relu", "identity"):
            raise UnsupportedError(
                f"export_scala: layer {layer.name} has activation '{layer.activation}' (relu/linear)"
            )
        if k and layer.n_in != layers[k - 1].n_out:
            raise UserError(
                f"export_scala: layer {layer.name} takes {layer.n_in} inputs, "
                f"the previous one gives {layers[k - 1].n_out}"
            )

    def fmt_exact(q: Fraction) -> str:
        return _decimal(q)

    def fmt_param(value: float, exact: Fraction | None) -> str:
        if exact is not None:
            return _decimal(exact)
        if float_style == "repr":
            return repr(float(value))
        return _decimal(Fraction(float(value)))

    lo_exact = spec.extra.get("input_lower_exact")
    hi_exact = spec.extra.get("input_upper_exact")
    if lo_exact is not None and hi_exact is not None and len(lo_exact) == len(hi_exact) == n_in:
        lower = [fmt_exact(Fraction(q)) for q in lo_exact]
        upper = [fmt_exact(Fraction(q)) for q in hi_exact]
    else:
        lower = [fmt_exact(Fraction(float(v))) for v in spec.input_lower]
        upper = [fmt_exact(Fraction(float(v))) for v in spec.input_upper]
    obj = object_name or str(spec.extra.get("scala_object") or _identifier(spec.name))
    fn = str(spec.extra.get("scala_function", "nn1"))
    lines = [
        "import daisy.lang._",
        "import Vector._",
        "",
        f"object {obj} {{",
        "",
        f"  def {fn}(x: Vector): Vector = {{",
        f"    require(lowerBounds(x, List({', '.join(lower)})) &&",
        f"      upperBounds(x, List({', '.join(upper)})))",
        "",
    ]
    for k, layer in enumerate(layers, start=1):
        w_ex = layer.weight_exact
        rows = []
        for i in range(layer.n_out):
            cells = [
                fmt_param(layer.weight[i, j], None if w_ex is None else Fraction(w_ex[i, j]))
                for j in range(layer.n_in)
            ]
            rows.append(f"      List({', '.join(cells)})")
        lines.append(f"    val weights{k} = Matrix(List(")
        lines.append(",\n".join(rows) + "))")
        lines.append("")
    for k, layer in enumerate(layers, start=1):
        b_ex = layer.bias_exact
        cells = [
            fmt_param(layer.bias[i], None if b_ex is None else Fraction(b_ex[i])) for i in range(layer.n_out)
        ]
        lines.append(f"    val bias{k} = Vector(List({', '.join(cells)}))")
    lines.append("")
    for k, layer in enumerate(layers, start=1):
        act = "relu" if layer.activation == "relu" else "linear"
        prev = "x" if k == 1 else f"layer{k - 1}"
        lines.append(f"    val layer{k} = {act}(weights{k} * {prev} + bias{k})")
    lines.append(f"    layer{len(layers)}")
    lines.append("")
    eps = list(spec.error_bounds)
    lines.append("  }" + (f" ensuring(res => res +/- {repr(float(eps[0]))})" if eps else ""))
    lines.extend(f"  // ensuring(res => res +/- {repr(float(e))})" for e in eps[1:])
    lines.append("")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    if path is not None:
        try:
            Path(path).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc}") from None
    return text


def _decimal(q: Fraction) -> str:
    """Exact decimal text of q; UserError if q has no finite decimal expansion."""
    d = q.denominator
    twos = fives = 0
    while d % 2 == 0:
        d //= 2
        twos += 1
    while d % 5 == 0:
        d //= 5
        fives += 1
    if d != 1:
        raise UserError(f"export_scala: {q} has no finite decimal expansion; the DSL cannot hold it exactly")
    digits = max(twos, fives)
    scaled = abs(q.numerator) * (10**digits // q.denominator)
    sign = "-" if q < 0 else ""
    if digits == 0:
        return f"{sign}{scaled}.0"
    whole, frac = divmod(scaled, 10**digits)
    frac_text = str(frac).rjust(digits, "0").rstrip("0") or "0"
    return f"{sign}{whole}.{frac_text}"


def _identifier(name: str) -> str:
    ident = re.sub(r"\W", "_", name)
    return ident if ident and not ident[0].isdigit() else f"N_{ident}"
