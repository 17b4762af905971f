"""Reciprocal-space Ewald and PME: OpenMM's parameter choice, agreement with OpenMM's Reference
platform (energy and forces, cubic and triclinic, neutral and charged), and bit-identical results
on 1 and 2 threads."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import openmm
import pytest
from reference import force_agreement

from bencao.backends.common.ewald_parameters import ewald_parameters
from bencao.backends.common.fixed_point import forces_from_fixed
from bencao.backends.cpu.pme import CpuEwald, CpuPME
from bencao.forces.nonbonded import Nonbonded

CUBIC = np.diag([3.0, 3.0, 3.0])
RECTANGULAR = np.diag([2.2, 2.6, 3.0])
# Rhombic dodecahedron (square xy face) in OpenMM's reduced form, and a generic triclinic box.
DODECAHEDRON = np.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [2.0, 2.0, 2.0 * np.sqrt(2.0)]])
TRICLINIC = np.array([[3.5, 0.0, 0.0], [1.1, 3.2, 0.0], [-1.2, 0.9, 3.0]])


def make_term(charges, method, cutoff=1.0, tolerance=5e-4, alpha=0.0, grid=(0, 0, 0)):
    """A Nonbonded term with only Coulomb (zero LJ, no exceptions)."""
    n = len(charges)
    return Nonbonded(
        charges=np.asarray(charges, dtype=np.float64), sigma=np.full(n, 0.3),
        epsilon=np.zeros(n), exception_atoms=np.zeros((0, 2), dtype=np.int64),
        exception_chargeprod=np.zeros(0), exception_sigma=np.zeros(0),
        exception_epsilon=np.zeros(0), method=method, cutoff=cutoff, switch_distance=0.0,
        reaction_field_dielectric=1.0, ewald_error_tolerance=tolerance, ewald_alpha=alpha,
        ewald_grid=np.asarray(grid, dtype=np.int64), dispersion_correction=False,
        exceptions_use_periodic=False)


def openmm_context(charges, box, method, cutoff=1.0, tolerance=5e-4, pme_parameters=None):
    """Reference-platform Context with the NonbondedForce's reciprocal part in group 1."""
    system = openmm.System()
    force = openmm.NonbondedForce()
    force.setNonbondedMethod(method)
    force.setCutoffDistance(cutoff)
    force.setEwaldErrorTolerance(tolerance)
    if pme_parameters is not None:
        force.setPMEParameters(*pme_parameters)
    for q in charges:
        system.addParticle(1.0)
        force.addParticle(float(q), 0.3, 0.0)
    force.setForceGroup(0)
    force.setReciprocalSpaceForceGroup(1)
    system.addForce(force)
    system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*row) for row in box])
    context = openmm.Context(system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    return context, force


def openmm_reciprocal(charges, positions, box, method, cutoff=1.0, tolerance=5e-4,
                      pme_parameters=None):
    """OpenMM's reciprocal-space group: energy (kJ/mol) and forces (kJ/mol/nm)."""
    context, _ = openmm_context(charges, box, method, cutoff, tolerance, pme_parameters)
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True, groups={1})
    energy = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(
        openmm.unit.kilojoule_per_mole / openmm.unit.nanometer)
    return energy, np.asarray(forces)


def random_system(n, box, neutral, seed):
    """n random charges (e) and positions (nm) in and around the box."""
    rng = np.random.default_rng(seed)
    charges = 0.5 * rng.normal(size=n)
    if neutral:
        charges -= charges.mean()
    else:
        charges[0] += 1.5  # a net charge well away from zero
    # Some atoms outside the central cell: wrapping into the grid is part of what is tested.
    positions = rng.random((n, 3)) @ box + 0.5 * rng.normal(size=(n, 3))
    return charges, positions


def evaluate(cpu_term, positions, box):
    accumulator = np.zeros((len(positions), 3), dtype=np.int64)
    energy = cpu_term.compute(positions, box, accumulator)
    return energy, forces_from_fixed(accumulator), accumulator


