"""The project's own `refined` mode: symbolic ranges, affine error forms, per-neuron ILP (DESIGN §4-§5)."""

from .error_forms import certify_forms, forms_analysis
from .solve import RefinedResult, assign_refined, build_program, smallest_certifiable
from .symbolic_ranges import symbolic_ranges

__all__ = [
    "RefinedResult",
    "assign_refined",
    "build_program",
    "certify_forms",
    "forms_analysis",
    "smallest_certifiable",
    "symbolic_ranges",
]
