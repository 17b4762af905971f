"""Local energy minimization with L-BFGS, honouring distance constraints as OpenMM does.

L-BFGS knows nothing of constraints, so (like OpenMM's ``LocalEnergyMinimizer``) each constraint
is replaced by a harmonic restraint ``k/2 (r - r0)^2`` and the sum of potential and restraint
energy is minimized.  While the largest relative constraint error is above the working tolerance
the restraints are stiffened tenfold and minimization continues; at the end the constraint solver
puts the structure exactly on the constraints and the energy is reported there.

The stopping rule is OpenMM 8's: the root-mean-square over particles of the magnitude of the
force on each (``|g| <= tolerance sqrt(N)`` in OpenMM's code; its documentation says "of all force
components", which would be sqrt(3) looser) must be below ``tolerance``.  SciPy's own stopping
tests are switched off; the rule is checked after every L-BFGS iteration.

Where this differs from OpenMM, on purpose:

* the mean is over the particles that move (OpenMM counts massless ones as zeros);
* ``max_iterations`` bounds the iterations of all restraint strengths together (OpenMM: of each);
* when far off the constraints after a round, the current positions are put back on them rather
  than thrown away for the initial ones;
* L-BFGS's first trial step is ``FIRST_STEP`` (0.1 nm) long rather than 1 nm;
* the reported force is the part of the force the constraints do not hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.sparse
import scipy.sparse.linalg

from bencao.errors import BlowUpError

#: Constraint errors are driven below max(this, solver tolerance) by the restraints; the solver's
#: final projection does the rest (OpenMM's choice: tighter restraints make L-BFGS crawl).
MIN_WORKING_TOLERANCE = 1e-4
#: Restraint stiffness is this divided by the working tolerance, kJ/mol/nm^2 (OpenMM's start).
RESTRAINT_SCALE = 100.0
#: Energy added, kJ/mol, to a line-search trial that blew up: a wall the line search backs off from.
BLOWUP_WALL = 1.0e10
#: Length of the first trial step of each L-BFGS run, nm (norm over all free coordinates).
FIRST_STEP = 0.1
#: Fresh L-BFGS starts allowed per restraint strength after SciPy gives up (a failed line search
#: usually means a stale Hessian estimate; restarting clears it).
MAX_RESTARTS = 5
#: Restraint strengths tried at most (10^12 times the first: far beyond any useful stiffness).
MAX_ROUNDS = 12


@dataclass
class MinimizationResult:
    """Outcome of :func:`minimize_energy`.

    Attributes
    ----------
    positions : (N, 3) float64 array
        Minimized positions, nm, constraints applied.  Rows of massless particles are those given.
    energy : float
        Potential energy at ``positions``, kJ/mol.
    rms_force : float
        Root-mean-square over free particles of the magnitude of the force on each, kJ/mol/nm;
        with constraints, the force minus its component along the constraints (what a
        constrained minimum makes zero).
    max_force : float
        Largest such per-particle force magnitude, kJ/mol/nm.
    iterations : int
        L-BFGS iterations done, summed over all restraint strengths.
    converged : bool
        Whether ``rms_force`` at the returned positions is below the tolerance.
    constraint_error : float
        Largest relative constraint error ``|r - r0| / r0`` at ``positions`` (0 without
        constraints).
    """

    positions: np.ndarray
    energy: float
    rms_force: float
    max_force: float
    iterations: int
    converged: bool
    constraint_error: float


class _Converged(Exception):
    """Raised from the L-BFGS callback when the force criterion is met."""


def _evaluate(compute, positions):
    """``compute(positions)`` as (energy kJ/mol, forces (N, 3) kJ/mol/nm); accepts Evaluations."""
    result = compute(positions)
    if hasattr(result, "energy"):
        return float(result.energy), np.asarray(result.forces, dtype=np.float64)
    energy, forces = result
    return float(energy), np.asarray(forces, dtype=np.float64)


def _constraint_table(constraints):
    """The solver's (C, 2) particle pairs and (C,) lengths (nm)."""
    return np.asarray(constraints.constraint_atoms), np.asarray(constraints.constraint_lengths)


def _project(constraints, positions):
    """``positions`` moved onto the constraints along their own bond vectors (a new array)."""
    projected = np.ascontiguousarray(positions, dtype=np.float64).copy()
    constraints.apply_positions(positions, projected)
    return projected


def _rms(forces) -> float:
    """Root-mean-square of per-particle force magnitudes, kJ/mol/nm; forces is (n, 3)."""
    return float(np.sqrt(np.sum(forces * forces) / max(len(forces), 1)))


