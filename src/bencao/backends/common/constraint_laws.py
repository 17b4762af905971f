"""The laws of one water and one constraint cluster, written once for every backend.

SETTLE solves one rigid three-site water analytically (Miyamoto & Kollman, J. Comput. Chem. 13,
952 (1992)), positions and velocities; SHAKE (positions) and RATTLE (velocities) sweep one
cluster's constraints Gauss-Seidel until each is within the tolerance.  Each function works on
one item in place and in a fixed order, so a backend runs them one per thread (Numba ``prange``
on the CPU, one CUDA thread per item on the GPU, where the same source is compiled with
``device_version``) and the results do not depend on the scheduling.

Both solvers move particles along the constraint vectors of the *reference* positions (the
constrained positions before the unconstrained update), weighted by inverse mass, so constraint
forces are internal (total momentum is unchanged) and particles of mass 0 never move.
"""

from __future__ import annotations

import math

from numba import njit

from bencao.backends.common.vector3 import cross, dot, normalized, scale, sub

# RATTLE's stopping rule needs a time to turn the tolerance into a rate: a constraint is satisfied
# when its length changes by at most `tolerance` of itself per VELOCITY_TIME_SCALE (ps), i.e.
# |(v_i - v_j) . (r_i - r_j)| / d0^2 <= tolerance / VELOCITY_TIME_SCALE.  With 1 ps the residual
# stretch over a 2-4 fs step is ~1/300 of the position tolerance, so velocity constraints never
# undo what SHAKE achieved, and the residual relative speed (<= tolerance * d0 / 1 ps, e.g.
# 1e-6 nm/ps) is negligible next to thermal speeds (~1 nm/ps).
VELOCITY_TIME_SCALE = 1.0

# A SHAKE step divides by r_ref . r; when that falls below this fraction of d0^2 the bond has
# turned by ~90 degrees in one step and the iteration cannot recover.
_MIN_PROJECTION = 1.0e-6


# --------------------------------------------------------------------------------------------
# SETTLE
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def _row(array, i):
    return array[i, 0], array[i, 1], array[i, 2]


# A failed water's result is discarded, but its arithmetic still runs (the law has no early
# exit, so that it also compiles for 8 waters at once): square roots of what must be positive
# and a divisor that must not be zero are kept in range, so that plain Python (the CUDA
# simulator) raises nothing.  For a water that has a solution they change no bit.
_FLOOR = 1.0e-300


@njit(cache=True)
def _tilted(p, cos_theta, sin_theta, com, ex, ey, ez):
    """A point of the tilted triangle turned by theta about Z, relative to the new O."""
    u = p[0] * cos_theta - p[1] * sin_theta
    v = p[0] * sin_theta + p[1] * cos_theta
    return (com[0] + (u * ex[0] + v * ey[0] + p[2] * ez[0]),
            com[1] + (u * ex[1] + v * ey[1] + p[2] * ez[1]),
            com[2] + (u * ex[2] + v * ey[2] + p[2] * ez[2]))


