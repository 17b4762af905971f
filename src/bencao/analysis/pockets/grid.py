"""The pocket frequency grid (mdpocket's ``mdpout_freq_grid.dx``) and OpenDX files.

Each grid point counts the frames in which it lay within 0.2 nm of the centre of an alpha sphere
of a pocket; divided by the number of frames, that is how often the point was inside a pocket.
Written as OpenDX in Angstrom (the unit VMD, PyMOL and NGL expect of a .dx map).
"""

from __future__ import annotations

import gzip
import os

import numpy as np
from scipy.spatial import cKDTree

from bencao.io.files import atomic_write

SPACING = 0.1           # nm between grid points (mdpocket's 1 A)
PROBE_RADIUS = 0.2      # nm: a grid point within this of a sphere centre is inside the pocket
MARGIN = 1.0            # nm added around the first frame's protein


class FrequencyGrid:
    """Counts, per grid point, the frames it was inside a pocket.

    Parameters
    ----------
    origin : (3,) array
        First grid point, nm.
    shape : tuple of 3 int
    spacing : float
        nm.
    """

    def __init__(self, origin, shape, spacing: float = SPACING):
        self.origin = np.asarray(origin, np.float64)
        self.shape = tuple(int(n) for n in shape)
        self.spacing = float(spacing)
        self.counts = np.zeros(self.shape, np.int32)
        self.frames = 0

    @classmethod
    def around(cls, positions, spacing: float = SPACING, margin: float = MARGIN) -> FrequencyGrid:
        """A grid over the box of ``positions`` (nm) plus ``margin`` on every side."""
        low = np.asarray(positions).min(axis=0) - margin
        high = np.asarray(positions).max(axis=0) + margin
        shape = np.ceil((high - low) / spacing).astype(int) + 1
        return cls(low, shape, spacing)

    def add_frame(self, centres) -> None:
        """Count one frame whose pocket alpha spheres have these centres (nm)."""
        self.frames += 1
        centres = np.asarray(centres, np.float64).reshape(-1, 3)
        if not len(centres):
            return
        reach = int(np.ceil(PROBE_RADIUS / self.spacing))
        offsets = np.stack(np.meshgrid(*[np.arange(-reach, reach + 1)] * 3, indexing="ij"),
                           axis=-1).reshape(-1, 3)
        nearest = np.rint((centres - self.origin) / self.spacing).astype(np.int64)
        candidates = np.unique((nearest[:, None, :] + offsets[None]).reshape(-1, 3), axis=0)
        inside = np.all((candidates >= 0) & (candidates < self.shape), axis=1)
        candidates = candidates[inside]
        distance, _ = cKDTree(centres).query(self.origin + candidates * self.spacing)
        hit = candidates[distance <= PROBE_RADIUS]
        self.counts[hit[:, 0], hit[:, 1], hit[:, 2]] += 1

    @property
    def frequency(self) -> np.ndarray:
        """Fraction of the frames each point was inside a pocket."""
        return self.counts / max(self.frames, 1)

    def write_dx(self, path) -> None:
        """Write the frequency as an OpenDX map (Angstrom), atomically."""
        write_dx(path, self.frequency, self.origin, self.spacing)


def resample(values: np.ndarray, origin, spacing: float, target_origin, target_shape,
             target_spacing: float) -> np.ndarray:
    """``values`` at the points of another grid (nearest point; zero outside), e.g. to compare a
    map with a reference computed on a grid of its own."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in target_shape], indexing="ij"), axis=-1)
    points = np.asarray(target_origin) + index.reshape(-1, 3) * target_spacing
    nearest = np.rint((points - np.asarray(origin)) / spacing).astype(np.int64)
    inside = np.all((nearest >= 0) & (nearest < values.shape), axis=1)
    out = np.zeros(len(points))
    out[inside] = values[nearest[inside, 0], nearest[inside, 1], nearest[inside, 2]]
    return out.reshape(tuple(target_shape))


def write_dx(path, values: np.ndarray, origin, spacing: float) -> None:
    """An OpenDX scalar map of ``values`` (x slowest, z fastest) with ``origin`` and ``spacing``
    in nm, written in Angstrom."""
    nx, ny, nz = values.shape
    ox, oy, oz = np.asarray(origin) * 10.0
    step = spacing * 10.0
    flat = values.ravel()
    with atomic_write(path, "w") as handle:
        handle.write("# pocket frequency grid written by bencao pockets\n")
        handle.write(f"object 1 class gridpositions counts {nx} {ny} {nz}\n")
        handle.write(f"origin {ox:.4f} {oy:.4f} {oz:.4f}\n")
        for axis in range(3):
            delta = [0.0, 0.0, 0.0]
            delta[axis] = step
            handle.write(f"delta {delta[0]:.4f} {delta[1]:.4f} {delta[2]:.4f}\n")
        handle.write(f"object 2 class gridconnections counts {nx} {ny} {nz}\n")
        handle.write(f"object 3 class array type double rank 0 items {flat.size} data follows\n")
        for start in range(0, flat.size, 3):
            handle.write(" ".join(f"{v:.4g}" for v in flat[start:start + 3]) + "\n")
        handle.write('attribute "dep" string "positions"\n')
        handle.write('object "pocket frequency" class field\n')
        handle.write('component "positions" value 1\ncomponent "connections" value 2\n'
                     'component "data" value 3\n')


def read_dx(path) -> tuple[np.ndarray, np.ndarray, float]:
    """(values, origin nm, spacing nm) of an OpenDX scalar map on an axis-aligned cubic grid
    (``.dx`` or gzipped ``.dx.gz``)."""
    shape = origin = spacing = None
    values = []
    reading = False
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#") or not line.strip():
                continue
            words = line.split()
            if reading:
                if words[0] in ("attribute", "object", "component"):
                    reading = False
                    continue
                values.extend(float(w) for w in words)
            elif line.startswith("object 1"):
                shape = tuple(int(w) for w in words[-3:])
            elif words[0] == "origin":
                origin = np.array([float(w) for w in words[1:4]]) / 10.0
            elif words[0] == "delta" and spacing is None:
                spacing = max(float(w) for w in words[1:4]) / 10.0
            elif line.startswith("object 3"):
                reading = True
    return np.array(values).reshape(shape), origin, spacing
