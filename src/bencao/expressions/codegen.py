"""Python source from SymPy expressions, and generated modules cached on disk by their source.

Several outputs (an energy and its derivatives) are printed as one block with their common
subexpressions computed once (``sympy.cse``).  A generated module is written to a cache folder
under a name derived from the hash of what it was generated from, and imported from there, so
the next process neither regenerates it nor recompiles it (Numba's ``cache=True`` finds its
machine code beside it): a second run of the same expression parses, differentiates and
compiles nothing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile

import sympy

from bencao.expressions.functions import PythonLawPrinter

#: Bump to invalidate every cached law (a change of how source is generated).
CODEGEN_VERSION = 1


def cache_folder() -> str:
    """Where generated modules live: ``$BENCAO_CACHE_DIR/laws``, else
    ``$XDG_CACHE_HOME/bencao/laws`` (``~/.cache/bencao/laws``); a temporary folder if that
    cannot be created."""
    root = os.environ.get("BENCAO_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "bencao")
    folder = os.path.join(root, "laws")
    try:
        os.makedirs(folder, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    folder = os.path.join(tempfile.gettempdir(), f"bencao-laws-{os.getuid()}")
    os.makedirs(folder, exist_ok=True)
    return folder


def print_block(outputs: list, names: dict, indent: str = "    ") -> tuple[list[str], list[str]]:
    """Lines of Python computing ``outputs`` with shared subexpressions computed once.

    Parameters
    ----------
    outputs : list of sympy.Expr
        What to compute.
    names : dict
        Symbol -> the Python name it has in the generated code (every free symbol of the
        outputs must be there).
    indent : str
        Prefix of each line.

    Returns
    -------
    lines : list of str
        Assignments of the temporaries ``_t0, _t1, ...``.
    results : list of str
        A Python expression for each output, in terms of the temporaries.
    """
    temporaries = sympy.numbered_symbols("_t")
    shared, reduced = sympy.cse([sympy.sympify(o) for o in outputs], symbols=temporaries,
                                order="none")
    names = dict(names)
    printer = PythonLawPrinter(names)
    lines = []
    for symbol, value in shared:
        names[symbol] = symbol.name
        lines.append(f"{indent}{symbol.name} = {printer.doprint(value)}")
    return lines, [printer.doprint(value) for value in reduced]


_MODULES: dict[str, object] = {}


def cached_module(key: str, build_source, prefix: str = "bencao_law"):
    """The generated module for ``key``, imported from the cache folder (once per process).

    Parameters
    ----------
    key : str
        Everything the source depends on (kind, expression, parameter names...): the module's
        file name is derived from its hash, so a later process finds the file without calling
        ``build_source`` (no parsing or differentiation), and Numba finds its machine code.
    build_source : callable
        ``build_source()`` -> the module's Python source, called only when the file is missing.

    Notes
    -----
    The file is written atomically (a temporary file renamed into place), so processes that
    generate the same module at the same time never read a partial file.
    """
    digest = hashlib.sha256(f"{CODEGEN_VERSION}\n{key}".encode()).hexdigest()[:24]
    name = f"{prefix}_{digest}"
    module = _MODULES.get(name)
    if module is not None:
        return module
    folder = cache_folder()
    path = os.path.join(folder, f"{name}.py")
    if not os.path.exists(path):
        source = build_source()
        fd, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".py", dir=folder)
        with os.fdopen(fd, "w") as handle:
            handle.write(source)
        os.replace(temporary, path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _MODULES[name] = module
    return module
