"""CUDA CustomNonbondedForce with an expression of its own (``CudaCustomPairs``) against the CPU
backend and OpenMM.

The CUDA work runs in one subprocess (see ``cuda_harness``); the CPU backend and OpenMM's
Reference platform are evaluated here.  The cases, small for the simulator, are 64 particles of
mass 40 on a 4x4x4 grid (spacing 0.6 nm) jittered by up to 0.06 nm per coordinate in a 2.4 nm
cubic box, with one CustomNonbondedForce:

* ``LJ``: a Lennard-Jones with per-particle sigma and epsilon combined in the expression and the
  global ``lam`` (default 0.8, dU/dlam asked), the pairs (7k, 7k + 1) excluded, cutoff 0.9 nm,
  switched from 0.8 nm; for each of NoCutoff, CutoffNonPeriodic and CutoffPeriodic, at
  lam = 0.8 and 0.3 (set through ``Backend.set_parameter``);
* ``WCA``: a WCA-like ``step`` expression without per-particle or global parameters,
  CutoffPeriodic, no switch.

Why CPU and CUDA forces are not always bit-identical: both backends evaluate the same generated
float64 law on bit-identical displacements (to a few ulp, see below), but they split each pair's
force differently between float64 and fixed point.  On CUDA the thread of the atom that *owns*
a pair sums the pair's force on that atom in float64 with its other owned pairs and converts the
sum once; on the CPU (a vectorised loop) every pair force is converted on its own and the owner
sums the integers.  Pair ownership differs too: CUDA's list gives (i, j), i < j, to i if i + j is
even and to j otherwise (``cuda.pairs``), the CPU's half list to whichever comes first in its
cell-sorted order (``cpu.neighbors``).  So the truncations of fixed point fall differently: a few
units of 2^-32 kJ/mol/nm per component.  :func:`test_both_backends_are_their_own_list_replayed`
pins this down by replaying the law over each backend's own list and getting each backend's
forces, energy and dU/dlam bit for bit.

The pair values themselves may differ by an ulp in Numba's CUDA simulator, where the law runs as
its Python source while the CPU's is compiled with ``@njit`` (:data:`LAW_ULPS` bounds it), which
the energy bounds include and which is far below the fixed-point unit of the forces.
"""

from __future__ import annotations

import math

import cuda_harness
import numpy as np
import openmm as mm
import pytest
from cuda_harness import assert_same_bits, bits, record
from openmm import unit

import bencao
from bencao.backends.common.fixed_point import to_fixed
from bencao.backends.common.laws.custom import custom_law
from bencao.backends.cpu.backend import CpuBackend
from bencao.backends.cpu.neighbors import SHIFT_BITS
from bencao.constants import FORCE_SCALE

# ------------------------------------------------------------------------------------------
# The cases, built the same way here and in the subprocess
# ------------------------------------------------------------------------------------------

N_SIDE = 4
N_PARTICLES = N_SIDE**3
#: Edge of the cubic box, nm
BOX_EDGE = 2.4
BOX = np.diag([BOX_EDGE] * 3)
#: Largest displacement of a particle from its grid point, nm, per coordinate
JITTER = 0.06
CUTOFF = 0.9
SWITCH = 0.8

LJ = ("lam*4*eps*((sig/r)^12-(sig/r)^6); sig=0.5*(sigma1+sigma2); "
      "eps=sqrt(epsilon1*epsilon2)")
#: WCA-like: the repulsive LJ core shifted up by eps, cut at its minimum rc = 2^(1/6) s (which
#: lies between the nearest-neighbour distances of the jittered grid, so both branches of the
#: step are reached)
WCA_S = 0.5
WCA_EPS = 0.6
WCA = f"step(rc-r)*(4*eps*((s/r)^12-(s/r)^6)+eps); rc=2^(1/6)*s; s={WCA_S}; eps={WCA_EPS}"

LAM_DEFAULT = 0.8
#: The values of ``lam`` evaluated, in order (the default first)
LAMS = (0.8, 0.3)

