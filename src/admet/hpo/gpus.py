"""GPU workers: ``run --device cuda:K`` and ``run --gpus all|N|0,1 --workers-per-gpu W``.

``--gpus`` starts one worker process per GPU (times W) from one command: each child sees
only its GPU (``CUDA_VISIBLE_DEVICES``; ids are those the parent sees, so a parent started
with ``CUDA_VISIBLE_DEVICES=2,3`` gives its children GPUs 2 and 3), runs on ``cuda`` and
registers its own worker index in the study (or ``--worker-index`` + its position). The
parent waits for all of them, forwards Ctrl-C (SIGINT, also on SIGTERM) and exits with the
worst child exit code.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from admet.errors import AdmetError

__all__ = ["check_device", "parse_gpus", "run_gpu_workers", "worker_commands"]

logger = logging.getLogger(__name__)

STOP_SECONDS = 180.0  # after Ctrl-C, how long children may take to stop before they are killed


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _no_cuda(what: str) -> AdmetError:
    import torch

    build = f"torch {torch.__version__}" + ("" if torch.version.cuda else " is a CPU-only build")
    return AdmetError(f"{what} needs CUDA, but torch sees no GPU ({build}); use --device cpu or no --gpus")


def check_device(device: str, cuda_count: int | None = None) -> str:
    """``device`` as an ``optimization.accelerator`` value; a CUDA device must exist."""
    name = device.strip().lower()
    if not (name in ("auto", "cpu", "gpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", name)):
        raise AdmetError(f"--device must be cpu, cuda, cuda:K, mps or auto, got {device!r}")
    if name.startswith(("cuda", "gpu")):
        count = _cuda_count() if cuda_count is None else cuda_count
        if count == 0:
            raise _no_cuda(f"--device {device}")
        k = int(name.split(":", 1)[1]) if ":" in name else 0
        if k >= count:
            raise AdmetError(f"--device {device}: only {count} GPU(s) visible (cuda:0..cuda:{count - 1})")
    return name


def parse_gpus(text: str, cuda_count: int) -> list[int]:
    """GPU indices (as this process sees them) for ``--gpus``: ``all``, a count ``N`` (the
    first N), or a comma list of ids (``0,1``; a single id as ``2,``).

    Raises:
        AdmetError: no CUDA, a malformed value, or a GPU that is not there.
    """
    if cuda_count == 0:
        raise _no_cuda(f"--gpus {text}")
    value = text.strip().lower()
    if value == "all":
        return list(range(cuda_count))
    if value.isdigit():
        n = int(value)
        if not 1 <= n <= cuda_count:
            raise AdmetError(f"--gpus {text}: {cuda_count} GPU(s) visible, asked for {n}")
        return list(range(n))
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise AdmetError(f"--gpus must be all, a count N or ids like 0,1; got {text!r}")
    ids = [int(p) for p in parts]
    if len(set(ids)) != len(ids):
        raise AdmetError(f"--gpus {text}: a GPU is named twice (use --workers-per-gpu)")
    missing = [i for i in ids if i >= cuda_count]
    if missing:
        raise AdmetError(f"--gpus {text}: no GPU {missing[0]} ({cuda_count} visible: 0..{cuda_count - 1})")
    return ids


def worker_commands(
    run_args: Sequence[str],
    gpu_ids: Sequence[int],
    workers_per_gpu: int = 1,
    worker_index: int | None = None,
    env: Mapping[str, str] | None = None,
) -> list[tuple[list[str], dict[str, str]]]:
    """(command, environment) of each child worker: ``run_args`` is the ``run`` command
    line without ``--gpus``/``--workers-per-gpu``/``--worker-index``/``--device``."""
    if workers_per_gpu < 1:
        raise AdmetError(f"--workers-per-gpu must be >= 1, got {workers_per_gpu}")
    base = dict(os.environ if env is None else env)
    visible = [v.strip() for v in base.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    out = []
    for gpu in gpu_ids:
        physical = visible[gpu] if gpu < len(visible) else str(gpu)
        for _ in range(workers_per_gpu):
            cmd = [sys.executable, "-m", "admet.hpo", *run_args, "--device", "cuda"]
            if worker_index is not None:
                cmd += ["--worker-index", str(worker_index + len(out))]
            out.append((cmd, {**base, "CUDA_VISIBLE_DEVICES": physical}))
    return out


def child_run_args(args: Any) -> list[str]:
    """The ``run`` command line of a child, rebuilt from the parent's parsed arguments."""
    out = ["run", "--study", args.study]
    if args.storage:
        out += ["--storage", args.storage]
    if getattr(args, "name", None):
        out += ["--name", args.name]
    if args.quiet:
        out.append("--quiet")
    if args.allow_space_change:
        out.append("--allow-space-change")
    if getattr(args, "timeout", None) is not None:
        out += ["--timeout", str(args.timeout)]
    return [*out, *args.overrides]


def _exit_code(rc: int) -> int:
    return 128 - rc if rc < 0 else rc


def run_gpu_workers(args: Any, cuda_count: int | None = None) -> int:
    """Start the children of ``run --gpus``, wait for them, return the worst exit code."""
    count = _cuda_count() if cuda_count is None else cuda_count
    ids = parse_gpus(args.gpus, count)
    commands = worker_commands(child_run_args(args), ids, args.workers_per_gpu, args.worker_index)
    print(f"starting {len(commands)} worker(s) on GPU(s) {','.join(map(str, ids))}", flush=True)
    # own process groups: a terminal's Ctrl-C reaches the parent only, which forwards it once
    procs = [subprocess.Popen(cmd, env=env, process_group=0) for cmd, env in commands]

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    interrupted = False
    try:
        for p in procs:
            p.wait()
    except KeyboardInterrupt:
        interrupted = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_SECONDS
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("worker pid %d did not stop in %.0f s; killing it", p.pid, STOP_SECONDS)
                p.kill()
                p.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    worst = max(_exit_code(p.returncode) for p in procs)
    return max(worst, 130) if interrupted else worst
