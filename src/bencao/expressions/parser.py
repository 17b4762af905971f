"""A parser for OpenMM's expression language (Lepton syntax) that builds SymPy expressions.

The grammar is Lepton's, checked against OpenMM itself (``tests/expressions``):

- numbers (``2``, ``0.5``, ``.5``, ``1e-3``), variable names (letters, digits, ``_``);
- ``+ -`` < ``* /`` < unary ``-`` < ``^`` in precedence; ``^`` groups to the right
  (``2^3^2`` is 512, ``-2^2`` is -4);
- function calls ``name(a, b, ...)`` of Lepton's functions (:data:`FUNCTIONS`) and of those a
  force adds (geometry such as ``distance(p1, p2)``, tabulated functions);
- ``;``-separated definitions after the expression, ``name = expression``; each may use the
  definitions after it, not those before (as Lepton).

Errors name the force and the offending part of the text: :class:`ExpressionError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy

from bencao.expressions.functions import (
    AbsValue,
    Ceil,
    Delta,
    Floor,
    Max2,
    Min2,
    Select,
    Step,
)


class ExpressionError(ValueError):
    """A malformed expression, an unknown function or a name used but never defined."""


#: Lepton's functions: name -> (number of arguments, SymPy builder).
FUNCTIONS: dict[str, tuple[int, Callable]] = {
    "sqrt": (1, sympy.sqrt),
    "exp": (1, sympy.exp),
    "log": (1, sympy.log),
    "sin": (1, sympy.sin),
    "cos": (1, sympy.cos),
    "tan": (1, sympy.tan),
    "sec": (1, lambda x: 1 / sympy.cos(x)),
    "csc": (1, lambda x: 1 / sympy.sin(x)),
    "cot": (1, lambda x: 1 / sympy.tan(x)),
    "asin": (1, sympy.asin),
    "acos": (1, sympy.acos),
    "atan": (1, sympy.atan),
    "atan2": (2, sympy.atan2),
    "sinh": (1, sympy.sinh),
    "cosh": (1, sympy.cosh),
    "tanh": (1, sympy.tanh),
    "erf": (1, sympy.erf),
    "erfc": (1, sympy.erfc),
    "step": (1, Step),
    "delta": (1, Delta),
    "square": (1, lambda x: x**2),
    "cube": (1, lambda x: x**3),
    "recip": (1, lambda x: 1 / x),
    "min": (2, Min2),
    "max": (2, Max2),
    "abs": (1, AbsValue),
    "floor": (1, Floor),
    "ceil": (1, Ceil),
    "select": (3, Select),
}

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[-+*/^(),]))"
)
_BINARY = {"+": (0, "left"), "-": (0, "left"), "*": (1, "left"), "/": (1, "left"),
           "^": (3, "right")}
_UNARY_MINUS = 2


@dataclass
class Parsed:
    """An expression with its definitions substituted.

    Attributes
    ----------
    expression : sympy.Expr
        The energy (or value) as one SymPy expression of plain symbols.
    names : set[str]
        The variables it uses (its free symbols' names, less the "$" symbols a force's
        functions introduce).
    """

    expression: sympy.Expr
    names: set = field(default_factory=set)


def _tokens(text: str, where: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) of each token; ExpressionError at the first unreadable character."""
    tokens, position = [], 0
    stripped = text.rstrip()
    while position < len(stripped):
        match = _TOKEN.match(stripped, position)
        if match is None or match.end() == position:
            bad = stripped[position:].lstrip()[:1]
            raise ExpressionError(f"{where}: unexpected character {bad!r} in {text.strip()!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind), match.start(kind)))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent with precedence climbing over one statement's tokens."""

    def __init__(self, text, where, definitions, functions):
        self.text = text.strip()
        self.where = where
        self.tokens = _tokens(text, where)
        self.index = 0
        self.definitions = definitions
        self.functions = functions

    def fail(self, message: str):
        raise ExpressionError(f"{self.where}: {message} in {self.text!r}")

    def peek(self):
        return self.tokens[self.index] if self.index < len(self.tokens) else (None, None, -1)

    def take(self):
        token = self.peek()
        self.index += 1
        return token

    def parse(self) -> sympy.Expr:
        if not self.tokens:
            self.fail("empty expression")
        value = self.expression(0)
        kind, text, _ = self.peek()
        if kind is not None:
            self.fail(f"unexpected {text!r}")
        return value

    def expression(self, min_precedence: int) -> sympy.Expr:
        left = self.operand()
        while True:
            kind, text, _ = self.peek()
            if kind != "op" or text not in _BINARY:
                return left
            precedence, grouping = _BINARY[text]
            if precedence < min_precedence:
                return left
            self.take()
            right = self.expression(precedence + (1 if grouping == "left" else 0))
            left = _apply(text, left, right)

    def operand(self) -> sympy.Expr:
        kind, text, _ = self.take()
        if kind is None:
            self.fail("the expression ends too early")
        if kind == "op" and text == "-":
            return -self.expression(_UNARY_MINUS)
        if kind == "op" and text == "(":
            value = self.expression(0)
            self.expect(")")
            return value
        if kind == "number":
            value = float(text)
            return sympy.Integer(int(value)) if value.is_integer() and abs(value) < 2**53 \
                else sympy.Float(value)
        if kind == "name":
            if self.peek()[1] == "(":
                return self.call(text)
            if text in self.definitions:
                return self.definitions[text]
            return sympy.Symbol(text)
        self.fail(f"unexpected {text!r}")

    def expect(self, text: str) -> None:
        kind, found, _ = self.take()
        if found != text:
            self.fail(f"expected {text!r} but found {found!r}" if found else f"missing {text!r}")

    def call(self, name: str) -> sympy.Expr:
        self.expect("(")
        arguments = [self.expression(0)]
        while self.peek()[1] == ",":
            self.take()
            arguments.append(self.expression(0))
        self.expect(")")
        entry = self.functions.get(name, FUNCTIONS.get(name))
        if entry is None:
            self.fail(f"unknown function {name!r}")
        count, build = entry
        if count is not None and len(arguments) != count:
            self.fail(f"{name}() takes {count} argument{'s' if count != 1 else ''}, "
                      f"got {len(arguments)}")
        return build(*arguments)


def _apply(operator: str, left, right):
    if operator == "+":
        return left + right
    if operator == "-":
        return left - right
    if operator == "*":
        return left * right
    if operator == "/":
        return left / right
    return left**right


_DEFINITION = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)", re.DOTALL)


