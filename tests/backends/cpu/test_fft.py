"""The CPU backend's vectorised FFT (``bencao.backends.cpu.fft``) against ``numpy.fft``:
forward and (unnormalised) inverse transforms and round trips on the sizes PME grids take --
powers of 2, products of 2, 3, 5, 7, odd sizes, and primes that need the generic pass -- and
the real-to-complex 3-D transform of the PME grid (``pme_transform``) built on it."""

import math

import numba
import numpy as np
import pytest

from bencao.backends.cpu.fft import LANES, fft, fft_line, fft_plan, fft_work_size

#: Written-out radices alone and mixed (8, 4, 2, 3, 5, 7), the DHFR grid (56 = 8 7) and other
#: 2-3-5-7 products PME picks, odd sizes, and primes / prime factors above 7 (generic pass).
SIZES = [2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15, 16, 21, 25, 27, 28, 30, 32, 35, 36, 42, 45,
         48, 49, 56, 60, 63, 64, 70, 72, 80, 84, 96, 98, 105, 120, 210, 11, 13, 22, 26, 39, 53]

#: Error bound, relative to the line's L1 norm (which bounds every output): an FFT's rounding
#: error is a few ulp times log2(n) (a generic prime-p pass sums p terms), so 1e-14 (~45 ulp)
#: is ample, and any indexing or twiddle mistake gives O(1).
TOLERANCE = 1e-14


def random_lines(n, m, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, m)) + 1j * rng.normal(size=(n, m))


def scaled_error(result, expected, data):
    """Largest error per line, over the line's L1 norm."""
    return (np.abs(result - expected).max(axis=0) / np.abs(data).sum(axis=0)).max()


@pytest.mark.parametrize("n", SIZES)
def test_forward_matches_numpy(n):
    """13 lines: one full group of 8 and one padded group."""
    data = random_lines(n, 13, seed=n)
    assert scaled_error(fft(data), np.fft.fft(data, axis=0), data) < TOLERANCE


@pytest.mark.parametrize("n", SIZES)
def test_inverse_is_unnormalised_numpy_ifft(n):
    data = random_lines(n, 8, seed=1000 + n)
    expected = n * np.fft.ifft(data, axis=0)
    assert scaled_error(fft(data, inverse=True), expected, data) < TOLERANCE


@pytest.mark.parametrize("n", [2, 7, 12, 56, 60, 98, 53])
def test_round_trip(n):
    """Inverse of forward is n times the input."""
    data = random_lines(n, 5, seed=2000 + n)
    back = fft(fft(data), inverse=True) / n
    assert scaled_error(back, data, data) < TOLERANCE


def test_one_dimensional_input_and_real_input():
    data = np.random.default_rng(3).normal(size=30)
    result = fft(data)
    assert result.shape == (30,) and result.dtype == np.complex128
    assert np.abs(result - np.fft.fft(data)).max() < TOLERANCE * np.abs(data).sum()


@pytest.mark.parametrize("bad", [np.ones(1), np.ones((1, 4)), np.ones((4, 4, 4))],
                         ids=["one-point", "one-point-lines", "3-D"])
def test_rejects_what_it_does_not_support(bad):
    with pytest.raises(ValueError):
        fft(bad)


@pytest.mark.parametrize("n", [8, 30, 13])
def test_fft_line_in_place(n):
    """``fft_line`` with the output on top of the input (documented as allowed)."""
    data = random_lines(n, LANES, seed=3000 + n)
    buffer = np.concatenate([data.real.ravel(), data.imag.ravel()])
    plan, tables = fft_plan(n)
    work = np.zeros(fft_work_size(n))
    im = n * LANES
    fft_line(buffer.ctypes.data, 0, im, LANES, buffer.ctypes.data, 0, im, LANES,
             plan.ctypes.data, tables.ctypes.data, -1.0, work.ctypes.data, 0)
    result = buffer[:im].reshape(n, LANES) + 1j * buffer[im:].reshape(n, LANES)
    assert scaled_error(result, np.fft.fft(data, axis=0), data) < TOLERANCE


# --- The real-to-complex 3-D transform of the PME grid -----------------------------------------


