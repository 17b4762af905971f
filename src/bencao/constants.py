"""Physical constants and fixed-point settings shared by every layer.

Units follow OpenMM/GROMACS: nm, ps, amu, kJ/mol, elementary charge, K, bar.
"""

#: Coulomb constant 1/(4 pi eps0) in kJ/mol nm / e^2 (the value OpenMM 8 uses).
ONE_4PI_EPS0 = 138.93545764438198

#: Fixed-point scale for force accumulation: a force f (kJ/mol/nm) is stored as int64(f * FORCE_SCALE).
#: 2**32 is OpenMM's CUDA choice: resolution 2.3e-10 kJ/mol/nm, far below float32 pair-force error.
FORCE_SCALE = 2.0 ** 32

#: Largest force magnitude (kJ/mol/nm) a single contribution may have before it is clamped when
#: converted to fixed point; 2e9 * 2**32 stays inside int64.  A clamped force means a blow-up,
#: which the backend reports by atom.
FORCE_CLAMP = 2.0e9