class _Restraints:
    """Harmonic restraints ``k/2 (r - r0)^2`` standing in for constraints during L-BFGS."""

    def __init__(self, atoms, lengths, n_particles):
        self.i = np.asarray(atoms, dtype=np.int64)[:, 0]
        self.j = np.asarray(atoms, dtype=np.int64)[:, 1]
        self.r0 = np.asarray(lengths, dtype=np.float64)
        self.n_particles = n_particles
        self.k = 0.0

    def _bonds(self, positions):
        delta = positions[self.j] - positions[self.i]
        r = np.sqrt(np.einsum("ij,ij->i", delta, delta))
        return delta / r[:, None], r

    def energy_gradient(self, positions):
        """Restraint energy (kJ/mol) and its gradient ((N, 3), kJ/mol/nm)."""
        unit, r = self._bonds(positions)
        stretch = r - self.r0
        pull = (self.k * stretch)[:, None] * unit
        gradient = np.zeros((self.n_particles, 3))
        for axis in range(3):
            gradient[:, axis] += np.bincount(self.j, pull[:, axis], self.n_particles)
            gradient[:, axis] -= np.bincount(self.i, pull[:, axis], self.n_particles)
        return 0.5 * self.k * float(stretch @ stretch), gradient

    def tangent(self, positions, forces):
        """``forces`` minus its least-squares component along the constraint directions.

        At a constrained minimum the force is a combination of the constraint directions
        (J^T lambda), so what remains is the force the constraints cannot hold: it vanishes there.
        """
        if len(self.r0) == 0:
            return forces
        unit, _ = self._bonds(positions)
        n = len(self.r0)
        rows = np.repeat(np.arange(n), 6)
        cols = np.concatenate([3 * self.i[:, None] + np.arange(3), 3 * self.j[:, None] + np.arange(3)], axis=1)
        values = np.concatenate([-unit, unit], axis=1)
        jacobian = scipy.sparse.csr_matrix(
            (values.ravel(), (rows, cols.ravel())), shape=(n, 3 * self.n_particles)
        )
        flat = forces.ravel()
        # J J^T has 2 on its diagonal; the tiny ridge keeps redundant constraint sets solvable
        normal = jacobian @ jacobian.T + 1e-12 * scipy.sparse.identity(n)
        multipliers = scipy.sparse.linalg.spsolve(normal.tocsc(), jacobian @ flat)
        return (flat - jacobian.T @ np.atleast_1d(multipliers)).reshape(-1, 3)


class _Objective:
    """Energy plus restraint energy of the free coordinates, for SciPy (value and gradient)."""

    def __init__(self, compute, template, free, restraints):
        self.compute = compute
        self.template = template
        self.free = free
        self.restraints = restraints
        self.x = None  # last finite evaluation: coordinates, value, gradient
        self.value = None
        self.gradient = None

    def positions(self, x):
        positions = self.template.copy()
        positions[self.free] = x.reshape(-1, 3)
        return positions

    def __call__(self, x):
        positions = self.positions(x)
        try:
            energy, forces = _evaluate(self.compute, positions)
        except FloatingPointError:  # the backend's BlowUpError: the trial step hit a clash
            energy, forces = np.inf, None
        if not np.isfinite(energy) or not np.all(np.isfinite(forces[self.free])):
            # A line-search trial landed in a clash.  A high wall with the last sound gradient
            # makes the line search shorten the step instead of ending the minimization.
            return self.value + BLOWUP_WALL, self.gradient.copy()
        gradient = -forces
        if self.restraints is not None:
            extra, extra_gradient = self.restraints.energy_gradient(positions)
            energy += extra
            gradient += extra_gradient
        self.x, self.value = x.copy(), energy
        self.gradient = gradient[self.free].ravel()
        return energy, self.gradient.copy()

    def rms(self, x) -> float:
        """RMS objective gradient (per-particle magnitude) at x, kJ/mol/nm."""
        if self.x is None or not np.array_equal(self.x, x):
            self(x)
        return _rms(self.gradient.reshape(-1, 3))


def _lbfgs(objective, x, tolerance, budget):
    """Run L-BFGS from x until the RMS force is below tolerance, SciPy stops, or ``budget``
    iterations (None: no limit) are spent.  Returns (x, iterations, converged)."""
    iterations = 0
    reached = None

    # L-BFGS works in coordinates of FIRST_STEP nm.  It is invariant to that scale except for
    # its first trial step, a unit step down the gradient: 1 nm would throw the two atoms of a
    # clash 0.7 nm into their neighbours.
    def scaled(y):
        value, gradient = objective(y * FIRST_STEP)
        return value, gradient * FIRST_STEP

    def callback(yk):
        nonlocal iterations, reached
        iterations += 1
        xk = np.asarray(yk) * FIRST_STEP
        if objective.rms(xk) < tolerance:
            reached = xk
            raise _Converged

    if objective.rms(x) < tolerance:
        return x, 0, True
    maxiter = budget if budget is not None else np.iinfo(np.int32).max
    try:
        result = scipy.optimize.minimize(
            scaled, x / FIRST_STEP, jac=True, method="L-BFGS-B", callback=callback,
            # ftol = gtol = 0: SciPy's own convergence tests are replaced by the RMS rule
            options={"maxiter": maxiter, "maxfun": np.iinfo(np.int32).max, "ftol": 0.0, "gtol": 0.0},
        )
    except _Converged:
        return reached, iterations, True
    # SciPy stopped by itself (budget spent, or a line search that found no lower energy);
    # its x is the last accepted iterate
    return np.asarray(result.x) * FIRST_STEP, iterations, False