class PmeGrid:
    """A grid, spectrum and work buffers laid out as ``CpuPME`` lays them out."""

    def __init__(self, shape, seed):
        from bencao.backends.cpu.pme_transform import _layout, _plane_buffers

        self.shape = np.array(shape, dtype=np.int64)
        nx, ny, nz = shape
        self.values = np.random.default_rng(seed).normal(size=shape)
        self.plane_stride = ny * (nz + LANES) + LANES
        self.grid = np.zeros(nx * self.plane_stride)
        self.planes()[:, :, :nz] = self.values
        nzv, self.nyh, nyhv, self.spec_im, spec_plane = _layout(ny, nz)
        self.nyhw = nyhv * LANES
        self.spectrum = np.zeros(nx * spec_plane)
        plane_work = _plane_buffers(ny, nzv, nyhv)[-1] + max(fft_work_size(ny),
                                                             fft_work_size(nz))
        line_work = 2 * (nx * LANES + 3 * LANES) + fft_work_size(nx)
        self.buffers = np.zeros((numba.config.NUMBA_NUM_THREADS, max(plane_work, line_work)))
        self.plans = [fft_plan(n) for n in shape]

    def planes(self, grid=None):
        """The (nx, ny, nz + LANES) view of a grid."""
        nx, ny, nz = self.shape
        grid = self.grid if grid is None else grid
        return grid.reshape(nx, self.plane_stride)[:, :ny * (nz + LANES)].reshape(nx, ny, -1)

    def half_spectrum(self):
        """The spectrum as a complex (nx, ny/2 + 1, nz) array."""
        nx, _, nz = self.shape
        parts = self.spectrum.reshape(nx, 2, self.spec_im)[:, :, :nz * self.nyhw]
        parts = parts.reshape(nx, 2, nz, self.nyhw)[..., :self.nyh]
        return (parts[:, 0] + 1j * parts[:, 1]).transpose(0, 2, 1)


GRIDS = [(12, 10, 14), (11, 9, 29), (7, 15, 8), (5, 13, 21), (6, 28, 35)]
GRID_IDS = ["12x10x14", "odd-11x9x29", "7x15x8", "prime-5x13x21", "6x28x35"]


@pytest.mark.parametrize("shape", GRIDS, ids=GRID_IDS)
def test_pme_plane_transform_matches_numpy_rfft(shape):
    """Per x-plane: real-to-complex along y (half axis), complex along z."""
    from bencao.backends.cpu.pme_transform import _fft_planes_forward

    pme = PmeGrid(shape, seed=sum(shape))
    (_, _), (plan_y, tw_y), (plan_z, tw_z) = pme.plans
    _fft_planes_forward(pme.grid, pme.shape, pme.plane_stride, pme.spectrum, plan_y, tw_y,
                        plan_z, tw_z, pme.buffers)
    expected = np.fft.fft(np.fft.rfft(pme.values, axis=1), axis=2)
    scale = np.abs(pme.values).sum(axis=(1, 2)).max()
    assert np.abs(pme.half_spectrum() - expected).max() < TOLERANCE * scale


@pytest.mark.parametrize("shape", GRIDS, ids=GRID_IDS)
def test_pme_transform_round_trip_and_parseval(shape):
    """Forward planes, x transform with a unit influence function, inverse planes: the grid
    comes back times nx ny nz, and the energy sum (half-axis weights) is Parseval's."""
    from bencao.backends.cpu.pme_transform import (
        _fft_planes_forward,
        _fft_planes_inverse,
        _fft_x_convolve,
    )

    pme = PmeGrid(shape, seed=7 * sum(shape))
    nx, ny, nz = shape
    (plan_x, tw_x), (plan_y, tw_y), (plan_z, tw_z) = pme.plans
    eterm = np.zeros((nx, nz, pme.nyhw))
    eterm[:, :, :pme.nyh] = 1.0
    weight = np.zeros(pme.nyhw)
    weight[:pme.nyh] = 2.0
    weight[0] = 1.0
    if ny % 2 == 0:
        weight[ny // 2] = 1.0
    line_energy = np.zeros(nz * (pme.nyhw // LANES))
    _fft_planes_forward(pme.grid, pme.shape, pme.plane_stride, pme.spectrum, plan_y, tw_y,
                        plan_z, tw_z, pme.buffers)
    _fft_x_convolve(pme.spectrum, pme.shape, eterm, weight, plan_x, tw_x, pme.buffers,
                    line_energy)
    back = np.zeros_like(pme.grid)
    _fft_planes_inverse(pme.spectrum, pme.shape, pme.plane_stride, back, plan_y, tw_y, plan_z,
                        tw_z, pme.buffers)
    total = nx * ny * nz
    planes = pme.planes(back)
    assert np.abs(planes[:, :, :nz] / total - pme.values).max() < TOLERANCE * np.abs(
        pme.values).max() * math.log2(total)
    # Columns nz.. repeat columns 0.. (for the gather's whole-vector reads).
    assert np.array_equal(planes[:, :, nz:], planes[:, :, :LANES])
    assert math.fsum(line_energy) == pytest.approx(total * np.sum(pme.values ** 2), rel=1e-13)
