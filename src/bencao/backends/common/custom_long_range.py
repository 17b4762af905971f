"""The long-range correction of a CustomNonbondedForce expression, as OpenMM computes it.

Beyond the cutoff a homogeneous fluid is assumed: the missing energy is C / V with

    C = 2 pi N^2 * sum_{class pairs ab} n_ab I_ab / (N (N + 1) / 2),
    I_ab = int_rc^inf r^2 E_ab(r) dr + int_rs^rc r^2 (1 - S(r)) E_ab(r) dr,

particles grouped into classes of identical parameters and n_ab the number of interacting pairs
between classes a and b: N_a (N_a + 1) / 2 within a class without interaction groups (OpenMM's
count, self pairs included), otherwise the pairs of each group.  The integrals are OpenMM's own
scheme (``CustomNonbondedForceImpl``): the midpoint rule, points tripled until the sum changes
by less than 1e-5 relative, over x = rc / r in (0, 1] for the tail (which multiplies E by
r^4 / rc) and over the switching interval.  Integrating the same way, bencao's correction agrees
with OpenMM's to rounding rather than to the 1e-5 tolerance of the scheme.  dC/dp uses the same
integrals of dE/dp.  The law is the pair's generated law, called with class indices as rows.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from bencao.backends.common.law_cache import compiled_law_loop


def _integral_loop(law):
    """Tail integral I_ab of ``law`` for each class pair (a[k], b[k]); NaN if it diverges.

    Two integrals by one midpoint scheme: part 0 the tail beyond the cutoff over x = rc / r,
    part 1 (with a switch) the switching interval over x = (r - rs) / (rc - rs).
    """

    def integrals(table, first, second, cutoff, switch_distance, masks):
        parameters = (table, 0.0, 0.0, masks, masks, False)
        width = cutoff - switch_distance
        out = np.empty(first.shape[0])
        for k in range(first.shape[0]):
            a = first[k]
            b = second[k]
            total = 0.0
            for part in range(2 if switch_distance > 0.0 else 1):
                integral = 0.0
                points = 1
                iteration = 0
                while True:
                    old = integral
                    new = 0.0
                    for i in range(points):
                        if i % 3 != 1:
                            x = (i + 0.5) / points
                            if part == 0:
                                r = cutoff / x
                                new += law(r * r, a, b, parameters)[1] * r * r * r * r
                            else:
                                r = switch_distance + x * width
                                # 1 - S(r): what switching removes, 10x^3 - 15x^4 + 6x^5.
                                removed = x * x * x * (10.0 + x * (-15.0 + x * 6.0))
                                new += removed * law(r * r, a, b, parameters)[1] * r * r
                    integral = new / points + old / 3.0
                    change = abs((integral - old) / integral) if integral != 0.0 else 0.0
                    if iteration > 2 and (change < 1e-5 or integral == 0.0):
                        break
                    if iteration == 10 or (iteration > 7 and change > 1e-3):
                        integral = math.nan
                        break
                    points *= 3
                    iteration += 1
                total += integral / cutoff if part == 0 else integral * width
            out[k] = total
        return out

    return integrals


@functools.cache
def integral_kernel(law):
    """The compiled integral loop of ``law`` (cached on disk by source)."""
    return compiled_law_loop(_integral_loop(law), law)


def interaction_counts(class_ids: np.ndarray, n_classes: int, groups) -> np.ndarray:
    """Interacting pairs between each pair of classes, (C, C) with entries at a <= b.

    Parameters
    ----------
    class_ids : (N,) int array
        Class of each particle.
    n_classes : int
        C.
    groups : sequence of (set1, set2) index arrays
        Interaction groups; empty for all pairs.
    """
    counts = np.zeros((n_classes, n_classes))
    if not len(groups):
        sizes = np.bincount(class_ids, minlength=n_classes).astype(np.float64)
        counts = np.triu(np.outer(sizes, sizes), 1)
        counts[np.diag_indices(n_classes)] = sizes * (sizes + 1) / 2
        return counts
    for set1, set2 in groups:
        set1 = np.unique(np.asarray(set1, np.int64))
        set2 = np.unique(np.asarray(set2, np.int64))
        ordered = np.outer(np.bincount(class_ids[set1], minlength=n_classes),
                           np.bincount(class_ids[set2], minlength=n_classes)).astype(np.float64)
        # OpenMM counts a pair of particles in both sets once: (a1, a2) is skipped when both
        # are in both sets and a1 >= a2.
        both = np.intersect1d(set1, set2)
        if len(both):
            onehot = np.zeros((len(both), n_classes))
            onehot[np.arange(len(both)), class_ids[both]] = 1.0
            at_or_after = np.cumsum(onehot[::-1], axis=0)[::-1]
            ordered -= at_or_after.T @ onehot
        counts += np.triu(ordered + ordered.T, 1) + np.diag(np.diag(ordered))
    return counts


class CustomLongRangeCorrection:
    """C and dC/dp of a CustomPairs term, recomputed when its global parameters change.

    Parameters
    ----------
    term : CustomPairs
        The force (per-particle parameters, cutoff, switch, groups).
    compiled : CustomLaw
        Its generated laws (``laws.custom.custom_law(kind="pair", ...)``).
    """

    def __init__(self, term, compiled):
        self.name = term.name
        self.cutoff = float(term.cutoff)
        self.switch_distance = float(term.switch_distance)
        per_particle = np.asarray(term.parameters, np.float64)
        n = per_particle.shape[0]
        self.n = n
        classes, class_ids = np.unique(per_particle, axis=0, return_inverse=True)
        class_ids = np.asarray(class_ids).reshape(-1)
        self._classes = classes.reshape(-1, per_particle.shape[1])
        counts = interaction_counts(class_ids, len(self._classes), term.interaction_groups())
        self._first, self._second = (np.ascontiguousarray(x, np.int64)
                                     for x in np.nonzero(counts))
        self._counts = counts[self._first, self._second]
        self._laws = {"": compiled.law, **compiled.derivative_laws}
        self._cached = None

    def coefficients(self, global_values: tuple) -> dict[str, float]:
        """{"": C, name: dC/dp, ...} in kJ/mol nm^3 at these global values (in the term's
        order), computed once per set of values.

        Raises
        ------
        ValueError
            If an integral does not converge (the energy falls no faster than 1/r^3).
        """
        if self._cached is not None and self._cached[0] == global_values:
            return self._cached[1]
        table = np.ascontiguousarray(np.concatenate(
            [self._classes, np.tile(np.asarray(global_values, np.float64),
                                    (len(self._classes), 1))], axis=1))
        masks = np.zeros(1, np.int64)
        result = {}
        for name, law in self._laws.items():
            integrals = integral_kernel(law)(table, self._first, self._second, self.cutoff,
                                             self.switch_distance, masks)
            if not np.all(np.isfinite(integrals)):
                raise ValueError(f"{self.name}: the long-range correction does not converge; "
                                 "the energy must fall to 0 faster than 1/r^3")
            total = float(np.dot(self._counts, integrals))
            pairs = self.n * (self.n + 1) / 2.0
            result[name] = 2.0 * math.pi * self.n * self.n * total / pairs if pairs else 0.0
        self._cached = (tuple(global_values), result)
        return result
