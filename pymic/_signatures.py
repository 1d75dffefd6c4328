"""Kernel prototypes: parsed from C, checked by every invoke.

A pymic kernel returns void and takes one pointer per argument.  Its C
prototype says what each pointer points to, which is all invoke needs to
refuse a float32 array given to a ``double *`` parameter.  This module reads
prototypes -- the ``PYMIC_KERNEL`` functions of ``load_source`` code, or
the declarations given to :meth:`OffloadLibrary.declare` -- and turns each
into the engine's ``Signature``.

The parser knows C's declaration syntax as far as kernel prototypes use it:
comments and preprocessor lines are skipped, ``__attribute__((...))`` and
storage words are ignored, and a parameter is ``[const] TYPE [const] *
[restrict] [name]`` or ``TYPE name[]``.  Element types are the C scalar
types (``int``, ``long``, ``unsigned char``, ``float complex``,
``long double``, ...), ``<stdint.h>`` types and ``size_t``-like typedefs;
``void *`` and pointers to pointers take any argument.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass

from . import _engine

_CODES: dict[str, int] = _engine.TYPE_CODES

_TOKEN = re.compile(r"[A-Za-z_]\w*|\.\.\.|\d\w*|\S")
_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_STRING = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'')

# Words of a declaration that say nothing about the parameters' types.
_IGNORED = {"PYMIC_KERNEL", "extern", "static", "inline", "__inline", "__inline__",
            "__extension__", "register", "auto", "_Noreturn"}
_QUALIFIERS = {"volatile", "restrict", "__restrict", "__restrict__", "_Atomic"}
_CONST = {"const", "__const"}
_MACRO = re.compile(r"[A-Z_][A-Z0-9_]*")

_SIZE_OF_LONG = struct.calcsize("l")
_SIZE_OF_LONG_DOUBLE = 16 if struct.calcsize("P") == 8 else 12

# Typedefs of <stdint.h>, <stddef.h> and <sys/types.h> (LP64).
_TYPEDEFS = {
    "int8_t": "int8", "uint8_t": "uint8", "int16_t": "int16", "uint16_t": "uint16",
    "int32_t": "int32", "uint32_t": "uint32", "int64_t": "int64", "uint64_t": "uint64",
    "size_t": f"uint{8 * struct.calcsize('N')}", "ssize_t": f"int{8 * struct.calcsize('n')}",
    "ptrdiff_t": f"int{8 * struct.calcsize('n')}", "intptr_t": f"int{8 * struct.calcsize('P')}",
    "uintptr_t": f"uint{8 * struct.calcsize('P')}", "bool": "bool", "_Bool": "bool",
    "float": "float32", "double": "float64", "_Float16": "float16", "__fp16": "float16",
    "float32_t": "float32", "float64_t": "float64", "void": "any",
}

_INTEGER_BITS = {"char": 8, "short": 16, "int": 32}


class SignatureError(ValueError):
    """A prototype pymic cannot read or that no kernel can have."""


@dataclass(frozen=True)
class Parameter:
    """One parameter of a kernel prototype.

    Attributes
    ----------
    name : str
        Its name (``arg<N>`` if the prototype gave none).
    spelling : str
        Its type as written, normalised (``'const double *'``).
    element : str
        The element type it points to: a name of ``_engine.TYPE_CODES``.
    const : bool
        True if it points to const data (never written back).
    """

    name: str
    spelling: str
    element: str
    const: bool


@dataclass(frozen=True)
class Prototype:
    """A kernel's name and parameters."""

    name: str
    parameters: tuple[Parameter, ...]

    def __str__(self) -> str:
        params = ", ".join(f"{p.spelling}{p.name}" for p in self.parameters) or "void"
        return f"void {self.name}({params})"

    def engine_signature(self) -> _engine.Signature:
        """The form invoke checks: ``_engine.Signature``."""
        return _engine.Signature(self.name, tuple(
            (p.name, p.spelling, _CODES[p.element], p.const) for p in self.parameters))


def _strip(text: str) -> str:
    """Source without comments, string literals and preprocessor lines."""
    text = _COMMENT.sub(" ", text)
    text = _STRING.sub('""', text)
    text = re.sub(r"\\\n", " ", text)  # continued (preprocessor) lines
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _tokens(text: str) -> list[str]:
    """Tokens of C text with every ``__attribute__((...))`` removed."""
    raw = _TOKEN.findall(text)
    tokens: list[str] = []
    i = 0
    while i < len(raw):
        if raw[i] in ("__attribute__", "__declspec", "__asm__", "asm") and \
                i + 1 < len(raw) and raw[i + 1] == "(":
            depth, i = 0, i + 1
            while i < len(raw):
                depth += {"(": 1, ")": -1}.get(raw[i], 0)
                i += 1
                if depth == 0:
                    break
            continue
        tokens.append(raw[i])
        i += 1
    return tokens


