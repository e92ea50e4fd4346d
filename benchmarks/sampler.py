"""JointSampler speed and memory against torch's WeightedRandomSampler and a per-sample loop.

For N = 1e4, 1e5, 1e6 molecules, T = 10 tasks with imbalanced sparse labels and three
quality tiers: construction time and one epoch of draws for both composition modes,
against ``WeightedRandomSampler`` on the same N in the same run (ratio printed), and a
straightforward per-sample Python loop of two-stage sampling at N = 1e4 (speed-up
printed). Peak extra memory of construction + one epoch is measured with tracemalloc
(numpy's allocations; the torch tensor of drawn indices, 8 bytes per draw, is not traced)
and printed in bytes per molecule.
Target: one epoch at N = 1e6 within 2x of WeightedRandomSampler; memory O(N).

    python benchmarks/sampler.py [--sizes 10000,100000,1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import time
import tracemalloc

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from admet.sampling import CurriculumState, JointSampler

T = 10


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Sparse imbalanced labels: task t labelled with probability 0.5 / (1 + t)."""
    rng = np.random.default_rng(seed)
    rates = 0.5 / (1 + np.arange(T))
    Y = np.where(rng.random((n, T)) < rates, rng.normal(size=(n, T)), np.nan)
    qualities = rng.choice(["high", "medium", "low"], size=n, p=[0.3, 0.3, 0.4]).tolist()
    return Y, qualities


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def loop_two_stage(Y: np.ndarray, alpha: float, n_draws: int, seed: int) -> list[int]:
    """The straightforward implementation: per draw, pick a task, then one of its molecules."""
    rnd = random.Random(seed)
    members = [[i for i in range(len(Y)) if not np.isnan(Y[i, t])] for t in range(Y.shape[1])]
    weights = [len(m) ** -alpha if m else 0.0 for m in members]
    tasks = list(range(Y.shape[1]))
    out = []
    for _ in range(n_draws):
        t = rnd.choices(tasks, weights)[0]
        out.append(rnd.choice(members[t]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'N':>9} {'mode':>14} {'build s':>9} {'epoch s':>9} {'WRS s':>9} {'ratio':>6} {'B/mol':>7}")
    for n in map(int, args.sizes.split(",")):
        Y, qual = make_data(n)
        wrs_weights = torch.rand(n, dtype=torch.float64)
        wrs = WeightedRandomSampler(wrs_weights, n, replacement=True)
        t_wrs = timed(lambda wrs=wrs: list(wrs), args.repeats)
        for mode in ("two_stage", "multiplicative"):
            state = CurriculumState(["high", "medium", "low"])

            build = functools.partial(
                JointSampler,
                Y,
                qual,
                state,
                task_alpha=0.5,
                composition_mode=mode,
                log_weight_stats=False,
            )

            t_build = timed(build, args.repeats)
            sampler = build()
            t_epoch = timed(lambda sampler=sampler: list(sampler), args.repeats)
            tracemalloc.start()
            list(build())
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            print(
                f"{n:>9} {mode:>14} {t_build:9.4f} {t_epoch:9.4f} {t_wrs:9.4f} "
                f"{t_epoch / t_wrs:6.2f} {peak / n:7.1f}"
            )
    n = 10_000
    Y, _ = make_data(n)
    t_loop = timed(lambda: loop_two_stage(Y, 0.5, n, 0), 1)
    sampler = JointSampler(Y, task_alpha=0.5, log_weight_stats=False)
    t_vec = timed(
        lambda: (JointSampler(Y, task_alpha=0.5, log_weight_stats=False), list(sampler)), args.repeats
    )
    print(
        f"per-sample loop two-stage at N={n}: {t_loop:.3f} s; JointSampler build+epoch "
        f"{t_vec:.4f} s; speed-up {t_loop / t_vec:.0f}x"
    )


if __name__ == "__main__":
    main()