@pytest.mark.parametrize("box", [CUBIC, np.diag([6.22] * 3), np.diag([2.1, 3.3, 4.7]),
                                 DODECAHEDRON, TRICLINIC], ids=["cubic3", "cubic6.22", "rect",
                                                                "dodecahedron", "triclinic"])
@pytest.mark.parametrize("cutoff, tolerance", [(0.9, 5e-4), (1.0, 1e-5), (0.8, 1e-3), (1.0, 0.05)])
def test_pme_parameters_match_openmm(box, cutoff, tolerance):
    """alpha and grid equal getPMEParametersInContext (no rounding to FFT sizes: Reference)."""
    charges = np.array([0.5, -0.5, 0.5, -0.5])
    context, force = openmm_context(charges, box, openmm.NonbondedForce.PME, cutoff, tolerance)
    ref_alpha, *ref_grid = force.getPMEParametersInContext(context)
    alpha, grid = ewald_parameters(make_term(charges, "PME", cutoff, tolerance), box)
    assert alpha == ref_alpha  # same float64 operations in the same order
    assert grid.dtype == np.int64
    assert list(grid) == list(ref_grid)


def test_explicit_pme_parameters_are_used():
    charges = np.array([0.5, -0.5])
    context, force = openmm_context(charges, CUBIC, openmm.NonbondedForce.PME,
                                    pme_parameters=(3.3, 20, 21, 23))
    ref_alpha, *ref_grid = force.getPMEParametersInContext(context)
    alpha, grid = ewald_parameters(make_term(charges, "PME", alpha=3.3, grid=(20, 21, 23)), CUBIC)
    assert (alpha, list(grid)) == (ref_alpha, ref_grid)


@pytest.mark.parametrize("box", [CUBIC, DODECAHEDRON, TRICLINIC],
                         ids=["cubic", "dodecahedron", "triclinic"])
@pytest.mark.parametrize("neutral", [True, False], ids=["neutral", "charged"])
def test_pme_matches_openmm_reference(box, neutral):
    """Reciprocal + self (+ background for a net charge) energy and forces vs OpenMM Reference.

    OpenMM puts the self energy and the neutralising-background energy in the reciprocal-space
    force group, as CpuPME returns them; the charged case fails by the background energy
    (-pi Q^2 / (2 V alpha^2) ONE_4PI_EPS0, ~10-200 kJ/mol here) if it is left out.
    """
    charges, positions = random_system(300, box, neutral, seed=7)
    term = CpuPME(make_term(charges, "PME"), len(charges), box)
    energy, forces, _ = evaluate(term, positions, box)
    ref_energy, ref_forces = openmm_reciprocal(charges, positions, box,
                                               openmm.NonbondedForce.PME)
    # Same algorithm, grid and float64 arithmetic as OpenMM's Reference PME; what differs is
    # rounding (FFT, B-spline polynomials, summation order) and the 2^-32 kJ/mol/nm force
    # quantum (measured: energy ~1e-13 relative, force metric median ~1e-12, 99th percentile
    # ~6e-11).  A float32 grid or FFT would miss these bounds by orders of magnitude.
    assert energy == pytest.approx(ref_energy, rel=1e-11)
    median, p99 = force_agreement(forces, ref_forces)
    assert median < 1e-10
    assert p99 < 1e-9


@pytest.mark.parametrize("box", [CUBIC, TRICLINIC], ids=["cubic", "triclinic"])
def test_pme_coarse_explicit_grid_matches_openmm_reference(box):
    """Explicit alpha and a coarse even grid: the Nyquist planes carry weight.

    OpenMM gives both k and -k on a Nyquist plane the wave number -n/2, so in a triclinic box its
    influence function is not even in k there; with OpenMM's automatic parameters those terms
    are ~exp(-200) and invisible, so this is what tests their treatment.
    """
    charges, positions = random_system(300, box, True, seed=9)
    params = (3.0, 12, 10, 14)
    term = CpuPME(make_term(charges, "PME", alpha=params[0], grid=params[1:]), len(charges), box)
    energy, forces, _ = evaluate(term, positions, box)
    ref_energy, ref_forces = openmm_reciprocal(charges, positions, box,
                                               openmm.NonbondedForce.PME, pme_parameters=params)
    assert energy == pytest.approx(ref_energy, rel=1e-11)
    median, p99 = force_agreement(forces, ref_forces)
    assert median < 1e-10
    assert p99 < 1e-9