def _element(words: list[str]) -> str | None:
    """The element-type name of a list of base-type words, or None."""
    if len(words) == 1 and words[0] in _TYPEDEFS:
        return _TYPEDEFS[words[0]]
    counts: dict[str, int] = {}
    for word in words:
        if word not in ("signed", "unsigned", "short", "long", "int", "char", "float",
                        "double", "_Complex", "complex", "_Bool", "bool"):
            return None
        counts[word] = counts.get(word, 0) + 1
    complex_ = counts.get("_Complex", 0) + counts.get("complex", 0)
    longs = counts.get("long", 0)
    if "float" in counts or "double" in counts:
        if "float" in counts:
            real = "float32"
        elif longs:
            real = "longdouble"
        else:
            real = "float64"
        if complex_:
            return {"float32": "complex64", "float64": "complex128",
                    "longdouble": "clongdouble"}[real]
        return real
    if complex_:
        return "complex128" if not (set(counts) - {"_Complex", "complex"}) else None
    if "_Bool" in counts or "bool" in counts:
        return "bool"
    unsigned = "unsigned" in counts
    if "char" in counts:
        if unsigned:
            return "uint8"
        return "int8" if "signed" in counts else "char"
    if "short" in counts:
        bits = 16
    elif longs:
        bits = 64 if longs > 1 else 8 * _SIZE_OF_LONG
    else:
        bits = 32
    return f"{'u' if unsigned else ''}int{bits}"


_TYPE_WORDS = {"signed", "unsigned", "short", "long", "int", "char", "float", "double",
               "_Complex", "complex", "_Bool", "bool", "void", "struct", "union", "enum"}
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def _parameter(tokens: list[str], position: int, kernel: str) -> Parameter:
    """Parse one parameter's tokens."""
    where = f"{kernel}(): parameter {position + 1} ({' '.join(tokens)})"
    tokens = list(tokens)
    brackets = 0
    while tokens and tokens[-1] == "]" and "[" in tokens:
        tokens = tokens[:len(tokens) - 1 - tokens[::-1].index("[")]
        brackets += 1
    stars = tokens.count("*")
    name = None
    if tokens and _IDENTIFIER.fullmatch(tokens[-1]) and tokens[-1] not in _TYPE_WORDS \
            and tokens[-1] not in _CONST and tokens[-1] not in _QUALIFIERS:
        plain = [t for t in tokens[:-1] if t not in _CONST and t not in _QUALIFIERS]
        if plain:  # else it is the type itself (`int64_t`, `my_type`)
            name = tokens.pop()
    first_star = tokens.index("*") if stars else len(tokens)
    before, after = tokens[:first_star], tokens[first_star:]
    if any(t != "*" and t not in _CONST and t not in _QUALIFIERS for t in after):
        raise SignatureError(f"{where}: not a parameter pymic can read")
    const = any(word in _CONST for word in before)
    words = [w for w in before if w not in _CONST and w not in _QUALIFIERS]
    if not words:
        raise SignatureError(f"{where}: no type")
    level = stars + brackets
    if level == 0:
        raise SignatureError(
            f"{where} is not a pointer: a kernel takes one pointer per argument "
            f"(write 'const {' '.join(words)} *{name or ''}')")
    if level > 1:
        element: str | None = "any"  # pointers to pointers: addresses, unchecked
    elif {"struct", "union", "enum"} & set(words):
        element = None
    else:
        element = _element(words)
    if element is None:
        raise SignatureError(f"{where}: unknown element type '{' '.join(words)}'")
    spelling = ("const " if const else "") + " ".join(words) + " " + "*" * level
    return Parameter(name or f"arg{position + 1}", spelling, element, const)


def _split_parameters(tokens: list[str]) -> list[list[str]]:
    groups: list[list[str]] = [[]]
    depth = 0
    for token in tokens:
        if token == "," and depth == 0:
            groups.append([])
            continue
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(token, 0)
        groups[-1].append(token)
    return groups


def _prototype(head: list[str], params: list[str]) -> Prototype:
    """A prototype from the tokens before '(' and those between the parentheses."""
    head = [t for t in head if t not in _IGNORED]
    if not head or not re.fullmatch(r"[A-Za-z_]\w*", head[-1]):
        raise SignatureError(f"not a function prototype: {' '.join(head)}(...)")
    name = head[-1]
    returns = [t for t in head[:-1] if t not in _CONST and t not in _QUALIFIERS]
    # Upper-case words before the return type are a header's own macros
    # (MYLIB_API void f(...)); C's keywords and types are lower case.
    while len(returns) > 1 and _MACRO.fullmatch(returns[0]):
        returns = returns[1:]
    if returns != ["void"]:
        raise SignatureError(f"{name}(): a kernel returns void, not "
                             f"'{' '.join(returns) or 'int'}'")
    if params in ([], ["void"]):
        return Prototype(name, ())
    if "..." in params:
        raise SignatureError(f"{name}(): a kernel cannot take variable arguments")
    groups = _split_parameters(params)
    if len(groups) > _engine.MAX_KERNEL_ARGS:
        raise SignatureError(f"{name}(): {len(groups)} parameters, at most "
                             f"{_engine.MAX_KERNEL_ARGS} are allowed")
    return Prototype(name, tuple(_parameter(g, i, name) for i, g in enumerate(groups)))


