"""Dynamics: integrators, thermostats, barostats and the minimizer."""

from bencao.dynamics.barostat import MonteCarloBarostat
from bencao.dynamics.integrators import (
    LangevinMiddleIntegrator,
    NoseHooverIntegrator,
    VerletIntegrator,
)

__all__ = ["LangevinMiddleIntegrator", "MonteCarloBarostat", "NoseHooverIntegrator", "VerletIntegrator"]
