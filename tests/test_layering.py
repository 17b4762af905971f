"""The package's import directions and module sizes, so the backend contract stays true.

Generic layers (everything outside ``bencao.backends``) reach a backend only through the
registry in ``bencao.backends``; the CUDA backend never borrows the CPU backend's modules (what
both need lives in ``bencao.backends.common``, which imports neither).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import bencao

PACKAGE = pathlib.Path(bencao.__file__).parent

#: Longest module we accept, in lines: past this a module holds more than one concept.
MAX_LINES = 700


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield path, ".".join(parts)


def _imports(path: pathlib.Path, module: str) -> set[str]:
    """Every module ``module`` imports, at any depth of its code, as absolute names."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _violations(where, forbidden):
    found = []
    for path, module in _modules():
        if not where(module):
            continue
        for name in sorted(_imports(path, module)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{module} imports {name}")
    return found


def test_generic_layers_import_no_backend():
    outside = lambda module: not module.startswith("bencao.backends")
    assert _violations(outside, ("bencao.backends.cpu", "bencao.backends.cuda")) == []


def test_cuda_backend_imports_nothing_from_the_cpu_backend():
    cuda = lambda module: module.startswith("bencao.backends.cuda")
    assert _violations(cuda, ("bencao.backends.cpu",)) == []


def test_common_backend_layer_imports_no_backend():
    common = lambda module: module.startswith("bencao.backends.common")
    assert _violations(common, ("bencao.backends.cpu", "bencao.backends.cuda")) == []


def test_the_checker_sees_relative_and_nested_imports(tmp_path):
    # The rules above are only as good as the import finder: it must catch an import inside a
    # function and a relative one, or a violation could hide there.
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from ..cpu import backend\n    import bencao.backends.cuda.state\n")
    names = _imports(source, "bencao.backends.common.probe")
    assert "bencao.backends.cpu.backend" in names
    assert "bencao.backends.cuda.state" in names


@pytest.mark.parametrize("path", [p for p, _ in _modules()], ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_longer_than_the_limit(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines (limit {MAX_LINES})"
