"""Ensembles: many replicas of a job's last stage, independent or exchanging (temperature, REST2),
cut into idempotent segments that run on Dask workers with all state in the run folder."""

from bencao.ensemble.exchange import attempt_exchanges
from bencao.ensemble.rest2 import scale_solute, solute_atoms
from bencao.ensemble.runner import EnsembleRunner

__all__ = ["EnsembleRunner", "attempt_exchanges", "scale_solute", "solute_atoms"]
