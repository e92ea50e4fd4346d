"""Chemprop interoperability: our models as plain Chemprop models and CLI configs.

What: :func:`to_chemprop` rebuilds a trained :class:`~admet.model.model.ChempropModel` from
Chemprop's own classes (``BondMessagePassing``, ``Mean``/``Sum``/``NormAggregation``,
``RegressionFFN`` with its ``UnscaleTransform``, batch norm when configured, the same
criterion and task weights) and loads our weights and target scaler into it by state dict;
:func:`save_chemprop` writes it with ``chemprop.models.utils.save_model``.
:func:`chemprop_train_config` writes the run config's model and optimisation settings as
the TOML that ``chemprop train --config-path`` reads.

Why: a saved model then works without this package: ``chemprop predict -i test.csv
--model-paths <model folder>/chemprop/*.pt`` gives the numbers ``python -m admet.model
predict`` gives (the mean over the members; both use Chemprop's default ``V2`` multi-hot
atom featurizer, so no featurizer flag is needed), ``chemprop.models.MPNN.load_from_file``
reads the file, and Chemprop's tools (fingerprints, fine-tuning, uncertainty) apply to it.
Our subclasses (scatter-free kernels, per-task validation metrics) differ from Chemprop's
classes only in speed and logging, so the saved hyperparameters name Chemprop's classes
only. Which Chemprop head and aggregation a part maps to is its ``chemprop`` name in
:mod:`admet.config.registry` (``regression`` -> ``PredictorRegistry["regression"]``,
``mean`` -> ``--aggregation mean``); a part registered without one (the ``branched`` and
``moe`` heads) has no Chemprop counterpart: those models raise :class:`NotExportableError`.

Over 350 lines because the state-dict mapping, the config -> Chemprop TOML flags and
the notes on what Chemprop cannot express (heads, tiers, descriptors) must agree key by key.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch
from chemprop import nn as cnn
from chemprop.models import MPNN
from chemprop.models.utils import save_model
from chemprop.utils.registry import Factory

from admet.config.molecule_features import CHEMPROP_FEATURIZERS, parse_columns
from admet.config.registry import AGGREGATIONS, HEADS, SAMPLERS, sampler_name
from admet.errors import AdmetError
from admet.model.schedule import noam_schedule

if TYPE_CHECKING:
    from admet.config import ChempropConfig
    from admet.model.mpnn import MultitaskMPNN

__all__ = [
    "ExportableModel",
    "NotExportableError",
    "chemprop_train_config",
    "descriptor_flags",
    "head_substitution",
    "save_chemprop",
    "to_chemprop",
    "write_chemprop_config",
]


logger = logging.getLogger(__name__)

# beside the Chemprop copies of a model with molecule descriptors: the flags they need
FEATURES_NOTE = "MOLECULE_FEATURES.txt"


class ExportableModel(Protocol):
    """What the export reads of a trained model (a :class:`~admet.model.model.ChempropModel`):
    its config, task names (the scored target columns; the network may predict auxiliary
    columns after them, see :mod:`admet.config.tiers`) and network. Named by shape, not by
    class, so that the model module may ask this one for its Chemprop copy without an
    import cycle."""

    config: ChempropConfig
    task_names: Sequence[str]

    def _require_trained(self) -> MultitaskMPNN: ...


class NotExportableError(AdmetError):
    """The model's prediction head (``model.ffn_type``) or aggregation has no Chemprop counterpart."""


def _chemprop_head(ffn_type: str) -> str:
    """The Chemprop predictor name the registered head ``ffn_type`` maps to."""
    name = HEADS.part(ffn_type).chemprop
    if name is None:
        exportable = ", ".join(repr(p.name) for p in HEADS.parts() if p.chemprop is not None)
        raise NotExportableError(
            f"model.ffn_type={ffn_type!r} cannot be expressed in Chemprop "
            f"(only {exportable} heads can be exported)"
        )
    return name


def _chemprop_aggregation_name(aggregation: str) -> str:
    """The Chemprop aggregation name (``--aggregation``) the registered ``aggregation`` maps to."""
    name = AGGREGATIONS.part(aggregation).chemprop
    if name is None:
        raise NotExportableError(f"model.aggregation={aggregation!r} has no Chemprop counterpart")
    return name


def _plain(hparams) -> dict:  # type: ignore[no-untyped-def]
    """A module's saved hyperparameters as constructor arguments (without ``cls``)."""
    return {k: v for k, v in dict(hparams).items() if k != "cls"}