def test_pme_box_change_recomputes_influence_function():
    """A term that has seen another box gives exactly what a fresh term gives for the new one."""
    charges, positions = random_system(200, TRICLINIC, True, seed=3)
    term = CpuPME(make_term(charges, "PME"), len(charges), TRICLINIC)
    evaluate(term, positions, TRICLINIC)
    scaled = TRICLINIC * 1.01
    energy, _, acc = evaluate(term, positions, scaled)
    fresh = CpuPME(make_term(charges, "PME"), len(charges), TRICLINIC)
    fresh_energy, _, fresh_acc = evaluate(fresh, positions, scaled)
    assert energy == fresh_energy
    assert np.array_equal(acc, fresh_acc)
    # ...and the new box really changes the result (the influence function depends on it).
    assert energy != evaluate(fresh, positions, TRICLINIC)[0]


def test_non_finite_positions_give_nan_and_no_forces():
    charges, positions = random_system(50, CUBIC, True, seed=1)
    positions[3, 1] = np.nan
    term = CpuPME(make_term(charges, "PME"), len(charges), CUBIC)
    energy, _, acc = evaluate(term, positions, CUBIC)
    assert np.isnan(energy)
    assert not acc.any()


@pytest.mark.parametrize("box", [CUBIC, RECTANGULAR], ids=["cubic", "rectangular"])
@pytest.mark.parametrize("neutral", [True, False], ids=["neutral", "charged"])
def test_ewald_matches_openmm_reference(box, neutral):
    """Plain Ewald: kmax, alpha, energy and forces as OpenMM's Reference Ewald sum."""
    charges, positions = random_system(60, box, neutral, seed=11)
    term = CpuEwald(make_term(charges, "Ewald"), len(charges), box)
    energy, forces, _ = evaluate(term, positions, box)
    ref_energy, ref_forces = openmm_reciprocal(charges, positions, box,
                                               openmm.NonbondedForce.Ewald)
    # The same k-vectors summed in float64: a different kmax would change the energy by far
    # more than 1e-12 relative (measured agreement ~1e-15).
    assert energy == pytest.approx(ref_energy, rel=1e-12)
    median, p99 = force_agreement(forces, ref_forces)
    assert median < 1e-9
    assert p99 < 1e-8


def test_ewald_ignores_explicit_parameters_like_openmm():
    """OpenMM's Ewald takes alpha and kmax from the tolerance even after setPMEParameters."""
    charges, positions = random_system(40, CUBIC, True, seed=2)
    explicit = make_term(charges, "Ewald", alpha=2.0, grid=(5, 5, 5))
    automatic_alpha, automatic_kmax = ewald_parameters(make_term(charges, "Ewald"), CUBIC)
    alpha, kmax = ewald_parameters(explicit, CUBIC)
    assert alpha == automatic_alpha and list(kmax) == list(automatic_kmax)
    assert alpha != 2.0 and all(k % 2 == 1 for k in kmax)  # OpenMM makes kmax odd
    energy, _, _ = evaluate(CpuEwald(explicit, len(charges), CUBIC), positions, CUBIC)
    ref_energy, _ = openmm_reciprocal(charges, positions, CUBIC, openmm.NonbondedForce.Ewald,
                                      pme_parameters=(2.0, 5, 5, 5))
    assert energy == pytest.approx(ref_energy, rel=1e-12)


