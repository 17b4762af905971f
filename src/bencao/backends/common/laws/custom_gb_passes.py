"""The passes of a CustomGBForce, written once as per-particle bodies that each backend wraps in
its own loop (a ``prange`` on the CPU, one thread per particle on CUDA).

For particle i, in order (each pass needs the previous one finished for every particle):

1. ``pair_value``: the first computed value, a sum over the other particles of both orders of the
   pair (i is "1"), when that value is a pair sum;
2. ``single_values``: the per-particle values, in order;
3. ``energy_terms``: per-particle terms, and each pair term from i's side (i is "1" of the pairs
   with a later j, "2" of those with an earlier one; the energy counts each pair once), with the
   force on i and dE/dv of i's values (this pass sets them; the next ones add to them);
4. ``chain_values``: dE/dv carried back through the per-particle values: the weight of i's first
   value, and the force from values that depend on i's position;
5. ``chain_pairs``: the forces through the first value's pair sums, from both ends;
6. ``parameter_derivatives`` (when derivatives of global parameters are asked): dE/dp, after
   ``energy_terms`` in place of 4 and 5 (:func:`derivative_pass`).

Each pass writes only particle i's own entries, so no particle waits on another within a pass and
every sum has one fixed order: bit-identical on any number of threads, with no atomics.  A pass
body uses ``LOCAL(k)`` for a per-thread float64 scratch array of k entries (``np.empty`` on the
CPU, ``cuda.local.array`` on CUDA) and the law functions of ``laws.custom_gb``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: What every pass takes (see the CPU and CUDA terms for the arrays).
ARGUMENTS = "positions, table, values, excl_start, excl_atoms, box, periodic, cutoff2, tabulated"

_PAIR_LOOP = """\
start = excl_start[i]
end = excl_start[i + 1]
pointer = start
for j in range(n):
    if j == i:
        continue
    while pointer < end and excl_atoms[pointer] < j:
        pointer += 1
    excluded = pointer < end and excl_atoms[pointer] == j
    dx = positions[i, 0] - positions[j, 0]
    dy = positions[i, 1] - positions[j, 1]
    dz = positions[i, 2] - positions[j, 2]
    if periodic:
        dx, dy, dz = minimum_image(dx, dy, dz, box, True)
    r2 = dx * dx + dy * dy + dz * dz
    if r2 >= cutoff2:
        continue
    r = math.sqrt(r2)"""

_POSITION = "px = positions[i, 0]\npy = positions[i, 1]\npz = positions[i, 2]"
_USES_EXCLUSIONS = {"pair": True, "pair_no_exclusions": False, "single": False}


@dataclass(frozen=True)
class Pass:
    """One pass: its function name, the arguments after :data:`ARGUMENTS`, and its body for
    particle ``i`` (``n`` the particle count), unindented."""

    name: str
    extra: str
    body: str


def indent(text: str, spaces: int) -> str:
    """``text`` with every non-empty line indented by ``spaces``."""
    return "\n".join((" " * spaces + line) if line else line for line in text.split("\n"))


def _skip_excluded(kind: str) -> str:
    return "\n    if excluded:\n        continue" if _USES_EXCLUSIONS[kind] else ""


def check_supported(term) -> None:
    """Raise ValueError naming the force if these passes cannot compute ``term``: a pair-sum
    value after the first (OpenMM's app layer never writes one)."""
    if any(kind != "single" for kind in term.value_types[1:]):
        raise ValueError(f"{term.name}: only the first computed value may be a sum over pairs")


def gb_passes(term) -> list[Pass]:
    """The passes of ``term`` (a CustomGB), in order (ValueError from :func:`check_supported`)."""
    check_supported(term)
    n_values = len(term.value_names)
    first_pair = term.value_types[0] != "single"
    passes = []
    if first_pair:
        passes.append(Pass("pair_value", "", "total = 0.0\n" + _PAIR_LOOP
                           + _skip_excluded(term.value_types[0])
                           + "\n    total += value_0(r, i, j, table, tabulated)[0]"
                           + "\nvalues[i, 0] = total"))
    singles = [f"values[i, {k}] = value_{k}(i, table, values, px, py, pz, tabulated)[0]"
               for k in range(1 if first_pair else 0, n_values)]
    passes.append(Pass("single_values", "", "\n".join([_POSITION, *singles])))
    passes.append(Pass("energy_terms", ", forces, dE_dv, atom_energy", _energy_body(term)))
    passes.append(Pass("chain_values", ", forces, dE_dv, weight", _chain_body(term, first_pair)))
    if first_pair:
        passes.append(Pass("chain_pairs", ", forces, weight", "fx = 0.0\nfy = 0.0\nfz = 0.0\n"
                           + _PAIR_LOOP + _skip_excluded(term.value_types[0]) + """
    first = value_0(r, i, j, table, tabulated)[1]
    second = value_0(r, j, i, table, tabulated)[1]
    scale = (weight[i] * first + weight[j] * second) / r
    fx -= scale * dx
    fy -= scale * dy
    fz -= scale * dz
forces[i, 0] += fx
forces[i, 1] += fy
forces[i, 2] += fz"""))
    derivatives = derivative_pass(term)
    if derivatives is not None:
        passes.append(derivatives)
    return passes


#: The name of the pass that computes dE/dp (run by ``parameter_derivatives``, after
#: ``energy_terms``, instead of the chain passes).
DERIVATIVE_PASS = "parameter_derivatives"


def derivative_pass(term) -> Pass | None:
    """The pass of dE/dp for each global parameter p asked for (``derivative_names``), or None.

    Forward through the values: dv_0/dp is the pair sum of the first value's dv/dp (or its
    own), dv_k/dp = dv_k/dp|explicit + sum over m < k of dv_k/dv_m dv_m/dp; particle i then
    adds sum over k of dE/dv_k[i] dv_k[i]/dp (``dE_dv`` as ``energy_terms`` left it: the energy
    terms' direct derivatives), its single terms' dE/dp and, for each pair term, dE/dp of its
    pairs with later particles (each pair once), into ``dE_dp[i, q]``.
    """
    n_params = len(term.derivative_names)
    if not n_params:
        return None
    n_values = len(term.value_names)
    first_pair = term.value_types[0] != "single"
    lines = [f"dv = LOCAL({max(n_values, 1) * n_params})  # dv_k/dp_q at k * Q + q",
             f"total = LOCAL({n_params})",
             f"for q in range({max(n_values, 1) * n_params}):", "    dv[q] = 0.0",
             f"for q in range({n_params}):", "    total[q] = 0.0", _POSITION]
    if first_pair:
        lines.append(_PAIR_LOOP + _skip_excluded(term.value_types[0]))
        lines.append("    out = value_0(r, i, j, table, tabulated)")
        lines += [f"    dv[{q}] += out[{2 + q}]" for q in range(n_params)]
    for k in range(1 if first_pair else 0, n_values):
        lines.append(f"out = value_{k}(i, table, values, px, py, pz, tabulated)")
        for q in range(n_params):
            terms = [f"out[{4 + k + q}]"] + [f"out[{1 + m}] * dv[{m * n_params + q}]"
                                               for m in range(k)]
            lines.append(f"dv[{k * n_params + q}] = {' + '.join(terms)}")
    for q in range(n_params):
        lines += [f"for k in range({n_values}):",
                  f"    total[{q}] += dE_dv[i, k] * dv[k * {n_params} + {q}]"]
    pairs = []
    for t, kind in enumerate(term.energy_types):
        if kind != "single":
            pairs.append((t, kind))
            continue
        lines.append(f"out = energy_{t}(i, table, values, px, py, pz, tabulated)")
        lines += [f"total[{q}] += out[{4 + n_values + q}]" for q in range(n_params)]
    if pairs:
        lines.append(_PAIR_LOOP)
        for t, kind in pairs:
            inner = [f"out = energy_{t}(r, i, j, table, values, tabulated)"]
            inner += [f"total[{q}] += out[{2 + 2 * n_values + q}]" for q in range(n_params)]
            condition = "if j > i and not excluded:" if _USES_EXCLUSIONS[kind] else "if j > i:"
            lines.append(indent(condition + "\n" + indent("\n".join(inner), 4), 4))
    lines += [f"for q in range({n_params}):", "    dE_dp[i, q] = total[q]"]
    return Pass(DERIVATIVE_PASS, ", dE_dv, dE_dp", "\n".join(lines))


def _energy_body(term) -> str:
    n_values = len(term.value_names)
    # The first pass to write forces and dE_dv: it sets them, so no one zeroes them before.
    lines = ["energy = 0.0", "fx = 0.0", "fy = 0.0", "fz = 0.0", _POSITION,
             f"for m in range({n_values}):", "    dE_dv[i, m] = 0.0"]
    pairs = []
    for t, kind in enumerate(term.energy_types):
        if kind != "single":
            pairs.append((t, kind))
            continue
        lines += [f"out = energy_{t}(i, table, values, px, py, pz, tabulated)",
                  "energy += out[0]"]
        lines += [f"dE_dv[i, {m}] += out[{1 + m}]" for m in range(n_values)]
        lines += [f"fx -= out[{1 + n_values}]", f"fy -= out[{2 + n_values}]",
                  f"fz -= out[{3 + n_values}]"]
    if pairs:
        lines.append(_PAIR_LOOP)
        for t, kind in pairs:
            inner = ["if j > i:",
                     f"    out = energy_{t}(r, i, j, table, values, tabulated)",
                     "    energy += out[0]"]
            inner += [f"    dE_dv[i, {m}] += out[{2 + m}]" for m in range(n_values)]
            inner += ["else:", f"    out = energy_{t}(r, j, i, table, values, tabulated)"]
            inner += [f"    dE_dv[i, {m}] += out[{2 + n_values + m}]" for m in range(n_values)]
            inner += ["scale = out[1] / r", "fx -= scale * dx", "fy -= scale * dy",
                      "fz -= scale * dz"]
            text = "\n".join(inner)
            if _USES_EXCLUSIONS[kind]:
                text = "if not excluded:\n" + indent(text, 4)
            lines.append(indent(text, 4))
    lines += ["forces[i, 0] = fx", "forces[i, 1] = fy", "forces[i, 2] = fz",
              "atom_energy[i] = energy"]
    return "\n".join(lines)


def _chain_body(term, first_pair: bool) -> str:
    n_values = len(term.value_names)
    lines = [f"through = LOCAL({n_values})  # d v_k / d v_0 (the pair sum)",
             f"gx = LOCAL({n_values})  # d v_k / d x_i, and y, z",
             f"gy = LOCAL({n_values})", f"gz = LOCAL({n_values})",
             f"for k in range({n_values}):",
             "    through[k] = 0.0\n    gx[k] = 0.0\n    gy[k] = 0.0\n    gz[k] = 0.0",
             _POSITION]
    if first_pair:
        lines.append("through[0] = 1.0")
    for k in range(1 if first_pair else 0, n_values):
        lines.append(f"out = value_{k}(i, table, values, px, py, pz, tabulated)")
        for m in range(k):
            lines += [f"through[{k}] += out[{1 + m}] * through[{m}]",
                      f"gx[{k}] += out[{1 + m}] * gx[{m}]",
                      f"gy[{k}] += out[{1 + m}] * gy[{m}]",
                      f"gz[{k}] += out[{1 + m}] * gz[{m}]"]
        lines += [f"gx[{k}] += out[{1 + k}]", f"gy[{k}] += out[{2 + k}]",
                  f"gz[{k}] += out[{3 + k}]"]
    lines += ["total = 0.0", f"for k in range({n_values}):",
              "    total += dE_dv[i, k] * through[k]",
              "    forces[i, 0] -= dE_dv[i, k] * gx[k]",
              "    forces[i, 1] -= dE_dv[i, k] * gy[k]",
              "    forces[i, 2] -= dE_dv[i, k] * gz[k]",
              "weight[i] = total"]
    return "\n".join(lines)


def law_names(term) -> list[str]:
    """The law functions the passes call (``value_<k>``, ``energy_<t>``)."""
    return ([f"value_{k}" for k in range(len(term.value_names))]
            + [f"energy_{t}" for t in range(len(term.energy_types))])