def _declarations(text: str) -> list[tuple[list[str], list[str], bool]]:
    """Top-level function declarators: (head tokens, parameter tokens, marked).

    `marked` tells whether the declaration carries ``PYMIC_KERNEL``.
    """
    tokens = _tokens(_strip(text))
    found = []
    statement: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in (";", "}"):
            statement = []
            i += 1
            continue
        if token == "{" and statement[:1] == ["extern"] and \
                set(statement[1:]) == {'"'}:
            # extern "C" { ... } (a header's C++ guard): its declarations
            # are top-level ones; its "}" ends the statement as usual.
            statement = []
            i += 1
            continue
        if token == "{":
            # A function body (or a struct's): skip to its end.
            depth = 0
            while i < len(tokens):
                depth += {"{": 1, "}": -1}.get(tokens[i], 0)
                i += 1
                if depth == 0:
                    break
            statement = []
            continue
        if token == "(" and statement and re.fullmatch(r"[A-Za-z_]\w*", statement[-1]) \
                and "=" not in statement and "(" not in statement:
            depth, j = 0, i
            while j < len(tokens):
                depth += {"(": 1, ")": -1}.get(tokens[j], 0)
                if depth == 0:
                    break
                j += 1
            following = tokens[j + 1] if j + 1 < len(tokens) else ";"
            if following in (";", "{"):
                found.append((statement[:], tokens[i + 1:j], "PYMIC_KERNEL" in statement))
            statement = ["("]  # the rest of this statement is not a declarator
            i = j + 1
            continue
        statement.append(token)
        i += 1
    return found


def parse_prototypes(text: str) -> list[Prototype]:
    """Parse every function prototype (or definition) in C text.

    Parameters
    ----------
    text : str
        One or more prototypes, e.g. ``"void scale(double *a, const int64_t
        *n);"`` (the final ``;`` may be left out), or a whole header.

    Returns
    -------
    list of Prototype

    Raises
    ------
    SignatureError
        (a ValueError) naming the prototype and parameter pymic cannot read,
        or a prototype no kernel can have (a return type other than void, a
        parameter that is not a pointer, variable arguments).
    """
    if not text.rstrip().endswith((";", "}")):
        text = text + ";"
    declarations = _declarations(text)
    if not declarations:
        raise SignatureError(f"no function prototype found in {text.strip()!r}")
    return [_prototype(head, params) for head, params, _ in declarations]


def kernels_of_source(source: str) -> dict[str, Prototype | SignatureError]:
    """The ``PYMIC_KERNEL`` functions of kernel source, parsed.

    Parameters
    ----------
    source : str
        C source as given to ``load_source``.

    Returns
    -------
    dict
        Kernel name -> its Prototype, or the SignatureError that explains
        why it stays unchecked (an unknown type, say).
    """
    kernels: dict[str, Prototype | SignatureError] = {}
    for head, params, marked in _declarations(source):
        if not marked:
            continue
        try:
            prototype = _prototype(head, params)
        except SignatureError as error:
            names = [t for t in head if _IDENTIFIER.fullmatch(t)]
            if names:
                kernels[names[-1]] = error
            continue
        kernels[prototype.name] = prototype
    return kernels


def is_header_path(item: object) -> bool:
    """Whether a ``declare`` argument names a header file rather than holding C.

    A path object does; a string does when it names a file or cannot be C
    (no parenthesis): ``"dir (2)/k.h"`` is a path, ``"void f(double *a)"``
    names no file.
    """
    return isinstance(item, os.PathLike) or (isinstance(item, str) and (
        "(" not in item or os.path.isfile(item)))


def read_declarations(item: str | os.PathLike[str]
                      ) -> tuple[list[Prototype], dict[str, SignatureError]]:
    """Prototypes from a string of C or from a header file.

    Returns the prototypes, and for a header the errors of the declarations
    it could not read as kernels, by function name (a header may declare
    functions that are not kernels: the caller decides).  A string must
    consist of readable kernel prototypes (SignatureError otherwise).
    """
    if is_header_path(item):
        with open(os.fspath(item), encoding="utf-8") as stream:
            text = stream.read()
        prototypes = []
        errors = {}
        for head, params, _ in _declarations(text):
            try:
                prototypes.append(_prototype(head, params))
            except SignatureError as error:
                names = [t for t in head if _IDENTIFIER.fullmatch(t)]
                if names:
                    errors[names[-1]] = error
        return prototypes, errors
    if not isinstance(item, str):
        raise TypeError(f"declare() takes C prototypes (str) or a header path, not "
                        f"{type(item).__name__}")
    return parse_prototypes(item), {}