#: Case name -> (OpenMM nonbonded method, expression)
CASES = {
    "NoCutoff": (mm.CustomNonbondedForce.NoCutoff, LJ),
    "CutoffNonPeriodic": (mm.CustomNonbondedForce.CutoffNonPeriodic, LJ),
    "CutoffPeriodic": (mm.CustomNonbondedForce.CutoffPeriodic, LJ),
    "WCA": (mm.CustomNonbondedForce.CutoffPeriodic, WCA),
}
LJ_CASES = ("NoCutoff", "CutoffNonPeriodic", "CutoffPeriodic")
#: The values of lam each case is evaluated at (None: the case has no global parameter)
CASE_LAMS = {name: (LAMS if CASES[name][1] == LJ else (None,)) for name in CASES}
RUNS = [(name, lam) for name in CASES for lam in CASE_LAMS[name]]

#: Pairs excluded: every 7th particle with its successor
EXCLUSIONS = [(i, i + 1) for i in range(0, N_PARTICLES - 1, 7)]


def positions():
    """(64, 3) nm: the grid points (cell centres) jittered by up to JITTER per coordinate, all
    inside the box, nearest neighbours 0.6 +- 0.12 nm apart."""
    rng = np.random.default_rng(20240717)
    grid = np.stack(np.meshgrid(*[np.arange(N_SIDE)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return (grid + 0.5) * (BOX_EDGE / N_SIDE) + rng.uniform(-JITTER, JITTER, (N_PARTICLES, 3))


def per_particle():
    """(64, 2): sigma (0.30-0.34 nm) and epsilon (0.5-0.6 kJ/mol) of each particle."""
    rng = np.random.default_rng(11)
    return np.column_stack([rng.uniform(0.30, 0.34, N_PARTICLES),
                            rng.uniform(0.5, 0.6, N_PARTICLES)])


def case(name):
    """(openmm.System, positions (64, 3) nm) of case ``name`` (see the module notes)."""
    method, expression = CASES[name]
    system = mm.System()
    for _ in range(N_PARTICLES):
        system.addParticle(40.0)
    system.setDefaultPeriodicBoxVectors(*(mm.Vec3(*row) for row in BOX))
    force = mm.CustomNonbondedForce(expression)
    if expression == LJ:
        force.addPerParticleParameter("sigma")
        force.addPerParticleParameter("epsilon")
        force.addGlobalParameter("lam", LAM_DEFAULT)
        force.addEnergyParameterDerivative("lam")
        for row in per_particle():
            force.addParticle(list(row))
        force.setUseSwitchingFunction(True)
        force.setSwitchingDistance(SWITCH)
    else:
        for _ in range(N_PARTICLES):
            force.addParticle([])
    for i, j in EXCLUSIONS:
        force.addExclusion(i, j)
    force.setNonbondedMethod(method)
    force.setCutoffDistance(CUTOFF)
    system.addForce(force)
    return system, positions()


# ------------------------------------------------------------------------------------------
# The CUDA side (runs in the subprocess)
# ------------------------------------------------------------------------------------------


def cuda_results(path):
    """Evaluate every case on the CUDA backend and pickle the results to ``path``."""
    from bencao.backends.cuda import using_simulator
    from bencao.backends.cuda.backend import CudaBackend

    results = {"simulator": using_simulator()}
    for name in CASES:
        system, xyz = case(name)
        backend = CudaBackend(bencao.System.from_openmm(system))
        (term,) = backend.terms
        out = {"term_types": [type(t).__name__ for t in backend.terms],
               "parameters_before": backend.parameters, "evaluations": {}}
        for lam in CASE_LAMS[name]:
            if lam is not None:
                backend.set_parameter("lam", lam)
            first = backend.compute(xyz, parameter_derivatives=True)
            again = backend.compute(xyz, parameter_derivatives=True)
            energy_only = backend.compute(xyz)
            out["evaluations"][lam] = {
                "first": record(first), "again": record(again),
                "energy_only": record(energy_only), "parameters": backend.parameters}
        # The device Verlet list (private, read for the replay test): partners of each atom
        if term.neighbors is not None:
            counts = term.neighbors.counts.copy_to_host()[:N_PARTICLES]
            table = term.neighbors.neighbors.copy_to_host()
            out["list"] = [table[i, :counts[i]].astype(np.int64) for i in range(N_PARTICLES)]
        else:
            out["list"] = None
        results[name] = out
    cuda_harness.save(results, path)


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory):
    """The pickled results of :func:`cuda_results`, on a real GPU if there is one."""
    path = tmp_path_factory.mktemp("cuda_custom_pairs") / "results.pkl"
    return cuda_harness.cuda_results("test_cuda_custom_pairs", path)


# ------------------------------------------------------------------------------------------
# References evaluated here
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cpu_run():
    """name -> {"backend": the CpuBackend, "evaluations": lam -> record, "list": lam -> the
    half list as [(atom, [partners])] in the CPU's cell-sorted order (original indices)}."""
    runs = {}
    for name in CASES:
        system, xyz = case(name)
        backend = CpuBackend(bencao.System.from_openmm(system))
        (term,) = backend.terms
        evaluations, lists = {}, {}
        for lam in CASE_LAMS[name]:
            if lam is not None:
                backend.set_parameter("lam", lam)
            evaluations[lam] = record(backend.compute(xyz, parameter_derivatives=True))
            nl = term.neighbors
            lists[lam] = [(int(nl.order[a]),
                           [int(nl.order[e >> SHIFT_BITS]) for e in nl.neighbors[a, :nl.counts[a]]])
                          for a in range(N_PARTICLES)]
        runs[name] = {"backend": backend, "evaluations": evaluations, "list": lists}
    return runs


@pytest.fixture(scope="module")
def openmm_run():
    """(name, lam) -> (energy, forces, parameter derivatives) on OpenMM Reference."""
    runs = {}
    for name in CASES:
        system, xyz = case(name)
        context = mm.Context(system, mm.VerletIntegrator(0.001),
                             mm.Platform.getPlatformByName("Reference"))
        context.setPositions(xyz * unit.nanometer)
        for lam in CASE_LAMS[name]:
            if lam is not None:
                context.setParameter("lam", lam)
            state = context.getState(getEnergy=True, getForces=True,
                                     getParameterDerivatives=True)
            runs[name, lam] = (
                state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
                state.getForces(asNumpy=True).value_in_unit(
                    unit.kilojoule_per_mole / unit.nanometer),
                dict(state.getEnergyParameterDerivatives()))
    return runs


def periodic(name) -> bool:
    return CASES[name][0] == mm.CustomNonbondedForce.CutoffPeriodic


def cutoff2(name) -> float:
    """The squared cutoff the pair loops compare r2 with (inf without a cutoff)."""
    return math.inf if CASES[name][0] == mm.CustomNonbondedForce.NoCutoff else CUTOFF**2


def displacement(xyz, i, j, name):
    """r_j - r_i as both backends' pair loops compute it (minimum image in the cubic box)."""
    d = xyz[j] - xyz[i]
    if periodic(name):
        d = d - BOX_EDGE * np.floor(d / BOX_EDGE + 0.5)
    return d


def interacting_pairs(name):
    """(i, j, r) of every pair i < j that interacts in case ``name``: not excluded, within the
    cutoff (through the minimum image if periodic), numpy."""
    xyz = positions()
    i, j = np.triu_indices(N_PARTICLES, 1)
    d = xyz[j] - xyz[i]
    if periodic(name):
        d -= BOX_EDGE * np.floor(d / BOX_EDGE + 0.5)
    r = np.sqrt((d * d).sum(axis=1))
    excluded = np.isin(i * N_PARTICLES + j, [a * N_PARTICLES + b for a, b in EXCLUSIONS])
    keep = ~excluded & (r * r < cutoff2(name))
    return i[keep], j[keep], r[keep]


def partners(name):
    """(64,): how many pairs each particle is in (k_i, the fixed-point conversions it gets at
    most are k_i + 1)."""
    i, j, _ = interacting_pairs(name)
    return np.bincount(np.concatenate([i, j]), minlength=N_PARTICLES)


def pair_values(name, lam):
    """(energies, dE/dlam, magnitudes) of each interacting pair, numpy: an independent
    evaluation for the sizes that rounding bounds scale with.  A magnitude is the sum of the
    absolute values of the terms the law adds (the energy itself can cancel to ~0: WCA at rc)."""
    i, j, r = interacting_pairs(name)
    if CASES[name][1] == WCA:
        inside = r <= 2 ** (1 / 6) * WCA_S
        r6, r12 = (WCA_S / r) ** 6, (WCA_S / r) ** 12
        e = np.where(inside, 4 * WCA_EPS * (r12 - r6) + WCA_EPS, 0.0)
        magnitude = np.where(inside, 4 * WCA_EPS * (r12 + r6) + WCA_EPS, 0.0)
        return e, np.zeros_like(e), magnitude
    sig_eps = per_particle()
    sig = 0.5 * (sig_eps[i, 0] + sig_eps[j, 0])
    eps = np.sqrt(sig_eps[i, 1] * sig_eps[j, 1])
    r6, r12 = (sig / r) ** 6, (sig / r) ** 12
    switch = np.ones_like(r)
    if CASES[name][0] != mm.CustomNonbondedForce.NoCutoff:
        x = np.clip((r - SWITCH) / (CUTOFF - SWITCH), 0.0, 1.0)
        switch = 1 - 10 * x**3 + 15 * x**4 - 6 * x**5
    unit_lam = 4 * eps * (r12 - r6) * switch
    return lam * unit_lam, unit_lam, lam * 4 * eps * (r12 + r6) * switch


def summation_bound(values, n_sums) -> float:
    """Bound on the difference of two float64 sums of the same ``values`` taken in different
    orders and groupings: a sum whose longest chain of additions is m long is within
    m u sum|x| of the exact sum (u = 2^-53, Higham, first order); ``n_sums`` is the sum of the
    two chain lengths; 1% for the second-order terms and an ulp for fsum's final rounding."""
    total = math.fsum(np.abs(values))
    return n_sums * 2.0**-53 * total * 1.01 + np.spacing(total)


# ------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------

#: Bound on how far apart, relative to a pair's magnitude (``pair_values``), the simulator's
#: Python law and the CPU's njit law put a pair's energy or dU/dlam, in units of u = 2^-53:
#: CPython computes ``r**12`` with libm's pow (within an ulp), Numba as an unrolled product
#: (r^2, r^4, r^8, r^8 r^4: up to 11 u), the same for ``_t0**12``, and the ratio and sums of
#: such terms round alike on both sides after that: under 32 u (measured: 7 u at most)
LAW_ULPS = 32


def test_cases_exercise_what_they_claim():
    # Not a test of the backends: the cases must reach what the tests say they test.
    xyz = positions()
    assert xyz.min() > 0.0 and xyz.max() < BOX_EDGE
    _, _, r_all = interacting_pairs("NoCutoff")
    assert r_all.min() > 0.4  # no overlaps: the closest pair is well above sigma's 0.34 nm
    _, _, r = interacting_pairs("CutoffNonPeriodic")
    assert ((r > SWITCH) & (r < CUTOFF)).sum() > 50  # the switch is reached
    # every exclusion removes a pair within the periodic cutoff, 7 of 9 the non-periodic one
    assert all(np.linalg.norm(displacement(xyz, i, j, "CutoffPeriodic")) < CUTOFF
               for i, j in EXCLUSIONS)
    assert sum(np.linalg.norm(xyz[j] - xyz[i]) < CUTOFF for i, j in EXCLUSIONS) == 7
    # the periodic case has pairs through the boundary the non-periodic one does not
    assert len(interacting_pairs("CutoffPeriodic")[0]) > len(r) + 100
    # the WCA step: pairs inside the cutoff on both sides of rc
    _, _, r_wca = interacting_pairs("WCA")
    rc = 2 ** (1 / 6) * WCA_S
    assert (r_wca < rc).sum() > 10 and (r_wca > rc).sum() > 100


def test_backend_routes_custom_pairs_to_the_cuda_term(cuda_run, cpu_run):
    for name in CASES:
        assert cuda_run[name]["term_types"] == ["CudaCustomPairs"], name
        assert [type(t).__name__ for t in cpu_run[name]["backend"].terms] == \
            ["CpuCustomPairs"], name
        expected = {"lam": LAM_DEFAULT} if CASES[name][1] == LJ else {}
        assert cuda_run[name]["parameters_before"] == expected, name
        for lam, run in cuda_run[name]["evaluations"].items():
            assert run["parameters"] == ({} if lam is None else {"lam": lam}), name


@pytest.mark.parametrize("name, lam", RUNS)
def test_forces_match_cpu_backend(cuda_run, cpu_run, name, lam):
    forces = cuda_run[name]["evaluations"][lam]["first"][1]
    cpu_forces = cpu_run[name]["evaluations"][lam][1]
    assert np.abs(cpu_forces).max() > 0.1  # the case really has forces to compare
    # The backends split the pair forces differently between float64 partial sums and fixed
    # point: the CPU converts every pair force (its vectorised loop sums i's force as
    # integers), CUDA sums particle i's in float64 first, and with a cutoff they own pairs
    # differently (module notes); on a real GPU the law may round differently again.  Each
    # backend's component of particle i is within k_i + 1 units of 2^-32 of the exact sum of
    # its own pair forces (k_i + 1 truncations at most, each under a unit; float64 partial
    # sums add < 0.1 unit: <= 63 terms of
    # < 1e3 kJ/mol/nm at u = 1.1e-16), and the two exact sums differ by far less than a unit
    # (pair values ulps apart): 2 (k_i + 1) + 1 units per component (measured: 7 at most).
    units = np.abs(forces - cpu_forces) * FORCE_SCALE
    bound = 2 * (partners(name) + 1) + 1
    assert (units <= bound[:, None]).all(), units.max()


@pytest.mark.parametrize("name, lam", RUNS)
def test_energies_and_derivatives_match_cpu_to_the_summation_order(cuda_run, cpu_run, name,
                                                                  lam):
    energy, _, terms, derivatives = cuda_run[name]["evaluations"][lam]["first"]
    cpu_energy, _, cpu_terms, cpu_derivatives = cpu_run[name]["evaluations"][lam]
    assert set(terms) == set(cpu_terms) == {"CustomNonbondedForce"}
    assert bits(terms["CustomNonbondedForce"]) == bits(energy)  # the only term
    assert set(derivatives) == set(cpu_derivatives) == ({"lam"} if lam is not None else set())
    _, _, magnitude = pair_values(name, lam if lam is not None else 1.0)
    _, _, unit_magnitude = pair_values(name, 1.0)
    # The same pairs (the replay test below), summed differently: CUDA adds each atom's pairs
    # left to right (at most k) then the 64 partials with math.fsum; the CPU adds each atom's
    # pairs left to right, then the partials with np.sum (<= 63 additions): chains of at most
    # 2k + 64 additions in all.  Plus the pair values' own differences, LAW_ULPS of each.
    chains = 2 * int(partners(name).max()) + N_PARTICLES + LAW_ULPS
    assert abs(energy - cpu_energy) <= summation_bound(magnitude, chains), (energy, cpu_energy)
    if lam is not None:
        difference = derivatives["lam"] - cpu_derivatives["lam"]
        assert abs(difference) <= summation_bound(unit_magnitude, chains), difference


@pytest.mark.parametrize("name, lam", RUNS)
def test_both_backends_are_their_own_list_replayed(cuda_run, cpu_run, name, lam):
    # The diagnosis of the module notes, pinned down: the generated law replayed over each
    # backend's own list -- its pair ownership and order, the owner's sum (per pair in fixed
    # point on the CPU, in float64 on CUDA), one conversion per partner share -- gives that
    # backend's forces, energy and dU/dlam bit for
    # bit; the CPU's with the njit law, the simulator's with the law's pure Python source (what
    # ``device_version`` runs there), which rounds integer powers differently (LAW_ULPS).
    xyz = positions()
    backend = cpu_run[name]["backend"]
    (term,) = backend.terms
    compiled = custom_law("pair", term.term.expression, term.term.parameter_names,
                          term.term.global_names, term.term.derivative_names, term.name)
    table = term.params.copy()
    if lam is not None:
        table[:, term.global_columns["lam"]] = lam
    parameters = (table, *term.switch, *term.masks, term.grouped)

    def replay(pair_list, law, integer_owner=False):
        # integer_owner: the owner's force summed pair by pair in fixed point (the CPU's
        # vectorised loop), not in float64 then converted once (CUDA)
        forces = np.zeros((N_PARTICLES, 3), np.int64)
        partials = []
        for i, atoms in pair_list:
            own = np.zeros(3)
            energy = 0.0
            for j in atoms:
                d = displacement(xyz, i, j, name)
                r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
                if r2 >= cutoff2(name):
                    continue
                f, e = law(r2, i, j, parameters)
                energy += e
                for c in range(3):
                    own[c] -= f * d[c]
                    forces[j, c] += to_fixed(f * d[c])
                    if integer_owner:
                        forces[i, c] -= to_fixed(f * d[c])
            if not integer_owner:
                for c in range(3):
                    forces[i, c] += to_fixed(own[c])
            partials.append(energy)
        return forces / FORCE_SCALE, np.array(partials)

    laws = {"energy": compiled.law, **compiled.derivative_laws}

    # the CPU: np.sum of the per-atom partials in its cell order
    cpu_energy, cpu_forces, _, cpu_derivatives = cpu_run[name]["evaluations"][lam]
    cpu_list = cpu_run[name]["list"][lam]
    forces, partials = replay(cpu_list, laws["energy"], integer_owner=True)
    assert forces.tobytes() == cpu_forces.tobytes()
    assert bits(np.sum(partials)) == bits(cpu_energy)
    for key, value in cpu_derivatives.items():
        assert bits(np.sum(replay(cpu_list, laws[key])[1])) == bits(value), key

    if not cuda_run["simulator"]:
        return  # on a GPU the law is compiled for the device and rounds its own way
    from bencao.backends.cuda.common import _pure_python
    cuda_energy, cuda_forces, _, cuda_derivatives = cuda_run[name]["evaluations"][lam]["first"]
    cuda_list = cuda_run[name]["list"]
    if cuda_list is None:  # NoCutoff: CUDA's all-pairs loop, every j > i not excluded
        cuda_list = [[j for j in range(i + 1, N_PARTICLES) if (i, j) not in EXCLUSIONS]
                     for i in range(N_PARTICLES)]
    cuda_list = list(enumerate(cuda_list))
    python = {key: _pure_python(law.py_func, {}) for key, law in laws.items()}
    forces, partials = replay(cuda_list, python["energy"])
    assert forces.tobytes() == cuda_forces.tobytes()
    assert bits(math.fsum(partials)) == bits(cuda_energy)
    for key, value in cuda_derivatives.items():
        assert bits(math.fsum(replay(cuda_list, python[key])[1])) == bits(value), key


@pytest.mark.parametrize("name, lam", RUNS)
def test_matches_openmm_reference(cuda_run, openmm_run, name, lam):
    energy, forces, _, derivatives = cuda_run[name]["evaluations"][lam]["first"]
    ref_energy, ref_forces, ref_derivatives = openmm_run[name, lam]
    _, _, magnitude = pair_values(name, lam if lam is not None else 1.0)
    # Both float64 sums of the same pair energies, differing only in the order of operations
    # (SymPy's simplified law vs Lepton's, and the summations): tens of ulp of each pair's
    # magnitude, summation chains of <= 2007 pairs, so ~1e-13 of sum(magnitude) at worst; the
    # energy is at least 1/30 of that sum (cancellation checked: 1.06x for LJ, 24x for WCA,
    # whose terms cancel at rc), hence 1e-11 relative is ample.
    assert math.fsum(magnitude) < 30 * abs(energy)
    assert energy == pytest.approx(ref_energy, rel=1e-11)
    # Fixed point truncates each of particle i's k_i + 1 conversions by under 1/FORCE_SCALE
    # (2.3e-10 kJ/mol/nm); OpenMM's float64 sums and the two laws' orders of operations add
    # rounding of a few ulp of the pair forces, far under 1e-12 of the largest force.
    scale = np.abs(ref_forces).max()
    assert scale > 0.1  # the case really has forces to compare
    bound = (partners(name) + 1)[:, None] / FORCE_SCALE + 1e-12 * scale
    assert (np.abs(forces - ref_forces) <= bound).all(), np.abs(forces - ref_forces).max()
    assert set(derivatives) == set(ref_derivatives) == ({"lam"} if lam is not None else set())
    for key, value in ref_derivatives.items():
        # the energy's sum without lam: the same reasoning, 1e-11 relative is ample
        assert derivatives[key] == pytest.approx(value, rel=1e-11), key


@pytest.mark.parametrize("name, lam", RUNS)
def test_bit_identical_reruns(cuda_run, name, lam):
    run = cuda_run[name]["evaluations"][lam]
    assert_same_bits(run["first"], run["again"])
    # without derivatives: the same energy and forces (the derivative laws add zero forces)
    assert_same_bits(run["first"], run["energy_only"], derivatives=False)
    assert run["energy_only"][3] == {}


@pytest.mark.parametrize("name", LJ_CASES)
def test_energy_is_proportional_to_lam(cuda_run, name):
    evaluations = cuda_run[name]["evaluations"]
    (e_high, f_high, _, d_high), (e_low, f_low, _, d_low) = (
        evaluations[lam]["first"] for lam in LAMS)
    # dU/dlam is the lam-free law: the same bits at both values of lam
    assert bits(d_high["lam"]) == bits(d_low["lam"])
    assert e_high != e_low and np.abs(f_high - f_low).max() > 0.1
    _, _, unit_magnitude = pair_values(name, 1.0)
    k = int(partners(name).max())
    for lam, energy in zip(LAMS, (e_high, e_low)):
        # E(lam) = lam dU/dlam: per pair the law's 4*lam*sqrt(...)*(...) and the derivative
        # law's 4*sqrt(...)*(...) round a few times differently (<= 8 u of the pair), and the
        # two sums each round within k u sum|e| (per-atom chains) plus fsum's half ulp
        bound = (8 + 2 * k) * 2.0**-53 * lam * math.fsum(unit_magnitude) \
            + 2 * np.spacing(abs(energy))
        assert abs(energy - lam * d_high["lam"]) <= bound, (lam, energy - lam * d_high["lam"])
    # and so the ratio of the energies is the ratio of the lams, to the same rounding (both
    # bounds relative to |dU/dlam|, plus the division's and the product's ulps)
    ratio_bound = 2 * (8 + 2 * k) * 2.0**-53 * math.fsum(unit_magnitude) / abs(d_high["lam"])
    assert abs(e_low / e_high - LAMS[1] / LAMS[0]) <= ratio_bound + 8 * 2.0**-53
    # forces scale with lam too, up to fixed-point truncation: k_i + 1 units per component at
    # each lam, the high one scaled by 0.3/0.8 (1e-12 for the float64 product's rounding)
    bound = (partners(name) + 1)[:, None] * (1 + LAMS[1] / LAMS[0]) / FORCE_SCALE
    assert (np.abs(f_low - f_high * (LAMS[1] / LAMS[0])) <= bound + 1e-12).all()
