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

#: Molar gas constant k_B N_A in kJ/mol/K (CODATA 2018, the value OpenMM 8 uses).
BOLTZMANN = 0.00831446261815324

#: One bar in kJ/mol/nm^3: 1e5 Pa * 1e-27 m^3/nm^3 * N_A / 1000.
BAR = 0.0602214076

#: Grams per amu (1.66e-24) times nm^3 per cm^3 (1e21): density in g/cm^3 is DENSITY_FACTOR * mass(amu) / volume(nm^3).
DENSITY_FACTOR = 1.66053906660e-3
