"""Benchmarks of trained ensembles against published results."""
