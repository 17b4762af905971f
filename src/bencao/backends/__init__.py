"""Backends compile a System for one kind of hardware and own the hot state."""
