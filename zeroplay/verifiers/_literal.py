"""Safe literal values: argument lists and output reprs, parsed without executing anything.

Used inside sandbox children (to build `f`'s arguments from `input_expr`) and by the sandbox
worker (to compare an output repr with an expected one). Standard library only.
"""
from __future__ import annotations

import ast

_LITERAL_CALLS = {"set": set, "frozenset": frozenset, "tuple": tuple, "list": list,
                  "dict": dict, "float": float, "complex": complex, "int": int, "bytes": bytes,
                  "bytearray": bytearray, "range": range}
_LITERAL_NAMES = {"inf": float("inf"), "nan": float("nan"), "Ellipsis": ...}


def literal(node: ast.AST):
    """Value of a literal expression: Python literals plus the reprs of sets, frozensets,
    inf/nan, complex, bytes/bytearray and ranges. Anything else raises ValueError."""
    if isinstance(node, ast.Expression):
        return literal(node.body)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(literal(e) for e in node.elts)
    if isinstance(node, ast.List):
        return [literal(e) for e in node.elts]
    if isinstance(node, ast.Set):
        return {literal(e) for e in node.elts}
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {literal(k): literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = literal(node.operand)
        if isinstance(v, (int, float, complex)) and not isinstance(v, bool):
            return -v if isinstance(node.op, ast.USub) else +v
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        a, b = literal(node.left), literal(node.right)
        if isinstance(a, (int, float)) and isinstance(b, complex):
            return a + b if isinstance(node.op, ast.Add) else a - b
    if isinstance(node, ast.Name) and node.id in _LITERAL_NAMES:
        return _LITERAL_NAMES[node.id]
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in _LITERAL_CALLS and not node.keywords and len(node.args) <= 1):
        name, args = node.func.id, [literal(a) for a in node.args]
        sized = (str, list, tuple, set, frozenset, dict, bytes)  # no bytes(10**12) bombs
        ok = sized + (int, float) if name not in ("bytes", "bytearray") else sized
        if name == "range" or all(isinstance(a, ok) for a in args):
            return _LITERAL_CALLS[name](*args)
    raise ValueError(f"not a literal: {ast.dump(node)[:80]}")


def parse_args(input_expr: str, entry: str) -> tuple[list, dict]:
    """`input_expr` is an argument list as source ("[1, 2], 'a'"): literal values only."""
    try:
        call = ast.parse(f"{entry}({input_expr}\n)", mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"input is not an argument list: {e.msg}") from None
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise ValueError("input is not an argument list")
    if any(isinstance(a, ast.Starred) for a in call.args) or any(
            k.arg is None for k in call.keywords):
        raise ValueError("input is not a literal argument list")
    try:
        return [literal(a) for a in call.args], {k.arg: literal(k.value) for k in call.keywords}
    except ValueError as e:
        raise ValueError(f"input is not a literal argument list ({e})") from None


def eval_args(input_expr: str, namespace: dict) -> tuple[list, dict]:
    """The argument list as arbitrary expressions evaluated in the program's namespace (the
    CRUXEval harness's `f(<input>)`); only for use inside the sandbox."""
    call = ast.parse(f"__zp_args__({input_expr}\n)", mode="eval").body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise ValueError("input is not an argument list")
    code = compile(ast.Expression(call), "<input>", "eval")
    return eval(code, dict(namespace, __zp_args__=lambda *a, **k: (list(a), k)))  # noqa: S307


def parse_value(text: str):
    return literal(ast.parse(text.strip(), mode="eval"))


_MISSING = object()


def _try_value(text: str):
    try:
        return parse_value(text)
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError, OverflowError):
        return _MISSING


def values_equal_text(output_repr: str, expected_text: str) -> bool:
    """AZR's `f(x) == eval(gold)` on text: both sides as literal values compared with `==`
    (so `{1, 2}` equals `{2, 1}` and `1.0` equals `1`); reprs that are not literals (objects)
    are compared as stripped strings."""
    a, b = _try_value(output_repr), _try_value(expected_text)
    if a is _MISSING or b is _MISSING:
        return output_repr.strip() == expected_text.strip()
    try:
        return bool(a == b) or repr(a) == repr(b)
    except (RecursionError, MemoryError, TypeError, ValueError):
        return False