@njit(cache=True)
def settle_solution(b0, c0, b1, c1, m_o, m_h, ra, rb, rc):
    """SETTLE of one water: ``(ok, O, H1, H2)``, the new positions relative to the new O (nm);
    ``ok`` is false where no solution exists.

    ``b0``, ``c0``: reference H1 - O and H2 - O; ``b1``, ``c1``: the same after the
    unconstrained update (3-tuples, nm); O and H masses (amu) and the shape (ra, rb, rc, nm) of
    :func:`settle_one`.  Written with operators alone and no branch on values, so that it
    compiles for float64 scalars and, unchanged, for 8 waters at once
    (:mod:`bencao.backends.cpu.lanes8`).

    The water is described in a frame centred on the new centre of mass: Z is normal to the
    reference plane (constraint forces lie in that plane, so every z coordinate is kept) and X is
    chosen so that the new O lies in the YZ plane.  The canonical triangle -- O at (0, ra),
    H at (-+rc, -rb) -- is tilted by phi about X and psi about Y to match the three z coordinates,
    then turned by theta about Z so that the in-plane displacements exert no torque about the
    reference positions, which is what makes them combinations of the reference bond vectors.
    Vectors are taken relative to O first, so that they are small and exact to rounding.
    """
    f_h = m_h / (m_o + 2.0 * m_h)  # centre of mass relative to O = f_h (r_H1 + r_H2)
    # Reference geometry about its centre of mass, and the frame's Z axis
    ez, norm_z = normalized(cross(b0, c0))
    com0 = scale((b0[0] + c0[0], b0[1] + c0[1], b0[2] + c0[2]), f_h)
    a0 = scale(com0, -1.0)
    b0 = sub(b0, com0)
    c0 = sub(c0, com0)
    # New geometry about its centre of mass (which constraint forces do not move)
    com1 = scale((b1[0] + c1[0], b1[1] + c1[1], b1[2] + c1[2]), f_h)
    a1 = scale(com1, -1.0)
    b1 = sub(b1, com1)
    c1 = sub(c1, com1)
    ex, norm_x = normalized(cross(a1, ez))
    # not a collinear reference, nor a new O on the normal through the centre of mass
    ok = (norm_z > 0.0) & (norm_x > 0.0)
    ey = cross(ez, ex)

    sin_phi = dot(a1, ez) / ra
    ok = ok & (abs(sin_phi) < 1.0)
    cos_phi = math.sqrt(max(1.0 - sin_phi * sin_phi, 0.0))
    sin_psi = (dot(b1, ez) - dot(c1, ez)) / (2.0 * rc * max(cos_phi, _FLOOR))
    ok = ok & (abs(sin_psi) < 1.0)
    cos_psi = math.sqrt(max(1.0 - sin_psi * sin_psi, 0.0))
    # Tilted canonical triangle: in-plane (x, y) and normal (z) coordinates of O, H1, H2
    # (ra * 0.0: a zero of ra's type, so that the three points have one type)
    tilted = (
        (ra * 0.0, ra * cos_phi, ra * sin_phi),
        (-rc * cos_psi, -rb * cos_phi - rc * sin_psi * sin_phi,
         -rb * sin_phi + rc * sin_psi * cos_phi),
        (rc * cos_psi, -rb * cos_phi + rc * sin_psi * sin_phi,
         -rb * sin_phi - rc * sin_psi * cos_phi),
    )

    # No torque about Z: alpha sin(theta) + beta cos(theta) = gamma, with sums over the atoms of
    # m * (reference x, y) combined with the tilted and with the new in-plane coordinates.
    alpha = beta = gamma = m_o * 0.0
    for r0, p, r1, m in ((a0, tilted[0], a1, m_o), (b0, tilted[1], b1, m_h),
                         (c0, tilted[2], c1, m_h)):
        x0 = dot(r0, ex)
        y0 = dot(r0, ey)
        alpha += m * (x0 * p[0] + y0 * p[1])
        beta += m * (x0 * p[1] - y0 * p[0])
        gamma += m * (x0 * dot(r1, ey) - y0 * dot(r1, ex))
    r2 = alpha * alpha + beta * beta
    discriminant = r2 - gamma * gamma
    ok = ok & (discriminant >= 0.0)
    # The root nearest theta = 0 (the smallest rotation, the one SHAKE converges to)
    sin_theta = (alpha * gamma - beta * math.sqrt(max(discriminant, 0.0))) / r2
    cos_theta = math.sqrt(max(1.0 - sin_theta * sin_theta, 0.0))
    return (ok, _tilted(tilted[0], cos_theta, sin_theta, com1, ex, ey, ez),
            _tilted(tilted[1], cos_theta, sin_theta, com1, ex, ey, ez),
            _tilted(tilted[2], cos_theta, sin_theta, com1, ex, ey, ez))


@njit(cache=True)
def settle_one(reference, positions, o, h1, h2, m_o, m_h, ra, rb, rc):
    """SETTLE one water in place (:func:`settle_solution`); False (positions untouched) if no
    solution exists.

    ``reference``, ``positions``: (N, 3) arrays, nm; ``o``, ``h1``, ``h2``: the water's atoms;
    ``m_o``, ``m_h``: O and H masses, amu; ``ra``, ``rb``, ``rc``: distances from the centre of
    mass to O and to the H-H midpoint along the bisector, and half the H-H distance, nm.
    """
    origin = _row(positions, o)
    ok, new_o, new_h1, new_h2 = settle_solution(
        sub(_row(reference, h1), _row(reference, o)), sub(_row(reference, h2),
                                                            _row(reference, o)),
        sub(_row(positions, h1), origin), sub(_row(positions, h2), origin), m_o, m_h, ra, rb,
        rc)
    if ok:
        for atom, p in ((o, new_o), (h1, new_h1), (h2, new_h2)):
            for k in range(3):
                positions[atom, k] = origin[k] + p[k]
    return ok


