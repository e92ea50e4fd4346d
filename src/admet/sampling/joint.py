"""JointSampler: task oversampling and a quality curriculum in one exact distribution.

Notation: N molecules, T tasks, S_t the molecules labelled for task t, n_t = |S_t|,
q_i the quality of molecule i.

* Task weights: p_t proportional to n_t^(-alpha) over tasks with labels. In
  ``two_stage`` mode p_t is the probability of picking task t, so alpha = 0 already
  picks tasks uniformly and alpha = 1 favours rare tasks (p_t ~ 1/n_t); in
  ``multiplicative`` mode a task's share of draws grows like n_t^(1 - alpha), so alpha = 0
  follows the label counts and alpha = 1 equalises tasks. The study searches alpha
  jointly with the mode for this reason.
* Curriculum weights: with ``count_normalize`` c_i = pi_{q_i} / m_{q_i}, where pi are the
  current phase's proportions renormalised over the qualities present and m_q counts the
  molecules of quality q; without it c_i = pi_{q_i}; without a curriculum c_i = 1. The
  expected share of draws per quality equals pi exactly when every molecule is labelled
  and task weights are equal (``multiplicative`` with alpha = 0, the legacy curriculum
  sampler); otherwise task weighting shifts it (``quality_share`` in the statistics
  reports the realised value).
* ``two_stage``: P(i) = sum_{t: i in S_t} p_t c_i / sum_{j in S_t} c_j (pick a task, then
  a molecule of it; tasks whose molecules all have zero weight are dropped).
* ``multiplicative``: P(i) proportional to c_i max_{t: i in S_t} n_t^(-alpha) (the
  molecule's rarest task decides).

Unlabelled molecules get P(i) = 0. Everything is vectorised over molecules (a loop over
the T tasks only); P is cached per curriculum phase, so an epoch costs one multinomial
draw of ``num_samples`` indices.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from admet.config.schema import COMPOSITION_MODES, InvalidValue, check_num_samples, check_task_alpha
from admet.sampling.curriculum import CurriculumState

__all__ = ["COMPOSITION_MODES", "JointSampler"]

logger = logging.getLogger(__name__)


def _as_targets(targets: Any) -> np.ndarray:
    if isinstance(targets, torch.Tensor):
        targets = targets.detach().cpu().numpy()
    arr = np.asarray(targets)
    if arr.ndim != 2:
        raise ValueError(f"targets must be a 2-D (molecules x tasks) array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"targets must be a float array with NaN for missing labels, got {arr.dtype}")
    return arr


class JointSampler(Sampler[int]):
    """Draw training indices with replacement from the joint task x quality distribution.

    Args:
        targets: (N, T) float array; NaN marks a missing label.
        quality_labels: one quality label per molecule (required with a curriculum).
        curriculum_state: the curriculum whose current phase sets the quality shares;
            re-read at the start of every epoch.
        task_alpha: task oversampling exponent; outside [0, 1] warns, NaN/inf is an error.
        composition_mode: ``"two_stage"`` or ``"multiplicative"``.
        num_samples: draws per epoch (default N).
        seed: base seed; epoch e uses ``seed + e`` when ``increment_seed_per_epoch``.
        increment_seed_per_epoch: vary the draw across epochs.
        log_weight_stats: log :meth:`get_weight_statistics` at the start of every epoch.
        count_normalize: see the module docstring.
        task_names: names for logs and statistics (default ``task_0`` ...).

    Example:
        Three molecules, two tasks; task 0 has three labels, task 1 one. With
        ``alpha = 1`` in ``two_stage`` mode task t is picked with probability proportional
        to 1/n_t (1/4 and 3/4), then one of its molecules uniformly; molecule 2, the only
        one labelled for task 1, gets 3/4 + 1/4 * 1/3:

        >>> import numpy as np
        >>> Y = np.array([[0.1, np.nan], [0.2, np.nan], [0.3, 1.0]])
        >>> sampler = JointSampler(Y, task_alpha=1.0, seed=0, log_weight_stats=False)
        >>> np.round(sampler.probabilities(), 4).tolist()
        [0.0833, 0.0833, 0.8333]
        >>> epoch = sampler.draw_epoch()  # one multinomial draw of len(sampler) indices
        >>> epoch.shape, sampler.epoch
        (torch.Size([3]), 1)

        In a ``DataLoader``, pass it as ``sampler=``; :func:`admet.data.packed_dataloader`
        takes the whole epoch at once.
    """

    def __init__(
        self,
        targets: Any,
        quality_labels: Sequence[str] | None = None,
        curriculum_state: CurriculumState | None = None,
        task_alpha: float = 0.0,
        composition_mode: str = "two_stage",
        num_samples: int | None = None,
        seed: int = 42,
        increment_seed_per_epoch: bool = True,
        log_weight_stats: bool = True,
        *,
        count_normalize: bool = True,
        task_names: Sequence[str] | None = None,
    ) -> None:
        Y = _as_targets(targets)
        self._mask = np.isfinite(Y)
        self.n_molecules, self.n_tasks = Y.shape
        self.task_names = list(task_names) if task_names else [f"task_{t}" for t in range(self.n_tasks)]
        if len(self.task_names) != self.n_tasks:
            raise ValueError(f"{len(self.task_names)} task names for {self.n_tasks} target columns")
        if composition_mode not in COMPOSITION_MODES:
            raise ValueError(
                f"unknown composition_mode {composition_mode!r}; valid: {', '.join(COMPOSITION_MODES)}"
            )
        self.composition_mode = composition_mode
        try:
            alpha = check_task_alpha(task_alpha)  # the loader's rule for the config key
        except InvalidValue as exc:
            raise ValueError(f"task_alpha {exc}") from None
        if not 0.0 <= alpha <= 1.0:
            logger.warning("task_alpha=%s is outside [0, 1]; sampling proceeds with it", alpha)
        self.task_alpha = alpha
        try:
            draws = check_num_samples(num_samples)  # the loader's rule for the config key
        except InvalidValue as exc:
            raise ValueError(f"num_samples {exc}") from None
        self.num_samples = draws if draws is not None else self.n_molecules
        self.seed = int(seed)
        self.increment_seed_per_epoch = increment_seed_per_epoch
        self.log_weight_stats = log_weight_stats
        self.count_normalize = count_normalize
        self.curriculum_state = curriculum_state
        self._quality_index = self._index_qualities(quality_labels, curriculum_state)
        self._epoch = 0
        self._cache_key: tuple | None = None
        self._P: np.ndarray | None = None

        self.task_counts = self._mask.sum(axis=0)
        for t in np.flatnonzero(self.task_counts == 0):
            logger.warning("task %r has no labels: it gets probability 0", self.task_names[t])
        with np.errstate(divide="ignore"):
            self._task_weights = np.where(self.task_counts > 0, self.task_counts.astype(float) ** -alpha, 0.0)
        self.probabilities()  # validate that something can be drawn

    # -- construction helpers -------------------------------------------------------------

    def _index_qualities(
        self, labels: Sequence[str] | None, state: CurriculumState | None
    ) -> np.ndarray | None:
        if labels is None:
            if state is not None:
                raise ValueError("a curriculum needs quality_labels (one per molecule)")
            return None
        labels = np.asarray(labels, dtype=object)
        if labels.ndim != 1 or len(labels) != self.n_molecules:
            raise ValueError(f"quality_labels has {len(labels)} entries for {self.n_molecules} molecules")
        if state is None:
            return None
        lookup = {q: k for k, q in enumerate(state.qualities)}
        unknown = sorted({str(q) for q in labels if q not in lookup})
        if unknown:
            raise ValueError(
                f"quality label(s) {unknown} unknown to the curriculum (qualities: {state.qualities})"
            )
        return np.fromiter((lookup[q] for q in labels), dtype=np.int64, count=len(labels))

    # -- the distribution -----------------------------------------------------------------

    def _curriculum_weights(self) -> np.ndarray:
        if self.curriculum_state is None or self._quality_index is None:
            return np.ones(self.n_molecules)
        state = self.curriculum_state
        pi = np.array([state.sampling_probs()[q] for q in state.qualities], dtype=float)
        counts = np.bincount(self._quality_index, minlength=len(pi)).astype(float)
        present = counts > 0
        pi = np.where(present, pi, 0.0)
        if pi.sum() > 0:
            pi = pi / pi.sum()
        per_quality = np.divide(pi, counts, out=np.zeros_like(pi), where=present)
        return (per_quality if self.count_normalize else pi)[self._quality_index]

    def _compute(self) -> np.ndarray:
        c = self._curriculum_weights()
        mask = self._mask
        P = np.zeros(self.n_molecules)
        if self.composition_mode == "two_stage":
            denom = np.array([c[mask[:, t]].sum() for t in range(self.n_tasks)])
            weights = np.where(denom > 0, self._task_weights, 0.0)
            dropped = (self._task_weights > 0) & (denom <= 0)
            for t in np.flatnonzero(dropped):
                logger.info("task %r dropped this phase: its molecules all have weight 0", self.task_names[t])
            if weights.sum() > 0:
                p = weights / weights.sum()
                for t in np.flatnonzero(p > 0):
                    P[mask[:, t]] += p[t] / denom[t]
                P *= c
        else:
            w = np.zeros(self.n_molecules)
            for t in np.flatnonzero(self._task_weights > 0):
                np.maximum(w, np.where(mask[:, t], self._task_weights[t], 0.0), out=w)
            P = w * c
        total = P.sum()
        if not total > 0:
            raise ValueError(
                "every molecule has sampling probability 0 (no labelled molecule has a "
                "quality with a positive share in the current phase)"
            )
        return P / total

    def probabilities(self) -> np.ndarray:
        """The exact length-N probability vector for the current curriculum phase."""
        key = None
        if self.curriculum_state is not None:
            key = (self.curriculum_state.phase, tuple(self.curriculum_state.sampling_probs().values()))
        if self._P is None or key != self._cache_key:
            self._P = self._compute()
            self._cache_key = key
        return self._P

    # -- sampling -------------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Draw the next epoch as epoch ``epoch`` (resumed runs, several workers)."""
        self._epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def draw_epoch(self) -> torch.Tensor:
        """The next epoch's ``num_samples`` indices as one int64 tensor (one multinomial
        draw); advances the epoch. Batch loaders take it whole instead of iterating."""
        epoch = self._epoch
        self._epoch += 1
        P = self.probabilities()
        if self.log_weight_stats:
            stats = self.get_weight_statistics()
            logger.info(
                "sampler epoch %d: phase=%s entropy=%.4f normalized=%.4f effective=%.1f task_share=%s",
                epoch,
                stats["phase"],
                stats["entropy"],
                stats["normalized_entropy"],
                stats["effective_samples"],
                {k: round(v, 4) for k, v in stats["task_share"].items()},
            )
        generator = torch.Generator().manual_seed(
            self.seed + epoch if self.increment_seed_per_epoch else self.seed
        )
        return torch.multinomial(torch.from_numpy(P), self.num_samples, replacement=True, generator=generator)

    def __iter__(self) -> Iterator[int]:
        return iter(self.draw_epoch().tolist())

    # -- observability --------------------------------------------------------------------

    def get_weight_statistics(self) -> dict[str, Any]:
        """Summary of the current distribution (logged every epoch).

        Keys: ``min``, ``max``, ``mean`` (of P over all molecules), ``entropy`` (nats, over
        P > 0), ``normalized_entropy`` (entropy / ln #{P > 0}), ``effective_samples``
        (1 / sum P^2), ``n_positive``, ``task_share`` (expected fraction of draws that
        carry each task's label), ``quality_share`` (with a curriculum) and ``phase``.
        """
        P = self.probabilities()
        pos = P[P > 0]
        entropy = float(-(pos * np.log(pos)).sum())
        n_pos = len(pos)
        stats: dict[str, Any] = {
            "min": float(P.min()),
            "max": float(P.max()),
            "mean": float(P.mean()),
            "entropy": entropy,
            "normalized_entropy": entropy / math.log(n_pos) if n_pos > 1 else 1.0,
            "effective_samples": float(1.0 / np.square(P).sum()),
            "n_positive": n_pos,
            "task_share": {name: float(P[self._mask[:, t]].sum()) for t, name in enumerate(self.task_names)},
            "phase": None if self.curriculum_state is None else self.curriculum_state.phase,
        }
        if self.curriculum_state is not None and self._quality_index is not None:
            stats["quality_share"] = {
                q: float(P[self._quality_index == k].sum())
                for k, q in enumerate(self.curriculum_state.qualities)
            }
        return stats
