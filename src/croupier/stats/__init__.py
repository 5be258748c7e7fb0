"""Pure statistics: numpy/scipy over per-arm running totals, no I/O, no clocks, no globals.

Nothing here imports the rest of Croupier. The public entry points are
:func:`croupier.stats.report.analyze` and :func:`croupier.stats.report.guardrail` for results,
:func:`croupier.stats.thompson.thompson_allocation` for traffic weights and
:func:`croupier.stats.power.sample_size` for planning.
"""

from croupier.stats.power import SampleSize, SampleSizeError, sample_size
from croupier.stats.report import (
    ArmSummary,
    Comparison,
    GuardrailCheck,
    MetricReport,
    StatsInputError,
    analyze,
    guardrail,
)
from croupier.stats.sequential import SequentialState
from croupier.stats.srm import SrmResult
from croupier.stats.sufficient import SufficientStats
from croupier.stats.thompson import Allocation, AllocationError, thompson_allocation

__all__ = [
    "Allocation",
    "AllocationError",
    "ArmSummary",
    "Comparison",
    "GuardrailCheck",
    "MetricReport",
    "SampleSize",
    "SampleSizeError",
    "SequentialState",
    "SrmResult",
    "StatsInputError",
    "SufficientStats",
    "analyze",
    "guardrail",
    "sample_size",
    "thompson_allocation",
]