_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_pme import TRICLINIC, CUBIC, make_term, random_system
    from bencao.backends.cpu.pme import CpuEwald, CpuPME
    charges, positions = random_system(3000, TRICLINIC, False, seed=5)
    pme = CpuPME(make_term(charges, "PME"), len(charges), TRICLINIC)
    pme_forces = np.zeros((len(charges), 3), dtype=np.int64)
    pme_energy = pme.compute(positions, TRICLINIC, pme_forces)
    charges, positions = random_system(100, CUBIC, True, seed=6)
    ewald = CpuEwald(make_term(charges, "Ewald"), len(charges), CUBIC)
    ewald_forces = np.zeros((len(charges), 3), dtype=np.int64)
    ewald_energy = ewald.compute(positions, CUBIC, ewald_forces)
    np.savez(sys.argv[1], pme_forces=pme_forces, pme_energy=pme_energy,
             ewald_forces=ewald_forces, ewald_energy=ewald_energy)
""")


def test_bit_identical_on_one_and_two_threads(tmp_path):
    """Same int64 forces and the same energy bits with NUMBA_NUM_THREADS=1, 2 and 3 (three
    spread slabs and an uneven split of the FFT lines, even on two cores)."""
    script = _CHILD.format(tests=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    results = []
    for threads in (1, 2, 3):
        out = tmp_path / f"threads{threads}.npz"
        env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
        subprocess.run([sys.executable, "-c", script, str(out)], env=env, check=True,
                       cwd=os.path.dirname(__file__))
        results.append(np.load(out))
    one = results[0]
    assert one["pme_forces"].any() and one["ewald_forces"].any()
    for other in results[1:]:
        for key in ("pme_forces", "ewald_forces"):
            assert np.array_equal(one[key], other[key])
        for key in ("pme_energy", "ewald_energy"):
            assert one[key].tobytes() == other[key].tobytes()


# --- Kernels of the CPU PME: FFT, slab-order spread, awkward grids -----------------------------


@pytest.mark.parametrize("n", [5, 6, 7, 8, 12, 15, 16, 28, 32, 45, 56, 60, 64, 96, 11, 13, 26,
                               53, 98])
@pytest.mark.parametrize("sigma", [-1.0, 1.0], ids=["forward", "inverse"])
def test_vector_fft_matches_numpy(n, sigma):
    """Every radix pass (8, 4, 2, 3, 5, 7 written out; 11, 13, 53 generic) against numpy's FFT,
    on 8 lanes at once with a strided source and a separate destination."""
    from bencao.backends.cpu.fft import LANES
    from bencao.backends.cpu.fft import fft_line as _fft_line
    from bencao.backends.cpu.fft import fft_plan as _fft_plan
    from bencao.backends.cpu.fft import fft_work_size as _fft_work_size

    rng = np.random.default_rng(n)
    data = rng.normal(size=(n, LANES)) + 1j * rng.normal(size=(n, LANES))
    stride = 3 * LANES  # element e at e * stride: lines interleaved with other data
    src = rng.normal(size=n * stride + 2 * LANES)
    src[:n * stride].reshape(n, 3, LANES)[:, 0] = data.real
    src[:n * stride].reshape(n, 3, LANES)[:, 2] = data.imag
    dst = np.zeros(2 * n * LANES)
    plan, tables = _fft_plan(n)
    work = np.zeros(_fft_work_size(n))
    # The kernels take addresses (the arrays stay alive in this frame).
    _fft_line(src.ctypes.data, 0, 2 * LANES, stride, dst.ctypes.data, 0, n * LANES, LANES,
              plan.ctypes.data, tables.ctypes.data, sigma, work.ctypes.data, 0)
    result = dst[:n * LANES].reshape(n, LANES) + 1j * dst[n * LANES:].reshape(n, LANES)
    expected = np.fft.fft(data, axis=0) if sigma < 0 else np.fft.ifft(data, axis=0) * n
    assert np.abs(result - expected).max() < 1e-14 * n * np.abs(expected).max()


def test_spread_is_independent_of_the_slab_count():
    """The grid is bit-identical for any slab count (the canonical order of _spread), which is
    what makes PME bit-identical on any number of threads."""
    from bencao.backends.cpu import pme_spread as kernels

    charges, positions = random_system(2000, TRICLINIC, False, seed=4)
    term = CpuPME(make_term(charges, "PME", alpha=3.0, grid=(12, 10, 14)), len(charges),
                  TRICLINIC)
    evaluate(term, positions, TRICLINIC)  # fills the sorted per-atom arrays
    nx, ny, nz = (int(g) for g in term.grid)
    grids = []
    for slabs in (2, 3, 5, 8):
        grid = np.full_like(term._grid, np.nan)
        kernels._spread(term._s_charges, term._s_index, term._s_offset, term._starts,
                        term._coefficients, term.grid, term._plane_stride, slabs, grid)
        planes = grid.reshape(nx, term._plane_stride)[:, :ny * (nz + kernels.LANES)]
        grids.append(planes.reshape(nx, ny, -1)[:, :, :nz].copy())
    assert np.isfinite(grids[0]).all() and grids[0].any()
    for grid in grids[1:]:
        assert np.array_equal(grid, grids[0])
    # The grid carries the total charge (B-spline weights sum to 1), up to rounding.
    assert grids[0].sum() == pytest.approx(charges.sum(), abs=1e-11)


@pytest.mark.parametrize("params", [(3.0, 11, 9, 7), (2.6, 10, 11, 7), (3.2, 13, 16, 23)],
                         ids=["odd-odd-odd", "odd-block-count", "prime"])
def test_pme_odd_and_prime_grids_match_openmm_reference(params):
    """Grids with odd sizes, an odd number of 8-lane blocks per row (paired with itself in the
    real-to-complex transform), sizes that are not multiples of 8, and the generic prime pass
    (13, 23)."""
    charges, positions = random_system(300, TRICLINIC, False, seed=12)
    term = CpuPME(make_term(charges, "PME", alpha=params[0], grid=params[1:]), len(charges),
                  TRICLINIC)
    energy, forces, _ = evaluate(term, positions, TRICLINIC)
    ref_energy, ref_forces = openmm_reciprocal(charges, positions, TRICLINIC,
                                               openmm.NonbondedForce.PME, pme_parameters=params)
    assert energy == pytest.approx(ref_energy, rel=1e-11)
    median, p99 = force_agreement(forces, ref_forces)
    assert median < 1e-10
    assert p99 < 1e-9


def test_pme_repeated_calls_are_bit_identical():
    """Work arrays are reused between calls: nothing from one call may leak into the next."""
    charges, positions = random_system(500, DODECAHEDRON, True, seed=8)
    term = CpuPME(make_term(charges, "PME"), len(charges), DODECAHEDRON)
    energy, _, acc = evaluate(term, positions, DODECAHEDRON)
    evaluate(term, positions + 0.37, DODECAHEDRON)
    again, _, acc_again = evaluate(term, positions, DODECAHEDRON)
    assert energy.hex() == again.hex()
    assert np.array_equal(acc, acc_again)



@pytest.mark.parametrize("grid", [(12, 10, 14), (11, 9, 29)], ids=["nz14", "nz29"])
def test_inverse_fft_does_not_depend_on_what_the_work_buffers_held(grid):
    """Each thread reuses one work buffer for every plane it transforms, so on another number
    of threads a buffer holds other leftovers; the grid must not depend on them (nz not a
    multiple of 8 leaves padding lanes in the last 8-lane block of each row)."""
    from bencao.backends.cpu import pme_transform as kernels

    charges, positions = random_system(400, TRICLINIC, True, seed=21)
    term = CpuPME(make_term(charges, "PME", alpha=3.0, grid=grid), len(charges), TRICLINIC)
    evaluate(term, positions, TRICLINIC)  # leaves the convolved spectrum in term._spectrum
    (_, _), (plan_y, tw_y), (plan_z, tw_z) = term._plans
    grids = []
    for fill in (0.0, 1e6):
        buffers = np.full_like(term._buffers, fill)
        grid_out = np.zeros_like(term._grid)
        kernels._fft_planes_inverse(term._spectrum, term.grid, term._plane_stride, grid_out,
                                    plan_y, tw_y, plan_z, tw_z, buffers)
        grids.append(grid_out)
    assert grids[0].any()
    assert np.array_equal(grids[0], grids[1])
