"""OpenMM's tabulated functions (Continuous1D/2D/3D, Discrete1D/2D/3D) in generated laws.

A continuous function is OpenMM's spline through its values on a uniform grid: in 1-D the
natural (or periodic) cubic spline; in 2-D and 3-D the piecewise bicubic and tricubic patches
whose values and derivatives at the grid points (d/dx, d/dy, d2/dxdy, ... up to d3/dxdydz) are
those of the 1-D splines through the grid lines, applied axis by axis.  Each patch is the
tensor-product cubic Hermite interpolant of that corner data, which is what OpenMM's
coefficient matrices compute; so only the corner data are stored (:func:`hermite_nodes`), each
derivative already multiplied by the grid spacings it is taken along.  Outside [min, max] a
continuous function is 0 with zero derivatives, a periodic one wraps; a discrete function reads
its table at the rounded arguments, clamped to the table (OpenMM's Reference platform), and has
zero derivatives.

A table is compiled into the generated module as a constant array (``_table_<k>``), so a law's
signature is the same with tables as without, on the CPU and on CUDA; the module's cache key
includes a hash of the values.  The functions here evaluate them; the module-level arrays and
the SymPy functions that print calls to them come from :func:`table_functions` and
:func:`table_source`.
"""

from __future__ import annotations

import base64
import hashlib
import math
from typing import NamedTuple

import numpy as np
import sympy
from numba import njit
from scipy.interpolate import CubicSpline

from bencao.expressions.functions import _Constant
from bencao.forces.custom import TABLE_KINDS


class TableSpec(NamedTuple):
    """One tabulated function of a force, hashable (the key of compiled laws).

    Attributes
    ----------
    name : str
        The name the expression calls it by.
    kind : str
        One of :data:`TABLE_KINDS`.
    shape : tuple of int
        Grid points per axis, x first.
    ranges : tuple of float
        (min, max) per axis, x first; empty for a discrete function.
    periodic : bool
        A periodic continuous function (wraps into its range).
    values : bytes
        The values as float64 bytes, x fastest (OpenMM's order).
    """

    name: str
    kind: str
    shape: tuple
    ranges: tuple
    periodic: bool
    values: bytes


def table_specs(term) -> tuple:
    """The :class:`TableSpec` of each of a record's ``tabulated_functions`` (dicts; or of the
    dicts themselves)."""
    tables = getattr(term, "tabulated_functions", term)
    return tuple(TableSpec(t["name"], t["kind"], tuple(t["shape"]), tuple(t["ranges"]),
                           bool(t["periodic"]), np.asarray(t["values"], np.float64).tobytes())
                 for t in tables)


def _spline_derivative(values: np.ndarray, axis: int, periodic: bool):
    """d/dx at the grid points of the cubic splines through ``values`` along ``axis``
    (natural, or periodic), times the grid spacing: the derivative by the point index, which
    is what a spline on a unit grid gives (a cubic spline does not depend on the scale of x)."""
    n = values.shape[axis]
    grid = np.arange(n, dtype=np.float64)
    if n == 2 and not periodic:  # a straight line, as OpenMM's natural spline of two points
        slope = np.diff(values, axis=axis)
        return np.repeat(slope, 2, axis=axis)
    spline = CubicSpline(grid, values, axis=axis, bc_type="periodic" if periodic else "natural")
    return spline(grid, 1)


def hermite_nodes(spec: TableSpec) -> np.ndarray:
    """Corner data of a continuous function: (points, 2^d) float64, point index x fastest,
    column c holding the derivative along every axis a whose bit (1 << a) is set in c, times
    those axes' grid spacings."""
    d = len(spec.shape)
    # numpy axes in reverse (z, y, x) so that the flat index is x fastest
    values = np.frombuffer(spec.values, np.float64).reshape(spec.shape[::-1])
    data = [values]
    for a in range(d):
        data += [_spline_derivative(field, d - 1 - a, spec.periodic) for field in data]
    return np.stack([field.reshape(-1) for field in data], axis=1)


