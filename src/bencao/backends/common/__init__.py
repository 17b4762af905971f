"""What every backend shares: the contract (evaluation results, term and backend protocols, the
kernel registry, the step primitives) and the laws and tables both compile (fixed point, Ewald
parameters, exclusions, long-range corrections).

Nothing here imports a backend; the backends import from here.
"""