def to_chemprop(model: ExportableModel) -> MPNN:
    """A pure-Chemprop ``MPNN`` (in eval mode, on the CPU) with ``model``'s weights and
    target scaler.

    The registered head and aggregation become the Chemprop classes their ``chemprop``
    names pick in Chemprop's ``PredictorRegistry`` and ``AggregationRegistry``, built from
    the saved hyperparameters that class takes; the strict state-dict load refuses a part
    whose weights do not fit its declared counterpart.

    Raises:
        NotExportableError: the head (``model.ffn_type``) or aggregation has no Chemprop
            counterpart.
        RuntimeError: the model is not trained or loaded yet.
    """
    m = model.config.model
    head_cls = cnn.PredictorRegistry[_chemprop_head(m.ffn_type)]
    agg_cls = cnn.AggregationRegistry[_chemprop_aggregation_name(m.aggregation)]
    src = model._require_trained()
    mp = cnn.BondMessagePassing(**_plain(src.message_passing.hparams))
    agg = Factory.build(agg_cls, **_plain(src.agg.hparams))
    pred_src = src.predictor
    crit = pred_src.criterion
    transform = pred_src.output_transform
    # the target columns only: auxiliary columns (data.tier_use) stay out of the copy
    k = len(model.task_names)
    output_transform = (
        cnn.UnscaleTransform(transform.mean[0, :k].tolist(), transform.scale[0, :k].tolist())
        if isinstance(transform, cnn.UnscaleTransform)
        else None
    )
    predictor = Factory.build(
        head_cls,
        **{
            **_plain(pred_src.hparams),
            "n_tasks": k,
            "criterion": type(crit)(task_weights=crit.task_weights.detach().cpu().flatten()[:k].clone()),
            "output_transform": output_transform,
        },
    )
    x_transform = src.X_d_transform
    out = MPNN(
        mp,
        agg,
        predictor,
        X_d_transform=(
            cnn.ScaleTransform(x_transform.mean[0].tolist(), x_transform.scale[0].tolist())
            if isinstance(x_transform, cnn.ScaleTransform)
            else None
        ),
        batch_norm=isinstance(src.bn, torch.nn.BatchNorm1d),
        metrics=None,  # Chemprop's defaults: its predictor's metric (MSE), then the criterion
        warmup_epochs=src.warmup_epochs,
        init_lr=src.init_lr,
        max_lr=src.max_lr,
        final_lr=src.final_lr,
    )
    out.load_state_dict(_target_columns(src, k), strict=True)
    return out.eval()


def _target_columns(src: MultitaskMPNN, k: int) -> dict[str, torch.Tensor]:
    """``src``'s state dict on the CPU with the head's outputs cut to the first ``k``
    columns (the target columns; unchanged when the network predicts no others): the last
    linear layer's rows and the per-task weights of the criterion and metrics and the
    target scaler."""
    state = {name: v.detach().cpu() for name, v in src.state_dict().items()}
    n = int(src.predictor.n_tasks)
    if k >= n:
        return state
    last = [name for name, mod in src.predictor.named_modules() if isinstance(mod, torch.nn.Linear)][-1]
    for name in (f"predictor.{last}.weight", f"predictor.{last}.bias"):
        state[name] = state[name][:k].clone()
    for name, value in state.items():
        per_task = name.startswith(("predictor.criterion.", "predictor.output_transform.", "metrics."))
        if per_task and value.ndim and value.shape[-1] == n:
            state[name] = value[..., :k].clone()
    return state


