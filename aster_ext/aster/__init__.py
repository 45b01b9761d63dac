"""Aster (Lohar et al., EMSOFT/TECS 2023) reproduced (``aster``) and repaired (``aster-sound``)."""

from .model import MODES, AsterModel, build_aster_model
from .ranges import Interval, LayerRanges, aster_ranges
from .settings import SETTINGS, AsterSetting, get_setting
from .solve import AsterResult, assign_aster, smallest_error
from .types import build_program, daisy_area_cost

__all__ = [
    "MODES",
    "SETTINGS",
    "AsterModel",
    "AsterResult",
    "AsterSetting",
    "Interval",
    "LayerRanges",
    "assign_aster",
    "aster_ranges",
    "build_aster_model",
    "build_program",
    "daisy_area_cost",
    "get_setting",
    "smallest_error",
]
