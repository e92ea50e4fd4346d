"""Benchmarks of trained ensembles against published results (imported lazily)."""

from __future__ import annotations

from admet._lazy import lazy_exports

_EXPORTS = {
    "BenchmarkResult": "admet.benchmark.fang2023",
    "paper_table": "admet.benchmark.fang2023",
    "run_benchmark": "admet.benchmark.fang2023",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