def save_chemprop(model: ExportableModel, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` as Chemprop saves models (``chemprop.models.utils.save_model``, the
    task names as output columns), for ``chemprop predict --model-paths`` and
    ``MPNN.load_from_file``.

    Raises:
        NotExportableError: the head or aggregation has no Chemprop counterpart (nothing
            is written).
    """
    mpnn = to_chemprop(model)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(out, mpnn, list(model.task_names))
    note = descriptor_flags(model.config.data.molecule_features)
    if note is not None:
        (out.parent / FEATURES_NOTE).write_text(note + "\n")
        logger.warning("Chemprop copy %s: %s (see %s)", out.name, note.splitlines()[0], FEATURES_NOTE)
    return out


def descriptor_flags(names: Sequence[str]) -> str | None:
    """What ``chemprop predict``/``train`` needs besides the model to compute the same
    molecule descriptors as ``data.molecule_features`` (None without any): the first line
    says it, the rest how. Chemprop puts ``--descriptors-path`` values first, then the
    ``--molecule-featurizers`` blocks in order; ours follow the config's order, so
    Chemprop's featurizers can be named only when they come after every entry it cannot
    compute (``minimol``, ``columns:``); otherwise every block goes in the file."""
    if not names:
        return None
    own = [n in CHEMPROP_FEATURIZERS for n in names]
    first_own = own.index(True) if any(own) else len(names)
    by_name = all(own[first_own:])
    file_part = list(names[:first_own]) if by_name else list(names)
    flag_part = list(names[first_own:]) if by_name else []
    lines = [
        "This model uses molecule descriptors (data.molecule_features = "
        f"{list(names)}): chemprop predict needs "
        + " and ".join(
            (["--descriptors-path"] if file_part else []) + (["--molecule-featurizers"] if flag_part else [])
        )
        + " to reproduce its predictions.",
    ]
    if flag_part:
        lines.append(f"  --molecule-featurizers {' '.join(flag_part)}")
    if file_part:
        lines.append(
            "  --descriptors-path FILE.npz: one row per input molecule, the raw (unscaled) values of "
            + ", then ".join(
                f"columns {', '.join(parse_columns(n) or [])}" if parse_columns(n) else n for n in file_part
            )
            + " side by side (python -m admet.model predict computes them itself)"
        )
    lines.append(
        "  The descriptor scaler of the training fold is inside the model (X_d_transform); "
        "computed NaN values count as 0 as in Chemprop, values beyond +/-1e30 are clipped to it, "
        "and an empty columns: cell (data.descriptor_missing: mean) is the training mean "
        "(X_d_transform.mean), which the file must hold instead."
    )
    return "\n".join(lines)


def _toml(value: object) -> str:
    """A TOML value that configargparse's default config parser reads the same way."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    return json.dumps(str(value))


def head_substitution(config: ChempropConfig) -> str | None:
    """What Chemprop's plain ``RegressionFFN`` stands in for when ``model.ffn_type`` has no
    Chemprop counterpart (one line), or None for a head that has one."""
    m = config.model
    if HEADS.part(m.ffn_type).chemprop is not None:
        return None
    layers, width = _substitute_ffn(config)
    if m.ffn_type == "branched":
        was = (
            f"a shared trunk ({m.trunk_n_layers} x {m.trunk_hidden_dim}) and one "
            f"{m.num_layers}-layer head of width {m.hidden_dim} per task"
        )
    elif m.ffn_type == "moe":
        was = f"{m.n_experts} experts of {m.num_layers} x {m.hidden_dim} with a softmax gate"
    else:
        was = f"a head of {m.num_layers} x {m.hidden_dim}"
    return (
        f"model.ffn_type={m.ffn_type!r} ({was}) -> Chemprop's shared RegressionFFN of "
        f"{layers} hidden layer(s) x {width}"
    )


def _substitute_ffn(config: ChempropConfig) -> tuple[int, int]:
    """Chemprop FFN depth and width for a head it cannot express: the branched head's trunk
    and task head stacked (the same depth from embedding to output, one shared width), or
    one expert of a mixture."""
    m = config.model
    if m.ffn_type == "branched":
        return m.trunk_n_layers + m.num_layers, m.hidden_dim
    return m.num_layers, m.hidden_dim


def chemprop_train_config(config: ChempropConfig, substitute_head: bool = False) -> str:
    """The TOML ``chemprop train --config-path`` reads for ``config``'s model and
    optimisation settings (data path and output folder come on the command line), with a
    comment block naming what Chemprop cannot express.

    ``substitute_head``: a head Chemprop cannot express (``branched``, ``moe``) becomes
    Chemprop's plain FFN (:func:`head_substitution` says how, and the comment block too)
    instead of an error; used to run our tuned settings through Chemprop's own training.

    Raises:
        NotExportableError: the head has no Chemprop counterpart and not
            ``substitute_head``, or the aggregation has none.
    """
    m, opt, js = config.model, config.optimization, config.joint_sampling
    schedule = noam_schedule(opt)  # the one training follows
    substitution = head_substitution(config) if substitute_head else None
    if substitution is None:
        _chemprop_head(m.ffn_type)
    ffn_layers, ffn_width = _substitute_ffn(config) if substitution else (m.num_layers, m.hidden_dim)
    values: dict[str, object] = {
        "smiles-columns": [config.data.smiles_col],
        "target-columns": list(config.data.target_cols),
        "task-type": "regression",
        "multi-hot-atom-featurizer-mode": "V2",
        "message-hidden-dim": [m.message_hidden_dim],
        "depth": [m.depth],
        "dropout": float(m.dropout),
        "aggregation": _chemprop_aggregation_name(m.aggregation),
        "aggregation-norm": 100.0,  # Chemprop's NormAggregation default, as ours
        "activation": m.activation.upper(),
        "ffn-hidden-dim": [ffn_width],
        "ffn-num-layers": ffn_layers,
        "batch-norm": bool(m.batch_norm),
        "loss-function": opt.criterion,
        "batch-size": opt.batch_size,
        "epochs": schedule.max_epochs,
        "warmup-epochs": schedule.warmup_epochs,  # clamped as in training
        "init-lr": float(schedule.init_lr),
        "max-lr": float(schedule.max_lr),
        "final-lr": float(schedule.final_lr),
        "patience": opt.patience,
        "pytorch-seed": opt.seed,
    }
    if opt.task_weights is not None:
        values["task-weights"] = [float(w) for w in opt.task_weights]
    features = list(config.data.molecule_features)
    if features and all(n in CHEMPROP_FEATURIZERS for n in features):
        values["molecule-featurizers"] = features
    ensemble = getattr(config, "ensemble", None)
    lines = [
        "# Chemprop CLI config: chemprop train --config-path THIS.toml -i TRAIN.csv -o OUT_DIR",
        "# Written by admet from a run config; command-line options override these values.",
        "#",
        "# Not expressible in Chemprop (its training differs from ours here):",
        f"#   joint sampling (joint_sampling.enabled={js.enabled}): task oversampling "
        f"alpha={js.task_oversampling.alpha}, composition_mode={js.composition_mode!r}",
        f"#   quality curriculum (joint_sampling.curriculum.enabled={js.curriculum.enabled}, "
        f"qualities={list(js.curriculum.qualities)}): Chemprop samples uniformly",
        "#   early stopping and best checkpoint on val/mae_macro (original units, mean over tasks);",
        "#     Chemprop tracks --tracking-metric (default val_loss, on standardised targets)",
        f"#   data.split={config.data.split!r} held-out fold (1/{config.data.n_folds}); "
        "Chemprop splits train/val/test by --split and --split-sizes",
    ]
    if config.data.tier_use:
        lines.append(
            f"#   quality tier use data.tier_use={dict(config.data.tier_use)}: Chemprop trains on the "
            "table it is given (auxiliary <task>_<tier> columns are not in target-columns)"
        )
    if opt.validation_qualities is not None:
        lines.append(
            f"#   validation on tiers {list(opt.validation_qualities)} "
            "(optimization.validation_qualities): Chemprop validates on every row"
        )
    sampler = sampler_name(config)
    if js.sampler is not None and SAMPLERS.part(sampler).chemprop is None:
        lines.append(f"#   batch sampler joint_sampling.sampler={sampler!r}: Chemprop shuffles uniformly")
    if substitution:
        lines.append(f"#   substituted: {substitution}")
    if features and "molecule-featurizers" not in values:
        lines.append(
            f"#   data.molecule_features={features}: give --descriptors-path (and --molecule-featurizers); "
            "see descriptor_flags in admet.model.chemprop_export"
        )
    if ensemble is not None:
        lines.append(
            f"#   ensemble of {ensemble.n_members} cross-validation members on "
            f"{ensemble.split!r} folds; Chemprop's --ensemble-size trains members on one split"
        )
    if m.batch_norm:
        lines.append(
            "#   with batch-norm Chemprop drops the last incomplete batch of training and validation"
            " (a validation set smaller than batch-size is empty)"
        )
    lines.append("")
    lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def write_chemprop_config(
    config: ChempropConfig, path: str | os.PathLike[str], header: str = "", substitute_head: bool = False
) -> Path:
    """Write :func:`chemprop_train_config` to ``path`` (``header``: extra comment lines
    first, each starting with ``#``). Nothing is written when the head is not exportable
    and not ``substitute_head``."""
    text = chemprop_train_config(config, substitute_head=substitute_head)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + text)
    return out
