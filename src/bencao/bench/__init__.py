"""Benchmarks: DHFR and water boxes of growing size, timed side by side with OpenMM, and
profiles of where a step's time goes."""