@njit(cache=True, inline="always")
def _cell(t, lo, hi, n, periodic):
    """(inside, cell index, position in the cell in [0, 1]) of t on n points over [lo, hi]."""
    if periodic:
        s = (t - lo) / (hi - lo)
        t = lo + (hi - lo) * (s - math.floor(s))
    if not (lo <= t <= hi):
        return False, 0, 0.0
    u = (t - lo) / (hi - lo) * (n - 1)
    i = min(int(math.floor(u)), n - 2)
    return True, i, u - i


@njit(cache=True, inline="always")
def _basis(s, corner, derivative):
    """The cubic Hermite basis on [0, 1] and its derivative: corner 0 or 1, for the value
    (derivative 0) or the slope (1) there."""
    if corner == 0 and derivative == 0:
        return (1.0 + 2.0 * s) * (1.0 - s) * (1.0 - s), 6.0 * s * (s - 1.0)
    if corner == 0:
        return s * (1.0 - s) * (1.0 - s), (1.0 - s) * (1.0 - 3.0 * s)
    if derivative == 0:
        return s * s * (3.0 - 2.0 * s), 6.0 * s * (1.0 - s)
    return s * s * (s - 1.0), s * (3.0 * s - 2.0)


@njit(cache=True)
def continuous1d(nodes, n, lo, hi, periodic, x):
    """(f, df/dx) of a continuous 1-D function (corner data ``nodes``) at x."""
    inside, i, s = _cell(x, lo, hi, n, periodic)
    if not inside:
        return 0.0, 0.0
    value = 0.0
    slope = 0.0
    for c in range(2):
        for d in range(2):
            b, db = _basis(s, c, d)
            value += b * nodes[i + c, d]
            slope += db * nodes[i + c, d]
    return value, slope * (n - 1) / (hi - lo)


@njit(cache=True)
def continuous2d(nodes, nx, ny, xlo, xhi, ylo, yhi, periodic, x, y):
    """(f, df/dx, df/dy) of a continuous 2-D function at (x, y)."""
    inside_x, i, s = _cell(x, xlo, xhi, nx, periodic)
    inside_y, j, t = _cell(y, ylo, yhi, ny, periodic)
    if not (inside_x and inside_y):
        return 0.0, 0.0, 0.0
    value = 0.0
    gx = 0.0
    gy = 0.0
    for cy in range(2):
        for cx in range(2):
            point = (i + cx) + nx * (j + cy)
            for dy in range(2):
                by, dby = _basis(t, cy, dy)
                for dx in range(2):
                    bx, dbx = _basis(s, cx, dx)
                    corner = nodes[point, dx + 2 * dy]
                    value += bx * by * corner
                    gx += dbx * by * corner
                    gy += bx * dby * corner
    return value, gx * (nx - 1) / (xhi - xlo), gy * (ny - 1) / (yhi - ylo)


@njit(cache=True)
def continuous3d(nodes, nx, ny, nz, xlo, xhi, ylo, yhi, zlo, zhi, periodic, x, y, z):
    """(f, df/dx, df/dy, df/dz) of a continuous 3-D function at (x, y, z)."""
    inside_x, i, s = _cell(x, xlo, xhi, nx, periodic)
    inside_y, j, t = _cell(y, ylo, yhi, ny, periodic)
    inside_z, k, u = _cell(z, zlo, zhi, nz, periodic)
    if not (inside_x and inside_y and inside_z):
        return 0.0, 0.0, 0.0, 0.0
    value = 0.0
    gx = 0.0
    gy = 0.0
    gz = 0.0
    for cz in range(2):
        for cy in range(2):
            for cx in range(2):
                point = (i + cx) + nx * ((j + cy) + ny * (k + cz))
                for dz in range(2):
                    bz, dbz = _basis(u, cz, dz)
                    for dy in range(2):
                        by, dby = _basis(t, cy, dy)
                        for dx in range(2):
                            bx, dbx = _basis(s, cx, dx)
                            corner = nodes[point, dx + 2 * dy + 4 * dz]
                            value += bx * by * bz * corner
                            gx += dbx * by * bz * corner
                            gy += bx * dby * bz * corner
                            gz += bx * by * dbz * corner
    return (value, gx * (nx - 1) / (xhi - xlo), gy * (ny - 1) / (yhi - ylo),
            gz * (nz - 1) / (zhi - zlo))