def parse(text: str, where: str, variables, functions: dict | None = None) -> Parsed:
    """Parse an OpenMM expression with its ``;`` definitions into one SymPy expression.

    Parameters
    ----------
    text : str
        The expression, e.g. ``"0.5*k*(r-r0)^2"`` or ``"4*eps*(s^12-s^6); s=sigma/r"``.
    where : str
        What the expression belongs to, for messages (e.g. ``"CustomBondForce"``).
    variables : iterable of str
        Every name the expression may use: the force's variables (``r``, ``theta``, ``x``...),
        its per-item and global parameters.
    functions : dict, optional
        Extra functions: name -> (argument count or None for any, builder taking SymPy
        arguments); geometry and tabulated functions of the force.

    Returns
    -------
    Parsed

    Raises
    ------
    ExpressionError
        On a syntax error, an unknown function, a wrong argument count, or a name that is
        neither in ``variables`` nor defined after its use.
    """
    statements = text.split(";")
    while len(statements) > 1 and not statements[-1].strip():
        statements.pop()
    definitions: dict[str, sympy.Expr] = {}
    functions = functions or {}
    # Lepton reads the definitions last to first: each may use those after it.
    for statement in reversed(statements[1:]):
        match = _DEFINITION.match(statement)
        if match is None:
            raise ExpressionError(f"{where}: {statement.strip()!r} is not a definition "
                                  "'name = expression'")
        name, body = match.groups()
        definitions[name] = _Parser(body, where, definitions, functions).parse()
    value = sympy.sympify(_Parser(statements[0], where, definitions, functions).parse())
    allowed = set(variables)
    # Names starting with "$" are symbols a force's own functions introduce (never user text).
    names = {symbol.name for symbol in value.free_symbols if not symbol.name.startswith("$")}
    unknown = sorted(names - allowed)
    if unknown:
        raise ExpressionError(
            f"{where}: {', '.join(repr(u) for u in unknown)} in {text.strip()!r} "
            f"is neither a parameter nor a variable (known: {', '.join(sorted(allowed))})")
    return Parsed(value, names)


def rename_variables(text: str, where: str, rename: Callable[[str], str]) -> list[str]:
    """The statements of an expression with every variable renamed, definitions included.

    Function names keep theirs; numbers and operators are untouched, so the statements parse
    to the same expression of the renamed variables.  This is how a per-particle value of a
    CustomNonbondedForce (``addComputedValue``) becomes a definition for each particle of the
    pair (``a`` -> ``a1``, ``a2``).

    Parameters
    ----------
    text : str
        The expression with its ``;`` definitions.
    where : str
        The force, for error messages.
    rename : callable
        ``rename(name)`` -> the new name of a variable or definition.

    Returns
    -------
    list of str
        The expression, then each definition as ``name = expression``.
    """
    statements = text.split(";")
    while len(statements) > 1 and not statements[-1].strip():
        statements.pop()
    renamed = []
    for index, statement in enumerate(statements):
        prefix = ""
        if index:
            match = _DEFINITION.match(statement)
            if match is None:
                raise ExpressionError(f"{where}: {statement.strip()!r} is not a definition "
                                      "'name = expression'")
            prefix = f"{rename(match.group(1))} = "
            statement = match.group(2)
        tokens = _tokens(statement, where)
        pieces, last = [], 0
        for position, (kind, token, start) in enumerate(tokens):
            called = position + 1 < len(tokens) and tokens[position + 1][1] == "("
            if kind == "name" and not called:
                pieces += [statement[last:start], rename(token)]
                last = start + len(token)
        pieces.append(statement[last:])
        renamed.append(prefix + "".join(pieces).strip())
    return renamed
