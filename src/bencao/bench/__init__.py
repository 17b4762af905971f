"""Benchmarks: the standard DHFR system and timing runs side by side with OpenMM."""