@njit(cache=True, inline="always")
def discrete_index(x, n):
    """OpenMM Reference's index of a discrete table: x rounded, clamped to [0, n - 1]."""
    return max(0, min(n - 1, int(math.floor(x + 0.5))))


def _continuous_call(k: int, spec: TableSpec, arguments: str) -> str:
    """The Python call evaluating continuous table ``k``: a tuple (f, df/dx, ...)."""
    d = len(spec.shape)
    sizes = ", ".join(str(n) for n in spec.shape)
    ranges = ", ".join(repr(float(v)) for v in spec.ranges)
    return (f"continuous{d}d(_table_{k}, {sizes}, {ranges}, {spec.periodic}, {arguments})")


def _printed(k: int, spec: TableSpec, output: int):
    """The printer hook of table ``k``'s function (output 0) or its derivative along axis
    ``output - 1``."""

    def printed(self, printer):
        arguments = [printer.doprint(a) for a in self.args]
        if spec.kind.startswith("discrete"):
            index, stride = [], 1
            for argument, n in zip(arguments, spec.shape):
                index.append(f"{stride}*discrete_index({argument}, {n})")
                stride *= n
            return f"_table_{k}[{' + '.join(index)}]"
        return f"{_continuous_call(k, spec, ', '.join(arguments))}[{output}]"

    return printed


def table_functions(tables: tuple, where: str) -> dict:
    """The parser's functions for ``tables`` (:class:`TableSpec`): name -> (argument count,
    SymPy function).  A continuous function differentiates into its derivative functions; those
    have no derivatives of their own (no force needs second derivatives)."""
    functions = {}
    for k, spec in enumerate(tables):
        d = TABLE_KINDS[spec.kind]
        if spec.kind.startswith("discrete"):
            function = type(f"Table{k}", (_Constant,),
                            {"nargs": d, "_pythoncode": _printed(k, spec, 0)})
        else:
            def second(self, argindex=1, name=spec.name):
                raise ValueError(f"{where}: a second derivative of the tabulated function "
                                 f"{name!r} is not supported")

            derivatives = [type(f"Table{k}D{a}", (sympy.Function,),
                                {"nargs": d, "_pythoncode": _printed(k, spec, a + 1),
                                 "fdiff": second}) for a in range(d)]

            def fdiff(self, argindex=1, derivatives=derivatives):
                return derivatives[argindex - 1](*self.args)

            function = type(f"Table{k}", (sympy.Function,),
                            {"nargs": d, "_pythoncode": _printed(k, spec, 0), "fdiff": fdiff})
        functions[spec.name] = (d, function)
    return functions


def table_source(tables: tuple) -> str:
    """Module-level lines of a generated module that define its tables as constant arrays
    (base64 of the float64 data: exact) and import the evaluators."""
    if not tables:
        return ""
    evaluators = "continuous1d, continuous2d, continuous3d, discrete_index"
    lines = ["import base64", "import numpy as np",
             f"from bencao.backends.common.laws.tabulated import ({evaluators})", ""]
    for k, spec in enumerate(tables):
        if spec.kind.startswith("discrete"):
            data = np.frombuffer(spec.values, np.float64)
            shape = f"({data.size},)"
        else:
            data = hermite_nodes(spec)
            shape = f"{data.shape}"
        text = base64.b64encode(np.ascontiguousarray(data, np.float64).tobytes()).decode()
        lines.append(f"_table_{k} = np.frombuffer(base64.b64decode({text!r}), "
                     f"np.float64).reshape({shape}).copy()")
    return "\n".join(lines) + "\n"


def tables_key(tables: tuple) -> str:
    """What the generated source depends on in ``tables``: names, kinds, grids and a hash of
    the values."""
    return repr([(s.name, s.kind, s.shape, s.ranges, s.periodic,
                  hashlib.sha256(s.values).hexdigest()) for s in tables])
