"""Wall time of a 5-member ensemble with shared featurisation vs featurising per member.

Shared: ``ChempropEnsemble.fit`` featurises the training set once into the process cache.
Per member: the cache is emptied before every member, as if each featurised on its own.

    python benchmarks/ensemble_featurize.py [--max-molecules 1500] [--epochs 1]
"""

from __future__ import annotations

import argparse
import time
import warnings

from admet.config import load_config
from admet.data import featurize
from admet.data.fang2023 import ensure_prepared
from admet.data.training import load_training_data
from admet.model import ensemble as ensemble_module
from admet.model import model as model_module
from admet.model.ensemble import ChempropEnsemble

warnings.filterwarnings("ignore")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-molecules", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    folder = ensure_prepared()
    cfg = load_config(
        "configs/0-experiment/ensemble.yaml",
        [
            f"data.train_file={folder / 'train.csv'}",
            f"data.max_molecules={args.max_molecules}",
            f"optimization.max_epochs={args.epochs}",
            "ensemble.n_members=5",
            "model.message_hidden_dim=64",
            "model.hidden_dim=64",
            "optimization.accelerator=cpu",
        ],
    )
    data = load_training_data(cfg)

    featurize._CACHES.clear()
    t0 = time.perf_counter()
    ChempropEnsemble(cfg).fit(data)
    shared = time.perf_counter() - t0
    n_featurised_shared = featurize.default_cache().misses

    # per member: every member model owns a fresh cache, so each one featurises again
    class _NoUpfront:
        def graphs(self, smiles):
            return []

    model_module.ChempropModel.cache = property(  # type: ignore[assignment]
        lambda self: self.__dict__.setdefault("_own_cache", featurize.FeaturizationCache())
    )
    ensemble_module.default_cache = lambda _dir=None: _NoUpfront()  # type: ignore[assignment]
    t0 = time.perf_counter()
    ChempropEnsemble(cfg).fit(data)
    per_member = time.perf_counter() - t0
    print(f"{len(data)} molecules, 5 members, {args.epochs} epoch(s) each")
    print(f"shared featurisation:     {shared:7.2f} s ({n_featurised_shared} graphs built once)")
    print(f"featurising per member:   {per_member:7.2f} s")
    print(f"saving: {per_member - shared:.2f} s ({per_member / shared:.2f}x)")


if __name__ == "__main__":
    main()
