"""Answer text -> SymPy, without ever evaluating the text as code.

Plain text goes through `tokenize` + `ast.parse(mode="eval")` and a whitelisted AST -> SymPy converter.
LaTeX is normalised here (last `\\boxed{}`, units, `\\pm`, separators, ...), then either translated to
plain text (a small common subset) or handed to latex2sympy2_extended's ANTLR parser.
Runs inside the checker's worker processes only.
"""

from __future__ import annotations

import ast
import io
import operator
import re
import tokenize
from dataclasses import dataclass
from fractions import Fraction

import sympy
from latex2sympy2_extended.latex2sympy2 import ConversionConfig, latex2sympy
from latex2sympy2_extended.math_normalization import NormalizationConfig
from sympy.core.relational import Relational

MAX_INPUT_CHARS = 4000
MAX_AST_NODES = 2000
MAX_PM = 3


class ParseError(ValueError):
    """The answer text is not a well-formed math answer."""


class AnswerList(tuple):
    """Several answers written without brackets (`2, -2`, `\\pm 2`, `x=1 or x=2`): compared as a set."""


class OrderedList(tuple):
    """A bracketed list `[a, b, c]` in plain text: ordered, but a 2-list may also be a closed interval."""


@dataclass(frozen=True)
class Parsed:
    """A parsed answer; `inexact` when the text holds a decimal literal (then tolerances apply)."""

    value: object
    inexact: bool


_FUNCS: dict[str, object] = {
    "sqrt": sympy.sqrt,
    "cbrt": sympy.cbrt,
    "root": sympy.root,
    "exp": sympy.exp,
    "log": sympy.log,
    "ln": sympy.log,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
    "cot": sympy.cot,
    "sec": sympy.sec,
    "csc": sympy.csc,
    "asin": sympy.asin,
    "acos": sympy.acos,
    "atan": sympy.atan,
    "acot": sympy.acot,
    "asec": sympy.asec,
    "acsc": sympy.acsc,
    "arcsin": sympy.asin,
    "arccos": sympy.acos,
    "arctan": sympy.atan,
    "atan2": sympy.atan2,
    "sinh": sympy.sinh,
    "cosh": sympy.cosh,
    "tanh": sympy.tanh,
    "coth": sympy.coth,
    "asinh": sympy.asinh,
    "acosh": sympy.acosh,
    "atanh": sympy.atanh,
    "Abs": sympy.Abs,
    "abs": sympy.Abs,
    "sign": sympy.sign,
    "floor": sympy.floor,
    "ceiling": sympy.ceiling,
    "ceil": sympy.ceiling,
    "factorial": sympy.factorial,
    "binomial": sympy.binomial,
    "gamma": sympy.gamma,
    "loggamma": sympy.loggamma,
    "digamma": sympy.digamma,
    "polygamma": sympy.polygamma,
    "gcd": sympy.gcd,
    "lcm": sympy.lcm,
    "Min": sympy.Min,
    "Max": sympy.Max,
    "min": sympy.Min,
    "max": sympy.Max,
    "re": sympy.re,
    "im": sympy.im,
    "conjugate": sympy.conjugate,
    "arg": sympy.arg,
    "Mod": sympy.Mod,
    "Rational": sympy.Rational,
    "Piecewise": sympy.Piecewise,
    "Eq": sympy.Eq,
    "Ne": sympy.Ne,
    "And": sympy.And,
    "Or": sympy.Or,
    "Not": sympy.Not,
    "Interval": sympy.Interval,
    "Union": sympy.Union,
    "Intersection": sympy.Intersection,
    "Complement": sympy.Complement,
    "FiniteSet": sympy.FiniteSet,
    "Matrix": sympy.Matrix,
    "LambertW": sympy.LambertW,
    "erf": sympy.erf,
    "erfc": sympy.erfc,
    "erfi": sympy.erfi,
    "Si": sympy.Si,
    "Ci": sympy.Ci,
    "Shi": sympy.Shi,
    "Chi": sympy.Chi,
    "Ei": sympy.Ei,
    "li": sympy.li,
    "polylog": sympy.polylog,
    "zeta": sympy.zeta,
    "harmonic": sympy.harmonic,
    "RisingFactorial": sympy.RisingFactorial,
    "FallingFactorial": sympy.FallingFactorial,
    "fresnels": sympy.fresnels,
    "fresnelc": sympy.fresnelc,
    "Heaviside": sympy.Heaviside,
    "uppergamma": sympy.uppergamma,
    "lowergamma": sympy.lowergamma,
    "beta": sympy.beta,
    "catalan": sympy.catalan,
    "fibonacci": sympy.fibonacci,
}
_INTERVAL_ATTRS = {"open": sympy.Interval.open, "Lopen": sympy.Interval.Lopen, "Ropen": sympy.Interval.Ropen}
_CONSTS: dict[str, object] = {
    "pi": sympy.pi,
    "E": sympy.E,
    "e": sympy.E,
    "oo": sympy.oo,
    "inf": sympy.oo,
    "infty": sympy.oo,
    "infinity": sympy.oo,
    "I": sympy.I,
    "i": sympy.I,
    "EmptySet": sympy.S.EmptySet,
    "True": sympy.true,
    "False": sympy.false,
    "zoo": sympy.zoo,
    "nan": sympy.nan,
}
_CMP = {
    ast.Eq: sympy.Eq,
    ast.NotEq: sympy.Ne,
    ast.Lt: sympy.Lt,
    ast.LtE: sympy.Le,
    ast.Gt: sympy.Gt,
    ast.GtE: sympy.Ge,
}
_DECIMAL = re.compile(r"(?<![\w.])(\d*\.\d+|\d+\.(?!\d)|\d+(?:\.\d*)?[eE][+-]?\d+)")
_THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")
_UNIT_WORDS = re.compile(
    r"(?<=\d)\s*(cm|mm|km|m|meters?|inches|inch|in|feet|foot|ft|units?|sq|square|degrees?|dollars?|cents?|"
    r"hours?|minutes?|seconds?|days?|years?|kg|g|grams?|pounds?|lbs?|miles?|mph|liters?)\b\.?$"
)
_OR_WORDS = re.compile(r"\\(?:text|mbox|textrm)\{\s*(?:or|and)\s*\}|\bor\b|\\quad|\\qquad|;")


