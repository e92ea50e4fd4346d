"""Cold vs warm featurisation of the fang2023 training set.

Cold: a fresh :class:`FeaturizationCache` featurises every molecule with Chemprop's
featurizer. Warm (memory): the same cache asked again. Warm (disk): a new cache in a new
object loading the pickled graphs. Target: warm at least 10x faster than cold.

    python benchmarks/featurize.py [--processed data/fang2023]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import pandas as pd

from admet.data import FeaturizationCache
from admet.data.fang2023 import ensure_prepared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processed", default=None, help="processed fang2023 folder")
    args = parser.parse_args()
    folder = ensure_prepared(args.processed)
    smiles = list(dict.fromkeys(pd.read_csv(folder / "train.csv")["SMILES"]))
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeaturizationCache(cache_dir=tmp)
        t0 = time.perf_counter()
        cache.graphs(smiles)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        cache.graphs(smiles)
        warm_mem = time.perf_counter() - t0
        t0 = time.perf_counter()
        FeaturizationCache(cache_dir=tmp).graphs(smiles)
        warm_disk = time.perf_counter() - t0
    print(f"molecules: {len(smiles)}")
    print(f"cold featurisation:  {cold:8.3f} s")
    print(f"warm (in memory):    {warm_mem:8.4f} s   speed-up {cold / warm_mem:8.1f}x")
    print(f"warm (from disk):    {warm_disk:8.4f} s   speed-up {cold / warm_disk:8.1f}x")
    print(f"target >= 10x: {'met' if min(cold / warm_mem, cold / warm_disk) >= 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
