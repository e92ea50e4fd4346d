"""``python -m admet.model``: train, predict with and evaluate models and ensembles."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from admet.errors import DataError, cli_errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m admet.model", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a model (or an ensemble if the config has 'ensemble')")
    train.add_argument("--config", required=True, help="run config YAML")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    train.add_argument("--out", default=None, help="model folder (default: the config's data.output_dir)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    pred = sub.add_parser("predict", help="predict a CSV of SMILES")
    pred.add_argument("--model", required=True, help="directory written by train")
    pred.add_argument("--input", required=True, help="CSV with the config's SMILES column")
    pred.add_argument("--output", required=True, help="CSV to write (input columns + predictions)")
    pred.add_argument(
        "--auxiliary-tasks",
        action="store_true",
        help="also write the auxiliary <task>_<tier> columns of data.tier_use (hidden by default)",
    )
    ev = sub.add_parser("evaluate", help="metrics of a model on a labelled CSV")
    ev.add_argument("--model", required=True)
    ev.add_argument("--input", required=True, help="CSV with SMILES and one or more task columns")
    ev.add_argument("--output", help="metrics CSV (default: <input stem>_metrics.csv beside --model)")
    for p in (pred, ev):
        p.add_argument("--quiet", action="store_true")
    return parser


def _load_any(directory: str):
    from admet.model.ensemble import load_saved

    return load_saved(directory)


def _read_input(path: str, smiles_col: str):
    from admet.data import canonical_smiles
    from admet.data.dataset import read_table

    frame = read_table(path)
    if smiles_col not in frame.columns:
        raise DataError(f"{path}: missing SMILES column {smiles_col!r}; the file has {list(frame.columns)}")
    for i, smi in enumerate(frame[smiles_col]):
        if canonical_smiles(smi) is None:
            raise DataError(f"{path}, line {i + 2}, column {smiles_col!r}: cannot parse SMILES {smi!r}")
    return frame


def _check_features(config, frame, path: str) -> None:  # type: ignore[no-untyped-def]
    """Compute the model's molecule descriptors (``data.molecule_features``) for the input
    first, so a bad descriptor cell or a SMILES a featurizer cannot read is named by file
    and line; prediction then reads them from the in-memory cache."""
    from admet.data import canonical_smiles
    from admet.data.molecule_features import feature_spec

    data = config.data
    if data.molecule_features:
        spec = feature_spec(data.molecule_features, data.featurization_cache_dir, data.descriptor_missing)
        spec.block([canonical_smiles(s) for s in frame[data.smiles_col]], frame, path, first_line=2)


def _train(args: argparse.Namespace) -> int:
    from admet.config import load_config
    from admet.config.schema import EnsembleConfig
    from admet.data.training import (
        holdout_split,
        load_training_data,
        load_validation_data,
        predefined_folds,
        resolve_path,
    )
    from admet.model.ensemble import ChempropEnsemble
    from admet.model.model import ChempropModel
    from admet.model.progress import ConsoleStatus

    cfg = load_config(args.config, args.overrides)
    out_dir = args.out or cfg.data.output_dir
    if not out_dir:
        raise DataError(f"{args.config}: no model folder; pass --out or set data.output_dir")
    progress = cfg.optimization.progress_bar and not args.quiet
    if isinstance(cfg, EnsembleConfig):
        data = None if predefined_folds(cfg) is not None else load_training_data(cfg)
        # a status line on a terminal; one line per member epoch with --quiet or to a file
        model = ChempropEnsemble(cfg).fit(
            data, progress=ConsoleStatus("train", rewrite=None if progress else False)
        )
        print(
            f"ensemble of {len(model.members)}: CV macro MAE {model.cv_score:.4f} ({model.fit_seconds:.1f} s)"
        )
    else:
        data = load_training_data(cfg)
        model = ChempropModel(cfg)
        val = load_validation_data(cfg)
        if val is not None:
            model.fit(data, val, progress=progress)
        else:
            train_idx, val_idx = holdout_split(data, cfg.data.n_folds, cfg.data.split, cfg.optimization.seed)
            model.fit(data.subset(train_idx), data.subset(val_idx), progress=progress)
        print(
            f"model: validation macro MAE {model.best_score:.4f} at epoch {model.best_epoch} "
            f"({model.fit_seconds:.1f} s)"
        )
    out = model.save(out_dir)
    print(f"saved to {out}")
    for kind in ("test", "blind"):
        path = getattr(cfg.data, f"{kind}_file")
        if path:
            _predict_file(model, str(resolve_path(path)), out / f"{kind}_predictions.csv", score=True)
    return 0


def _predict_file(
    model, input_path: str, output: Path, score: bool = False, auxiliary_tasks: bool = False
) -> None:
    """Predict a CSV into ``output``; with ``score``, labelled task columns are scored too
    (``<stem>_metrics.csv`` beside it); with ``auxiliary_tasks``, the auxiliary columns of
    ``data.tier_use`` are written too."""
    import pandas as pd

    col = model.config.data.smiles_col
    frame = _read_input(input_path, col)
    _check_features(model.config, frame, input_path)
    preds = model.predict(list(frame[col]), table=frame, auxiliary_tasks=auxiliary_tasks)
    out = frame.copy()
    for name in preds.columns:  # <task>_pred, <task>_std, <task>_lo90, <task>_hi90, as predict names them
        out[name] = preds[name].to_numpy()
    output.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(output, index=False)
    print(f"wrote {len(out)} prediction(s) to {output}")
    labelled = [t for t in model.task_names if t in frame.columns]
    if score and labelled:
        metrics = model.evaluate(frame)
        table = pd.DataFrame(metrics).T.loc[[*labelled, "macro"]]
        metrics_path = output.with_name(f"{output.stem.removesuffix('_predictions')}_metrics.csv")
        table.to_csv(metrics_path, index_label="task")
        print(f"{input_path}: macro MAE {metrics['macro']['mae']:.4f}; wrote {metrics_path}")


def _predict(args: argparse.Namespace) -> int:
    _predict_file(_load_any(args.model), args.input, Path(args.output), auxiliary_tasks=args.auxiliary_tasks)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import pandas as pd

    model = _load_any(args.model)
    col = model.config.data.smiles_col
    frame = _read_input(args.input, col)
    present = [t for t in model.task_names if t in frame.columns]
    if not present:
        raise DataError(
            f"{args.input}: no task column among {model.task_names}; the file has {list(frame.columns)}"
        )
    for task in present:
        bad = pd.to_numeric(frame[task].replace("", None), errors="coerce").isna() & (frame[task] != "")
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise DataError(
                f"{args.input}, line {i + 2}, column {task!r}: value {frame[task].iloc[i]!r} is not a number"
            )
    metrics = model.evaluate(frame)
    table = pd.DataFrame(metrics).T.loc[[*present, "macro"]]
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    out = Path(args.output) if args.output else Path(args.model) / f"{Path(args.input).stem}_metrics.csv"
    table.to_csv(out, index_label="task")
    (out.with_suffix(".json")).write_text(json.dumps(metrics, indent=1, default=float))
    print(f"wrote {out}")
    return 0


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("admet.sampling.joint").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    return {"train": _train, "predict": _predict, "evaluate": _evaluate}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