def parse_answer(text: str) -> Parsed:
    """Parse an answer (plain or LaTeX, possibly a whole model response with `\\boxed{}`)."""
    if len(text) > MAX_INPUT_CHARS:
        raise ParseError(f"input longer than {MAX_INPUT_CHARS} characters")
    if "\x00" in text:
        raise ParseError("NUL byte in input")
    body = _extract(text)
    inexact = bool(_DECIMAL.search(body))
    if "\\" in body or ("{" in body and not re.fullmatch(r"\s*\{[^{}]*\}\s*", body)):
        return Parsed(_parse_latex(body), inexact)
    return Parsed(_parse_plain_answer(body), inexact)


def _extract(text: str) -> str:
    """The last `\\boxed{...}` (or the whole text), without math delimiters or a final period."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    if starts:
        start, depth = starts[-1], 1
        for j in range(start, len(text)):
            if text[j] == "{" and text[j - 1] != "\\":
                depth += 1
            elif text[j] == "}" and text[j - 1] != "\\":
                depth -= 1
                if depth == 0:
                    text = text[start:j]
                    break
        else:
            raise ParseError("unterminated \\boxed{")
    text = text.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\[", "\\]"), ("\\(", "\\)")):
        if text.startswith(left) and text.endswith(right) and len(text) >= len(left) + len(right):
            text = text[len(left) : len(text) - len(right)].strip()
    text = text.replace("\\displaystyle", "").strip()
    text = re.sub(r"\.\s*$", "", text).strip()
    if not text:
        raise ParseError("empty answer")
    return text


# ----------------------------------------------------------------------------------------------- plain


def _parse_plain_answer(text: str) -> object:
    text = (
        text.replace("−", "-")
        .replace("×", "*")
        .replace("·", "*")
        .replace("÷", "/")
        .replace("π", "pi")
        .replace("∞", "oo")
        .replace("√", "sqrt")
        .replace("°", "")
        .replace("%", "")
    )
    text = _without_thousands_separators(_UNIT_WORDS.sub("", text).strip())
    parts = _split_top(_OR_WORDS.sub(",", text), ",") if _OR_WORDS.search(text) else [text]
    if len(parts) > 1:
        return _answer_list([_parse_plain_answer(p) for p in parts])
    interval = re.fullmatch(r"\s*([\[(])(.*)([\])])\s*", text, flags=re.S)
    if interval and interval.group(1) + interval.group(3) in ("[)", "(]"):
        ends = _split_top(interval.group(2), ",")
        if len(ends) == 2:
            lo, hi = (parse_plain(e) for e in ends)
            return sympy.Interval(lo, hi, interval.group(1) == "(", interval.group(3) == ")")
    return parse_plain(text, top=True)


def _without_thousands_separators(text: str) -> str:
    """`1,000,000` -> `1000000`; spaces do not count (`10 , 000`, as LaTeX math mode renders it)."""
    compact = re.sub(r"\s+", "", text)
    return compact.replace(",", "") if _THOUSANDS.match(compact) else text


def _answer_list(items: list[object]) -> object:
    flat: list[object] = []
    for item in items:
        flat.extend(item if isinstance(item, AnswerList) else [item])
    return flat[0] if len(flat) == 1 else AnswerList(flat)


def _split_top(text: str, sep: str) -> list[str]:
    """Split at `sep` outside (), [], {} (a stray closing bracket still splits fine)."""
    parts, depth, cur = [], 0, []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
            cur.append(text[i : i + 2])
            depth += 1 if text[i + 1] == "{" else -1
            i += 2
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()] if len(parts) > 1 else [text]


def _retokenize(text: str) -> str:
    """`^` -> `**`, `=` -> `==`, implicit multiplication (`2x`, `2(x+1)`, `(a)(b)`, `2 pi`)."""
    out: list[str] = []
    prev: tokenize.TokenInfo | None = None
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError) as exc:
        raise ParseError(f"cannot tokenize: {exc}") from None
    for tok in toks:
        if tok.string == "!":
            _wrap_factorial(out)
            continue
        if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.INDENT, tokenize.DEDENT):
            continue
        if tok.type == tokenize.ERRORTOKEN and not tok.string.strip():  # the space in `5 !`
            continue
        if tok.type in (tokenize.STRING, tokenize.COMMENT, tokenize.ERRORTOKEN):
            raise ParseError(f"unexpected token {tok.string!r}")
        s = tok.string
        if tok.type == tokenize.OP and s == "^":
            s = "**"
        elif tok.type == tokenize.OP and s == "=":
            s = "=="
        if (
            prev is not None
            and (
                (prev.type == tokenize.NUMBER and tok.type in (tokenize.NAME, tokenize.NUMBER))
                or (prev.type == tokenize.NUMBER and s == "(")
                or (prev.string == ")" and (tok.type in (tokenize.NAME, tokenize.NUMBER) or s == "("))
                or (prev.type == tokenize.NAME and tok.type == tokenize.NAME)
            )
            and s not in ("if", "else", "or", "and", "for", "in", "not", "is", "lambda")
        ):
            out.append("*")
        out.append(s)
        prev = tok
    return " ".join(out)


def _wrap_factorial(out: list[str]) -> None:
    """Postfix `!`: wrap the operand just emitted (a number, a name or a parenthesised group)."""
    if not out:
        raise ParseError("factorial without an operand")
    if out[-1] == ")":
        depth = 0
        for j in range(len(out) - 1, -1, -1):
            depth += out[j] == ")"
            depth -= out[j] == "("
            if depth == 0:
                if j and re.fullmatch(r"[A-Za-z_]\w*", out[j - 1]):
                    j -= 1
                out[j:] = ["factorial", "(", *out[j:], ")"]
                return
        raise ParseError("unbalanced parentheses before !")
    if not re.fullmatch(r"[\w.]+", out[-1]):
        raise ParseError("factorial without an operand")
    out[-1:] = ["factorial", "(", out[-1], ")"]


def parse_plain(text: str, top: bool = False) -> object:
    """Plain math text -> SymPy via a whitelisted AST walk (no eval, no sympify)."""
    src = _retokenize(text)
    if not src:
        raise ParseError("empty expression")
    try:
        tree = ast.parse(src, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ParseError(f"syntax error: {type(exc).__name__}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_AST_NODES:
        raise ParseError("expression too large")
    body = tree.body
    if top and isinstance(body, ast.Tuple) and not src.startswith("("):
        return _answer_list([_Converter(src).conv(e) for e in body.elts])
    result = _Converter(src).conv(body, top=top)
    return result


_BINARY_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_MATRIX_OPS = (ast.Add, ast.Sub, ast.Mult)


class _Converter:
    def __init__(self, src: str) -> None:
        self.src = src

    def conv(self, node: ast.AST, top: bool = False) -> object:
        if isinstance(node, ast.Constant):
            return self._number(node)
        if isinstance(node, ast.Name):
            if node.id in _CONSTS:
                return _CONSTS[node.id]
            if node.id in _FUNCS:
                raise ParseError(f"function {node.id} used without arguments")
            return sympy.Symbol(node.id)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            val = self.expr(node.operand)
            return -val if isinstance(node.op, ast.USub) else val
        if isinstance(node, ast.BinOp):
            return self._binop(node)
        if isinstance(node, ast.Compare):
            rels = []
            left = self.conv(node.left)
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                if type(op) not in _CMP:
                    raise ParseError("unsupported comparison")
                right = self.conv(right_node)
                rels.append(_CMP[type(op)](left, right, evaluate=False))
                left = right
            return rels[0] if len(rels) == 1 else sympy.And(*rels)
        if isinstance(node, ast.BoolOp):
            args = [self.conv(v) for v in node.values]
            return sympy.And(*args) if isinstance(node.op, ast.And) else sympy.Or(*args)
        if isinstance(node, ast.Tuple):
            return sympy.Tuple(*[self.conv(e) for e in node.elts])
        if isinstance(node, ast.List):
            items = [self.conv(e) for e in node.elts]
            return OrderedList(items) if top else items
        if isinstance(node, ast.Set):
            return sympy.FiniteSet(*[self.conv(e) for e in node.elts])
        if isinstance(node, ast.Dict) and not node.keys:
            return sympy.S.EmptySet
        if isinstance(node, ast.Call):
            return self._call(node)
        raise ParseError(f"unsupported syntax {type(node).__name__}")

    def expr(self, node: ast.AST) -> sympy.Expr:
        val = self.conv(node)
        if not isinstance(val, sympy.Expr):
            raise ParseError("arithmetic on a non-expression")
        return val

    def _number(self, node: ast.Constant) -> sympy.Basic:
        if isinstance(node.value, bool):
            return sympy.true if node.value else sympy.false
        if not isinstance(node.value, int | float):
            raise ParseError("unsupported literal")
        text = ast.get_source_segment(self.src, node) or ""
        if not re.fullmatch(r"[\d_]*\.?[\d_]*([eE][+-]?\d+)?", text):
            raise ParseError(f"unsupported number literal {text!r}")
        frac = Fraction(text)
        return sympy.Rational(frac.numerator, frac.denominator)

    def _binop(self, node: ast.BinOp) -> object:
        left, right = self.conv(node.left), self.conv(node.right)
        apply = _BINARY_OPS.get(type(node.op))
        if isinstance(left, sympy.MatrixBase) or isinstance(right, sympy.MatrixBase):
            if type(node.op) not in _MATRIX_OPS:
                raise ParseError("unsupported matrix operation")
        elif not isinstance(left, sympy.Expr) or not isinstance(right, sympy.Expr):
            raise ParseError("arithmetic on a non-expression")
        if apply is None:
            raise ParseError(f"unsupported operator {type(node.op).__name__}")
        return apply(left, right)

    def _call(self, node: ast.Call) -> object:
        if node.keywords:
            raise ParseError("keyword arguments are not allowed")
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            if func.value.id == "Interval" and func.attr in _INTERVAL_ATTRS:
                return _INTERVAL_ATTRS[func.attr](*[self.conv(a) for a in node.args])
            raise ParseError("attribute access is not allowed")
        if not isinstance(func, ast.Name):
            raise ParseError("unsupported call")
        if func.id in _FUNCS:
            args = [self._arg(a) for a in node.args]
            if func.id == "Matrix" and not (len(args) == 1 and isinstance(args[0], list)):
                raise ParseError("Matrix takes one list of rows")
            if func.id == "log" and len(args) == 2:
                return sympy.log(args[0], args[1])
            return _FUNCS[func.id](*args)
        if len(node.args) != 1:
            raise ParseError(f"unknown function {func.id}")
        # `x(x+1)`: a symbol followed by a parenthesis is a product
        return self.expr(func) * self.expr(node.args[0])

    def _arg(self, node: ast.AST) -> object:
        if isinstance(node, ast.List):
            return [self._arg(e) for e in node.elts]
        return self.conv(node)


# ----------------------------------------------------------------------------------------------- LaTeX

_L2S_NORM = NormalizationConfig(
    basic_latex=True, units=True, malformed_operators=False, nits=True, boxed="none", equations=False
)
_L2S_CONV = ConversionConfig(lowercase_symbols=False)
_TEXT_CMD = re.compile(r"\\(?:text|textrm|textbf|mbox|mathrm|operatorname)\s*\{([^{}]*)\}")


_LATEX_SPACE = re.compile(r"\\\\|\\[,;:! ]|~")
"""A LaTeX space (`\\,`, `\\ `, `~`), or a row break `\\\\` that must survive (`1 & 2 \\\\ 3 & 4`)."""
_BARE_INFINITY = re.compile(r"(?<![\\A-Za-z])oo(?![A-Za-z])|∞")
_MEMBERSHIP = re.compile(r"[A-Za-z]\s*\\in(?![A-Za-z])\s*")
_UNEVALUATED = re.compile(r"\\(?:int|iint|iiint|oint|lim|sum|prod|partial)(?![A-Za-z])|\\[dt]?frac\s*\{\s*d")
"""LaTeX operators latex2sympy would carry out (`\\int 2x dx` reads as x**2). An answer holding one restates a
problem instead of answering it, so it is refused rather than evaluated."""


def _parse_latex(text: str) -> object:
    _check_braces(text)
    operator = _UNEVALUATED.search(text)
    if operator is not None:
        raise ParseError(f"not a closed form: the answer holds {operator.group(0)!r}")
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    text = re.sub(r"\\left\s*\.|\\right\s*\.", "", text)
    text = re.sub(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big)\s*", "", text)
    text = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|°|\\degree", "", text)
    text = text.replace("\\%", "").replace("%", "").replace("\\$", "")
    text = re.sub(r"(?<=\d)\s*(?:\\[,;:! ]|\{\s*,\s*\})\s*(?=\d{3}(?!\d))", "", text)
    text = _LATEX_SPACE.sub(lambda m: m.group(0) if m.group(0) == "\\\\" else " ", text)
    text = _OR_WORDS.sub(",", text)
    stripped = _TEXT_CMD.sub("", text).strip()
    if not stripped or (re.fullmatch(r"[\s,^{}\d]*", stripped) and not re.search(r"\d", stripped)):
        words = " ".join(m.group(1).strip() for m in _TEXT_CMD.finditer(text)).strip()
        if not words:
            raise ParseError("empty answer")
        return sympy.Symbol(re.sub(r"\s+", " ", words))
    text = re.sub(r"\^\s*\{\s*\}", "", stripped).strip()
    text = _BARE_INFINITY.sub(r"\\infty ", text)
    text = _without_thousands_separators(text)
    member = _MEMBERSHIP.match(text)
    if member is not None:
        return _as_set(_parse_latex_one(text[member.end() :]))
    if text.count("\\pm") + text.count("\\mp") > 0:
        return _expand_pm(text)
    parts = _split_top(text, ",")
    if len(parts) > 1 and not _is_bracketed(text):
        return _answer_list([_parse_latex_one(p) for p in parts])
    return _parse_latex_one(text)


def _as_set(value: object) -> sympy.Set:
    """The right side of `x \\in S`: intervals, unions and `\\{...\\}` sets parse as sets already."""
    if not isinstance(value, sympy.Set):
        raise ParseError("\\in must be followed by a set or an interval")
    return value


def _expand_pm(text: str) -> object:
    if text.count("\\pm") + text.count("\\mp") > MAX_PM:
        raise ParseError("too many \\pm")
    variants = [text]
    while any("\\pm" in v or "\\mp" in v for v in variants):
        nxt = []
        for v in variants:
            m = re.search(r"\\(pm|mp)", v)
            if m is None:
                nxt.append(v)
                continue
            first, second = ("+", "-") if m.group(1) == "pm" else ("-", "+")
            nxt += [v[: m.start()] + first + v[m.end() :], v[: m.start()] + second + v[m.end() :]]
        variants = nxt
    values: list[object] = []
    for v in variants:
        val = _parse_latex(v)
        if val not in values:
            values.append(val)
    return _answer_list(values)


def _is_bracketed(text: str) -> bool:
    """Whether the first opening bracket closes at the very end (`(a, b)`, `\\{a, b\\}`, `[a, b)`)."""
    t = text.strip()
    if t.startswith("\\begin"):
        return True
    t = t[1:] if t.startswith("\\{") else t
    if t[:1] not in "([{":
        return False
    depth = 0
    for i, ch in enumerate(t):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0:
            return i == len(t) - 1
    return False


def _check_braces(text: str) -> None:
    depth = 0
    for i, ch in enumerate(text):
        if i and text[i - 1] == "\\":
            continue
        depth += ch == "{"
        depth -= ch == "}"
        if depth < 0:
            raise ParseError("unbalanced braces")
    if depth:
        raise ParseError("unbalanced braces")


def _parse_latex_one(text: str) -> object:
    plain = _latex_to_plain(text)
    if plain is not None:
        return _parse_plain_answer(plain)
    if re.search(r"(\+|-|\\cdot|\\times|\*|/|\^|=|_)\s*$", text):
        raise ParseError("expression ends with an operator")
    try:
        value = latex2sympy(text, normalization_config=_L2S_NORM, conversion_config=_L2S_CONV)
    except (RecursionError, MemoryError):
        raise
    except Exception as exc:
        raise ParseError(f"LaTeX: {str(exc).splitlines()[0][:80]}") from None
    return evaluate_tree(value)


_SIMPLE_CMDS = {"\\frac", "\\sqrt", "\\pi", "\\cdot", "\\times", "\\infty"}


def _latex_to_plain(text: str) -> str | None:
    """Translate a small LaTeX subset to plain text; None when latex2sympy must handle it."""
    if "," in text or re.search(r"[A-Za-z]{2}", re.sub(r"\\[A-Za-z]+", " ", text)):
        return None
    if any(c not in _SIMPLE_CMDS for c in re.findall(r"\\[A-Za-z]+|\\.", text)):
        return None
    if re.search(r"\d\s*\\frac|[!_|]", text):
        return None
    out: list[str] = []
    i = 0

    def group(j: int) -> tuple[str, int]:
        while j < len(text) and text[j] == " ":
            j += 1
        if j >= len(text):
            raise ParseError("missing argument")
        if text[j] != "{":
            if text[j] == "\\":
                m = re.match(r"\\[A-Za-z]+", text[j:])
                if m is None:
                    raise ParseError("bad command")
                return _translate_cmd(m.group(0)), j + len(m.group(0))
            return text[j], j + 1
        depth, k = 0, j
        while k < len(text):
            depth += text[k] == "{"
            depth -= text[k] == "}"
            if depth == 0:
                inner = _latex_to_plain(text[j + 1 : k])
                if inner is None:
                    raise _Fallback
                return inner, k + 1
            k += 1
        raise ParseError("unbalanced braces")

    try:
        while i < len(text):
            if text.startswith("\\frac", i):
                num, i = group(i + 5)
                den, i = group(i)
                out.append(f"(({num})/({den}))")
            elif text.startswith("\\sqrt", i):
                i += 5
                m = re.match(r"\s*\[([^\]]*)\]", text[i:])
                index = None
                if m:
                    index = _latex_to_plain(m.group(1))
                    if index is None:
                        return None
                    i += m.end()
                arg, i = group(i)
                out.append(f"sqrt({arg})" if index is None else f"(({arg})**(1/({index})))")
            elif text[i] == "\\":
                m = re.match(r"\\[A-Za-z]+", text[i:])
                if m is None:
                    return None
                out.append(_translate_cmd(m.group(0)))
                i += len(m.group(0))
            elif text[i] == "^":
                arg, i = group(i + 1)
                out.append(f"**({arg})")
            elif text[i] in "{}":
                out.append("(" if text[i] == "{" else ")")
                i += 1
            else:
                out.append(text[i])
                i += 1
    except _Fallback:
        return None
    return "".join(out)


class _Fallback(Exception):
    pass


def _translate_cmd(cmd: str) -> str:
    return {"\\pi": " pi ", "\\cdot": "*", "\\times": "*", "\\infty": " oo "}.get(cmd, "")


def evaluate_tree(value: object) -> object:
    """Rebuild latex2sympy's unevaluated tree with evaluation; `i` becomes the imaginary unit."""
    if isinstance(value, sympy.MatrixBase):
        return value.applyfunc(evaluate_tree)
    if isinstance(value, list | tuple) and not isinstance(value, sympy.Basic):
        return [evaluate_tree(v) for v in value]
    if not isinstance(value, sympy.Basic):
        raise ParseError(f"unsupported value {type(value).__name__}")
    if isinstance(value, sympy.UnevaluatedExpr):
        return evaluate_tree(value.args[0])
    if isinstance(value, sympy.Symbol):
        return sympy.I if value.name == "i" else value
    if not value.args or isinstance(value, sympy.Integral | sympy.Derivative | sympy.Sum | sympy.Limit):
        return value.doit() if value.args else value
    args = [evaluate_tree(a) for a in value.args]
    if isinstance(value, sympy.FiniteSet):
        return sympy.FiniteSet(*args)
    if isinstance(value, sympy.And):
        return sympy.And(*args)
    if isinstance(value, Relational):
        return type(value)(*args, evaluate=False)
    return value.func(*args)
