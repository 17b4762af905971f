"""The CPU integrator kernels' Langevin noise is NumPy's stream, drawn faster."""

import numpy as np

from bencao.backends.cpu.integrate import standard_normal_fill


def test_noise_is_numpys_standard_normal_stream_and_leaves_the_same_state():
    # 3 x 10^6 numbers reach the ziggurat's rare paths (tail and wedges: ~1% of draws) many
    # times over, so a difference in any branch would show
    ours = np.random.Generator(np.random.PCG64(2026))
    numpys = np.random.Generator(np.random.PCG64(2026))
    noise = np.empty((1_000_000, 3))
    standard_normal_fill(ours, noise.reshape(-1))
    np.testing.assert_array_equal(noise, numpys.standard_normal((1_000_000, 3)))
    # the bit generator advanced exactly as NumPy's: later draws (barostat moves, the next
    # step's noise) and checkpoints of the state are unchanged
    assert ours.bit_generator.state == numpys.bit_generator.state
    assert ours.random() == numpys.random()