@njit(cache=True)
def settle_velocity_impulses(d1, d2, d3, u1, u2, u3, w_o, w_h):
    """The impulses (amu nm/ps) along e1 = O->H1, e2 = O->H2, e3 = H1->H2 that remove every
    closing speed of one water, and those unit vectors: ``(e1, e2, e3, l1, l2, l3)``.

    ``d1``, ``d2``, ``d3``: the bond vectors H1 - O, H2 - O, H2 - H1 (nm); ``u1``, ``u2``,
    ``u3``: the same differences of velocities (nm/ps); ``w_o``, ``w_h``: O and H inverse masses
    (1/amu).  Operators alone, as :func:`settle_solution`, so it compiles for 8 waters too.

    With impulses lambda_k along the e_k, the closing speeds after the kick are u + M lambda
    with the symmetric 3x3 matrix M below; setting them to zero is a linear system, solved by
    Cramer's rule.  The result is the mass-weighted projection onto the constraint surface, so
    the kinetic energy can only go down.
    """
    e1 = normalized(d1)[0]
    e2 = normalized(d2)[0]
    e3 = normalized(d3)[0]
    # d(closing speed p) / d(impulse q); see _kick for the sign of an impulse
    m11 = -(w_o + w_h)
    m22 = -(w_o + w_h)
    m33 = -2.0 * w_h
    m12 = -w_o * dot(e1, e2)
    m13 = w_h * dot(e1, e3)
    m23 = -w_h * dot(e2, e3)
    # minus the closing speeds (v_j - v_i) . e, nm/ps
    r1 = -dot(u1, e1)
    r2 = -dot(u2, e2)
    r3 = -dot(u3, e3)
    # Cramer's rule: lambda = adj(M) r / det(M), with k1j the first row of the adjugate
    k11 = m22 * m33 - m23 * m23
    k12 = m13 * m23 - m12 * m33
    k13 = m12 * m23 - m13 * m22
    det = m11 * k11 + m12 * k12 + m13 * k13
    l1 = (k11 * r1 + k12 * r2 + k13 * r3) / det
    l2 = (k12 * r1 + (m11 * m33 - m13 * m13) * r2 + (m12 * m13 - m11 * m23) * r3) / det
    l3 = (k13 * r1 + (m12 * m13 - m11 * m23) * r2 + (m11 * m22 - m12 * m12) * r3) / det
    return e1, e2, e3, l1, l2, l3


@njit(cache=True)
def _kick(velocities, i, j, e, impulse, w_i, w_j):
    """Equal and opposite impulses along e (amu nm/ps): i gains +impulse, j gains -impulse."""
    for k in range(3):
        velocities[i, k] += impulse * w_i * e[k]
        velocities[j, k] -= impulse * w_j * e[k]


@njit(cache=True)
def settle_velocities_one(positions, velocities, o, h1, h2, w_o, w_h):
    """Remove the velocity along the three bonds of one water, exactly (SETTLE's velocity part,
    :func:`settle_velocity_impulses`); w_o and w_h are the O and H inverse masses, 1/amu."""
    e1, e2, e3, l1, l2, l3 = settle_velocity_impulses(
        sub(_row(positions, h1), _row(positions, o)), sub(_row(positions, h2),
                                                            _row(positions, o)),
        sub(_row(positions, h2), _row(positions, h1)),
        sub(_row(velocities, h1), _row(velocities, o)), sub(_row(velocities, h2),
                                                              _row(velocities, o)),
        sub(_row(velocities, h2), _row(velocities, h1)), w_o, w_h)
    _kick(velocities, o, h1, e1, l1, w_o, w_h)
    _kick(velocities, o, h2, e2, l2, w_o, w_h)
    _kick(velocities, h1, h2, e3, l3, w_h, w_h)


