"""Process and device settings a fit needs, each applied where the fit starts and scoped.

What: :func:`quiet_lightning` (Lightning's worker/device warnings and info lines off for
the duration of a fit), :func:`no_nan_fill` (torch's deterministic mode without its NaN
fill of new tensors), :func:`freeze_startup_heap` (the imported modules' objects out of the
garbage collector's scans, once per process) and :func:`resolve_device`.

Why here: importing a model module must change no process-wide warning filter or logger
level (a notebook or an application that imports admet keeps its own settings), so the
tweaks are context managers the Lightning fit enters, not statements run at import; the
stacked fit shares the heap freeze and the device choice.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import warnings
from collections.abc import Iterator

import torch

from admet.errors import ConfigError

__all__ = ["QUIET_LOGGERS", "freeze_startup_heap", "no_nan_fill", "quiet_lightning", "resolve_device"]

# Lightning's chatter about workers and devices is noise for CPU training of small models;
# silenced for the duration of a fit only.
QUIET_WARNINGS = (
    ".*does not have many workers.*",
    ".*GPU available but not used.*",
    r".*isinstance\(treespec, LeafSpec\).*",
)
QUIET_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda")


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's worker/device warnings and info lines off, restored afterwards."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        for message in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        for lg in loggers:
            lg.setLevel(max(lg.level, logging.WARNING))
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


@contextlib.contextmanager
def no_nan_fill() -> Iterator[None]:
    """Torch's deterministic mode (Lightning's ``deterministic=True``) without its debugging
    aid of filling every new uninitialised tensor with NaN: that fill is a kernel per
    ``torch.empty`` (about 40 per training step of a small model, 5% of its time) and no
    result depends on it, since nothing here reads memory it has not written. The
    deterministic algorithms themselves stay on; the previous setting comes back after."""
    flags = torch.utils.deterministic
    previous = flags.fill_uninitialized_memory
    flags.fill_uninitialized_memory = False
    try:
        yield
    finally:
        flags.fill_uninitialized_memory = previous


def freeze_startup_heap() -> bool:
    """Move every object the garbage collector tracks now out of its future scans, once
    per process; True when this call did it.

    A fresh process holds about half a million tracked objects after importing torch,
    Lightning, Chemprop, RDKit and MLflow, nearly all alive until it exits. The first full
    collection that a fit's allocations trigger scans them all: 0.6 s on a 2-core machine,
    as long as the three epochs of a small model. :func:`gc.freeze` (CPython's own remedy,
    one list splice) leaves later collections to the objects made afterwards. What is
    frozen is never collected, so garbage cycles alive at the first fit (none to speak of
    in a process that has only imported and loaded data) stay in memory.
    """
    global _STARTUP_HEAP_FROZEN
    if _STARTUP_HEAP_FROZEN:
        return False
    gc.freeze()
    _STARTUP_HEAP_FROZEN = True
    return True


_STARTUP_HEAP_FROZEN = False


def resolve_device(accelerator: str) -> torch.device:
    """The device a fit runs on: ``auto`` is the first visible GPU when CUDA is available,
    else the CPU; ``cpu``/``gpu``/``cuda``/``cuda:K`` as named."""
    name = str(accelerator).lower()
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if name in ("gpu", "cuda"):
        return torch.device("cuda:0")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"optimization.accelerator: unknown device {accelerator!r}") from None