def minimize_energy(compute, positions, masses, constraints=None, tolerance=10.0, max_iterations=0):
    """L-BFGS energy minimization honouring constraints (as OpenMM's LocalEnergyMinimizer).

    Parameters
    ----------
    compute : callable
        ``compute(positions)`` for (N, 3) positions in nm returns ``(energy, forces)``: energy
        in kJ/mol and (N, 3) forces in kJ/mol/nm (an object with ``.energy`` and ``.forces``,
        such as a backend's Evaluation, is accepted too).  Rows of massless particles are
        ignored: their forces must already be moved onto the particles that carry them.
    positions : (N, 3) array_like
        Starting positions, nm (not modified).
    masses : (N,) array_like
        Particle masses, amu.  Particles with mass 0 (virtual sites, fixed atoms) are not
        degrees of freedom and keep their given rows.
    constraints : CpuConstraints or None
        Constraint solver for the system's constraints (its ``tolerance`` is relative); None for
        an unconstrained system.
    tolerance : float
        Stop when the root-mean-square over free particles of the per-particle force magnitude
        falls below this, kJ/mol/nm (OpenMM 8's rule; with constraints, of the force tangent to
        them).
    max_iterations : int
        Largest number of L-BFGS iterations in total; 0 means until converged.

    Returns
    -------
    MinimizationResult

    Raises
    ------
    BlowUpError
        If the energy or forces at the start are not finite (overlapping atoms); the backend's
        own BlowUpError, which names the atoms, passes through.
    ValueError
        If the shapes of positions and masses disagree or the tolerance is not positive.
    """
    start = np.array(positions, dtype=np.float64)
    masses = np.asarray(masses, dtype=np.float64)
    if start.ndim != 2 or start.shape[1] != 3 or masses.shape != (len(start),):
        raise ValueError(f"positions {start.shape} (nm) and masses {masses.shape} must be (N, 3) and (N,)")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be a positive force in kJ/mol/nm, got {tolerance!r}")
    if max_iterations < 0:
        raise ValueError(f"max_iterations must be >= 0 (0: no limit), got {max_iterations!r}")
    free = masses > 0
    budget = int(max_iterations) if max_iterations else None

    restraints = None
    working_tolerance = 0.0
    pairs, lengths = _constraint_table(constraints) if constraints is not None else ((), ())
    if len(lengths):
        # Start on the constraints, as OpenMM does, so restraint energy begins near zero
        start = _project(constraints, start)
        restraints = _Restraints(pairs, lengths, len(start))
        working_tolerance = max(MIN_WORKING_TOLERANCE, float(constraints.tolerance))
        restraints.k = RESTRAINT_SCALE / working_tolerance

    energy, forces = _evaluate(compute, start)
    if not np.isfinite(energy) or not np.all(np.isfinite(forces[free])):
        raise BlowUpError(
            f"the starting structure has a non-finite energy ({energy}) or forces: atoms overlap "
            "or positions are corrupt, so there is nothing to minimize from"
        )

    objective = _Objective(compute, start, free, restraints)
    x = start[free].ravel()
    iterations = 0
    previous_errors = [np.inf, np.inf]
    for _ in range(MAX_ROUNDS):
        for _ in range(MAX_RESTARTS + 1):
            remaining = None if budget is None else budget - iterations
            x, done, converged = _lbfgs(objective, x, tolerance, remaining)
            iterations += done
            if converged or done == 0 or (budget is not None and iterations >= budget):
                break
        if restraints is None or (budget is not None and iterations >= budget):
            break
        error = constraints.max_relative_error(objective.positions(x))
        # OpenMM's schedule: stop once within the working tolerance, or when stiffening has
        # stopped helping; otherwise stiffen tenfold, from the start if far off the constraints
        if error <= working_tolerance or error >= previous_errors[0]:
            break
        previous_errors = [previous_errors[1], error]
        restraints.k *= 10.0
        objective.x = None  # the cached gradient belongs to the old stiffness
        if error > 100.0 * working_tolerance:
            # Far off the constraints.  OpenMM restarts from the initial positions here; putting
            # the current ones back on the constraints keeps the progress made (3x fewer
            # iterations on a water box) and is as valid a start, since the solver is exact.
            x = _project(constraints, objective.positions(x))[free].ravel()

    final = objective.positions(x)
    constraint_error = 0.0
    if restraints is not None:
        final = _project(constraints, final)
        constraint_error = float(constraints.max_relative_error(final))
    energy, forces = _evaluate(compute, final)
    if restraints is not None:
        forces = np.where(free[:, None], forces, 0.0)
        forces = restraints.tangent(final, forces)
    magnitudes = np.linalg.norm(forces[free], axis=1)
    rms_force = _rms(forces[free])
    return MinimizationResult(
        positions=final,
        energy=energy,
        rms_force=rms_force,
        max_force=float(magnitudes.max(initial=0.0)),
        iterations=iterations,
        converged=bool(rms_force < tolerance),
        constraint_error=constraint_error,
    )
