"""Prediction heads for the multi-task MPNN: Chemprop's FFN, a branched FFN and a mixture
of experts (``model.ffn_type``: ``regression | branched | moe``).

Chemprop's :class:`~chemprop.nn.RegressionFFN` maps the molecule embedding to every task
with one MLP, so all tasks share every hidden unit. Two alternatives give tasks with
different label densities and chemistry more room of their own:

* :class:`BranchedFFN`: a shared trunk (``trunk_n_layers`` layers of width
  ``trunk_hidden_dim``), then one small MLP head per task; task ``t``'s output depends
  only on the trunk and head ``t``.
* :class:`MixtureOfExpertsFFN`: ``n_experts`` full multi-task MLPs and a softmax gate over
  the embedding; the prediction is the gate-weighted sum of the experts' predictions.

Both subclass Chemprop's ``RegressionFFN`` and only replace its ``ffn`` module, so the
criterion (masked, task-weighted loss), the target ``UnscaleTransform`` applied in eval
mode, ``forward``/``train_step`` and the ``input_dim``/``output_dim``/``n_tasks``
properties are Chemprop's own. Saved models hold only a state dict; :func:`build_predictor`
rebuilds the same head from the run config.

Each head is registered in :data:`admet.config.registry.HEADS` under its ``ffn_type``
name; a new head is one class here (or anywhere the model layer imports) decorated with
``@HEADS.register("name", aliases=(...), chemprop=None)``, and the config validation,
legacy aliases, Ray Tune conversion, Chemprop export and ``choices: registered`` in a study
all pick it up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from chemprop import nn as cnn
from chemprop.nn.ffn import MLP
from chemprop.nn.metrics import ChempropMetric
from chemprop.nn.utils import get_activation_function
from chemprop.utils.registry import Factory
from torch import Tensor, nn

from admet.config import ModelConfig
from admet.config.registry import HEADS

__all__ = ["BranchedFFN", "MixtureOfExpertsFFN", "build_predictor"]


class _BranchedNet(nn.Module):
    """Shared trunk (Linear, activation, dropout) x ``trunk_n_layers``, then one MLP per
    task; the per-task outputs are concatenated to ``(batch, n_tasks)``."""

    def __init__(
        self,
        input_dim: int,
        n_tasks: int,
        trunk_hidden_dim: int,
        trunk_n_layers: int,
        hidden_dim: int | Sequence[int],
        n_layers: int,
        dropout: float,
        activation: str | nn.Module,
    ) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.output_dim = n_tasks
        # MLP.build ends on a Linear; the activation and dropout after the trunk's last
        # layer are the head's input nonlinearity.
        self.trunk = nn.Sequential(
            MLP.build(input_dim, trunk_hidden_dim, trunk_hidden_dim, trunk_n_layers - 1, dropout, activation),
            nn.Sequential(get_activation_function(activation), nn.Dropout(dropout)),
        )
        self.heads = nn.ModuleList(
            MLP.build(trunk_hidden_dim, 1, hidden_dim, n_layers, dropout, activation) for _ in range(n_tasks)
        )

    def forward(self, Z: Tensor) -> Tensor:
        H = self.trunk(Z)
        return torch.cat([head(H) for head in self.heads], dim=1)


class _MixtureNet(nn.Module):
    """``n_experts`` multi-task MLPs mixed by a softmax gate over the input."""

    def __init__(
        self,
        input_dim: int,
        n_tasks: int,
        n_experts: int,
        hidden_dim: int | Sequence[int],
        n_layers: int,
        dropout: float,
        activation: str | nn.Module,
    ) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.output_dim = n_tasks
        self.experts = nn.ModuleList(
            MLP.build(input_dim, n_tasks, hidden_dim, n_layers, dropout, activation) for _ in range(n_experts)
        )
        self.gate = nn.Linear(input_dim, n_experts)

    def gate_weights(self, Z: Tensor) -> Tensor:
        """The experts' weights per input, shape ``(batch, n_experts)``, rows summing to 1."""
        return torch.softmax(self.gate(Z), dim=1)

    def forward(self, Z: Tensor) -> Tensor:
        expert_out = torch.stack([expert(Z) for expert in self.experts], dim=1)  # (b, E, T)
        return (self.gate_weights(Z).unsqueeze(-1) * expert_out).sum(dim=1)


# Chemprop's own head, declared as "regression" (its PredictorRegistry name) in the registry.
HEADS.register("regression")(cnn.RegressionFFN)


