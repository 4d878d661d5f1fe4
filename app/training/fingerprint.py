"""Fingerprints of the code, constants and files that produce a cached array, for the cache keys.

A cache entry is valid only while everything that produced it is unchanged: the producing function, every
``app.*`` function and class it reaches through its global names (helpers, classes, module constants such as
``N_FFT``, default argument values), the library versions it relies on, and its input files (the tokenizer).
:func:`code_fingerprint` walks those global names; :func:`cache_key` hashes it all into a short hex key.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import inspect
import json
import textwrap
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

#: only code of this package is walked (third-party code is covered by its version in the parameters)
_PACKAGE = "app."


def _own(obj: object) -> bool:
    return str(getattr(obj, "__module__", "") or "").startswith(_PACKAGE)


def _code_objects(code: types.CodeType) -> Iterable[types.CodeType]:
    """``code`` and every code object nested in it (closures, lambdas, comprehensions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _value_text(value: object) -> str | None:
    """A stable text for a module constant, or None for objects that are not plain data."""
    if isinstance(value, bool | int | float | str | bytes | type(None)):
        return repr(value)
    if isinstance(value, np.ndarray):
        return f"ndarray{value.shape}{value.dtype}:" + hashlib.sha256(value.tobytes()).hexdigest()
    if isinstance(value, tuple | list | frozenset):
        parts = [_value_text(v) for v in value]
        if any(p is None for p in parts):
            return None
        return f"{type(value).__name__}(" + ",".join(p for p in parts if p is not None) + ")"
    return None


def _code_text(obj: types.FunctionType | type) -> str:
    """The code of ``obj`` as its syntax tree (``ast.dump``) without docstrings: comments, docstrings and
    formatting do not count, every other edit does. Falls back to the source text when it does not parse
    alone (e.g. a lambda inside an expression). Raises ``OSError``/``TypeError`` without source."""
    source = textwrap.dedent(inspect.getsource(obj))
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module)
            and isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


class _Walker:
    """Collects the source text of ``app.*`` functions/classes reachable from the roots, and the values of
    the module constants they name; each object is visited once."""

    def __init__(self) -> None:
        self.parts: dict[str, str] = {}

    def visit(self, obj: object) -> None:
        """Add ``obj`` (an ``app.*`` function, class or instance) and what it reaches; other objects are
        ignored."""
        obj = inspect.unwrap(obj) if callable(obj) else obj  # through functools.lru_cache / wraps
        if isinstance(obj, types.MethodType):
            obj = obj.__func__
        if not (isinstance(obj, types.FunctionType | type) and _own(obj)):
            if _own(type(obj)) and not isinstance(obj, type):  # an app.* instance (e.g. a singleton)
                self.visit(type(obj))
            return
        name = f"{obj.__module__}.{obj.__qualname__}"
        if name in self.parts:
            return
        try:
            self.parts[name] = _code_text(obj)
        except (OSError, TypeError):  # generated code (dataclass __init__/__eq__): covered by its class
            if not isinstance(obj, types.FunctionType) or obj.__code__.co_filename != "<string>":
                raise
            return
        if isinstance(obj, type):
            for member in vars(obj).values():
                self.visit(member)
            return
        self.parts[name] += f"\ndefaults={obj.__defaults__!r} kwdefaults={obj.__kwdefaults__!r}"
        self._names(obj)

    def _names(self, fn: types.FunctionType) -> None:
        names = {n for code in _code_objects(fn.__code__) for n in code.co_names}
        modules = [v for v in fn.__globals__.values() if isinstance(v, types.ModuleType) and _own(v)]
        # a name may be a global of the function's module or an attribute of an imported app.* module
        scopes = [fn.__globals__, *(vars(m) for m in modules)]
        for n in sorted(names):
            if n.startswith("__"):  # __file__ etc.: where the code lives, not what it does
                continue
            for scope in scopes:
                if n not in scope:
                    continue
                value = scope[n]
                text = _value_text(value)
                if text is not None:
                    self.parts.setdefault(f"{fn.__module__}:{n}", text)
                else:
                    self.visit(value)


def code_fingerprint(*roots: Callable[..., object] | type) -> str:
    """sha256 (hex, 64 characters) over the code of ``roots`` and of every ``app.*`` function and class
    they reach through global names (``inspect.getsource``, parsed, docstrings and comments dropped), plus
    the values of the module constants they name and their default arguments. Raises ``OSError`` /
    ``TypeError`` (from ``inspect.getsource``) when a root's source is unavailable."""
    walker = _Walker()
    for root in roots:
        walker.visit(root)
    h = hashlib.sha256()
    for name in sorted(walker.parts):
        h.update(f"{name}\n{walker.parts[name]}\n".encode())
    return h.hexdigest()


def file_fingerprint(path: Path) -> str:
    """sha256 (hex) of the bytes of ``path``. Raises ``OSError`` when it cannot be read."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def versions(*distributions: str) -> dict[str, str]:
    """Installed version of each distribution (``importlib.metadata``); "absent" when not installed."""
    out = {}
    for d in distributions:
        try:
            out[d] = importlib.metadata.version(d)
        except importlib.metadata.PackageNotFoundError:
            out[d] = "absent"
    return out


def cache_key(params: Mapping[str, object], code: str, items: Iterable[str]) -> str:
    """16 hex characters of sha256 over the producing parameters (JSON, keys sorted; values must be
    JSON-serialisable or have a stable ``str``), the code fingerprint and the input items (file names or
    texts) in order."""
    h = hashlib.sha256()
    h.update(json.dumps(dict(params), sort_keys=True, default=str).encode())
    h.update(b"\0" + code.encode() + b"\0")
    h.update("\n".join(items).encode())
    return h.hexdigest()[:16]