# --------------------------------------------------------------------------------------------
# SHAKE / RATTLE
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def shake_cluster(reference, positions, pairs, lengths, inverse_masses, members, tolerance,
                   max_iterations):
    """Gauss-Seidel SHAKE of one cluster in place; returns -1, or the worst constraint if it failed.

    Parameters
    ----------
    reference, positions : (N, 3) float64 arrays
        Reference and updated positions, nm; positions is overwritten.
    pairs : (C, 2) int64 array
        Constrained particle pairs.
    lengths : (C,) float64 array
        Constraint lengths, nm.
    inverse_masses : (N,) float64 array
        1 / mass, 1/amu (0 for massless particles).
    members : (K,) int64 array
        The cluster's constraints, swept in this order.
    tolerance : float
        Relative length tolerance.
    max_iterations : int
        Sweeps before giving up.
    """
    for _ in range(max_iterations):
        converged = True
        for m in members:
            i = pairs[m, 0]
            j = pairs[m, 1]
            rx = positions[i, 0] - positions[j, 0]
            ry = positions[i, 1] - positions[j, 1]
            rz = positions[i, 2] - positions[j, 2]
            r2 = rx * rx + ry * ry + rz * rz
            d0 = lengths[m]
            if abs(math.sqrt(r2) - d0) <= tolerance * d0:
                continue
            converged = False
            sx = reference[i, 0] - reference[j, 0]
            sy = reference[i, 1] - reference[j, 1]
            sz = reference[i, 2] - reference[j, 2]
            projection = sx * rx + sy * ry + sz * rz
            if not projection > _MIN_PROJECTION * d0 * d0:
                return m
            w_i = inverse_masses[i]
            w_j = inverse_masses[j]
            # Linearised |r + g (w_i + w_j) s|^2 = d0^2
            g = (d0 * d0 - r2) / (2.0 * projection * (w_i + w_j))
            positions[i, 0] += g * w_i * sx
            positions[i, 1] += g * w_i * sy
            positions[i, 2] += g * w_i * sz
            positions[j, 0] -= g * w_j * sx
            positions[j, 1] -= g * w_j * sy
            positions[j, 2] -= g * w_j * sz
        if converged:
            return -1
    worst = members[0]
    worst_error = -1.0
    for m in members:
        error = abs(distance(positions, pairs[m, 0], pairs[m, 1]) - lengths[m]) / lengths[m]
        if not error <= worst_error:  # NaN counts as worst
            worst = m
            worst_error = error
    return worst


@njit(cache=True)
def rattle_cluster(positions, velocities, pairs, lengths, inverse_masses, members, tolerance,
                    max_iterations):
    """Gauss-Seidel RATTLE of one cluster in place; returns -1, or the worst constraint if it
    failed.  Arguments as :func:`shake_cluster`, with velocities (nm/ps) updated at the
    constrained ``positions``."""
    for _ in range(max_iterations):
        converged = True
        for m in members:
            i = pairs[m, 0]
            j = pairs[m, 1]
            rx = positions[i, 0] - positions[j, 0]
            ry = positions[i, 1] - positions[j, 1]
            rz = positions[i, 2] - positions[j, 2]
            rate = (rx * (velocities[i, 0] - velocities[j, 0])
                    + ry * (velocities[i, 1] - velocities[j, 1])
                    + rz * (velocities[i, 2] - velocities[j, 2]))
            d0 = lengths[m]
            if abs(rate) <= tolerance * d0 * d0 / VELOCITY_TIME_SCALE:
                continue
            converged = False
            w_i = inverse_masses[i]
            w_j = inverse_masses[j]
            # Exact for this constraint alone: (v_rel - k (w_i + w_j) r) . r = 0
            k = rate / ((rx * rx + ry * ry + rz * rz) * (w_i + w_j))
            velocities[i, 0] -= k * w_i * rx
            velocities[i, 1] -= k * w_i * ry
            velocities[i, 2] -= k * w_i * rz
            velocities[j, 0] += k * w_j * rx
            velocities[j, 1] += k * w_j * ry
            velocities[j, 2] += k * w_j * rz
        if converged:
            return -1
    worst = members[0]
    worst_rate = -1.0
    for m in members:
        i = pairs[m, 0]
        j = pairs[m, 1]
        rate = 0.0
        for axis in range(3):
            rate += ((positions[i, axis] - positions[j, axis])
                     * (velocities[i, axis] - velocities[j, axis]))
        rate = abs(rate) / (lengths[m] * lengths[m])
        if not rate <= worst_rate:
            worst = m
            worst_rate = rate
    return worst


@njit(cache=True)
def distance(positions, i, j):
    """|r_i - r_j|, nm."""
    x = positions[i, 0] - positions[j, 0]
    y = positions[i, 1] - positions[j, 1]
    z = positions[i, 2] - positions[j, 2]
    return math.sqrt(x * x + y * y + z * z)