@HEADS.register("branched")
class BranchedFFN(cnn.RegressionFFN):
    """Chemprop's ``RegressionFFN`` with a shared trunk and one MLP head per task.

    ``hidden_dim``/``n_layers`` size each head (as in Chemprop's FFN), ``trunk_hidden_dim``
    and ``trunk_n_layers`` the trunk.
    """

    def __init__(
        self,
        n_tasks: int = 1,
        input_dim: int = 300,
        hidden_dim: int | Sequence[int] = 300,
        n_layers: int = 1,
        dropout: float = 0.0,
        activation: str | nn.Module = "relu",
        criterion: ChempropMetric | None = None,
        task_weights: Tensor | None = None,
        threshold: float | None = None,
        output_transform: cnn.UnscaleTransform | None = None,
        trunk_n_layers: int = 1,
        trunk_hidden_dim: int = 300,
    ) -> None:
        if trunk_n_layers < 1:
            raise ValueError(f"trunk_n_layers must be >= 1, got {trunk_n_layers}")
        # Chemprop's constructor records the hyperparameters (these two included, they are
        # arguments of this __init__), the criterion and the output transform; its
        # single-MLP ffn is then replaced.
        super().__init__(
            n_tasks,
            input_dim,
            hidden_dim,
            n_layers,
            dropout,
            activation,
            criterion,
            task_weights,
            threshold,
            output_transform,
        )
        self.ffn = _BranchedNet(
            input_dim, n_tasks, trunk_hidden_dim, trunk_n_layers, hidden_dim, n_layers, dropout, activation
        )

    def encode(self, Z: Tensor, i: int) -> Tensor:
        """The shared trunk's representation after its first ``i`` blocks (Chemprop's
        ``MLP`` slicing; ``i=-1``: the trunk before its last activation)."""
        return self.ffn.trunk[0][:i](Z)


@HEADS.register("moe")
class MixtureOfExpertsFFN(cnn.RegressionFFN):
    """Chemprop's ``RegressionFFN`` as a softmax-gated mixture of ``n_experts`` multi-task
    MLPs, each sized by ``hidden_dim``/``n_layers`` as Chemprop's FFN."""

    def __init__(
        self,
        n_tasks: int = 1,
        input_dim: int = 300,
        hidden_dim: int | Sequence[int] = 300,
        n_layers: int = 1,
        dropout: float = 0.0,
        activation: str | nn.Module = "relu",
        criterion: ChempropMetric | None = None,
        task_weights: Tensor | None = None,
        threshold: float | None = None,
        output_transform: cnn.UnscaleTransform | None = None,
        n_experts: int = 4,
    ) -> None:
        if n_experts < 1:
            raise ValueError(f"n_experts must be >= 1, got {n_experts}")
        super().__init__(
            n_tasks,
            input_dim,
            hidden_dim,
            n_layers,
            dropout,
            activation,
            criterion,
            task_weights,
            threshold,
            output_transform,
        )
        self.ffn = _MixtureNet(input_dim, n_tasks, n_experts, hidden_dim, n_layers, dropout, activation)

    def gate_weights(self, Z: Tensor) -> Tensor:
        """The gate's softmax weights over the experts, shape ``(batch, n_experts)``."""
        return self.ffn.gate_weights(Z)

    def encode(self, Z: Tensor, i: int) -> Tensor:
        raise NotImplementedError("a mixture of experts has no single hidden representation to encode")


def build_predictor(
    cfg_model: ModelConfig,
    n_tasks: int,
    input_dim: int,
    criterion: ChempropMetric | None = None,
    output_transform: cnn.UnscaleTransform | None = None,
) -> cnn.RegressionFFN:
    """The prediction head that ``cfg_model.ffn_type`` names, over ``input_dim``-wide
    molecule embeddings.

    The registered class (``regression``: Chemprop's ``RegressionFFN``; ``branched``: a
    :class:`BranchedFFN`; ``moe``: a :class:`MixtureOfExpertsFFN`) is called with the
    arguments its constructor names, as Chemprop's ``Factory.build`` does: ``n_tasks``,
    ``input_dim``, ``hidden_dim``, ``n_layers`` (``model.num_layers``), ``dropout``,
    ``activation``, ``criterion``, ``output_transform``, and any other ``model.*`` field
    by its own name (``n_experts``, ``trunk_n_layers``, ...). ``criterion`` (Chemprop's
    default MSE when None) carries the task weights; ``output_transform`` maps
    standardised predictions back to the targets' units in eval mode.

    Raises:
        ConfigError: ``model.ffn_type`` is not a registered head (one line, the allowed names).

    Example:
        >>> import torch
        >>> from admet.config import ModelConfig
        >>> cfg = ModelConfig(ffn_type="branched", hidden_dim=8, num_layers=1, trunk_hidden_dim=16)
        >>> head = build_predictor(cfg, n_tasks=3, input_dim=32)
        >>> type(head).__name__, head.n_tasks, head.input_dim
        ('BranchedFFN', 3, 32)
        >>> head(torch.zeros(5, 32)).shape
        torch.Size([5, 3])
    """
    cls = HEADS.builder(cfg_model.ffn_type)
    kwargs: dict[str, Any] = {f.name: getattr(cfg_model, f.name) for f in dataclasses.fields(ModelConfig)}
    kwargs.update(
        n_tasks=n_tasks,
        input_dim=input_dim,
        n_layers=cfg_model.num_layers,
        criterion=criterion,
        output_transform=output_transform,
    )
    return Factory.build(cls, **kwargs)  # only the arguments cls's signature names
