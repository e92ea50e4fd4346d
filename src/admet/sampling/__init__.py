"""Sampling layer: which training molecules each epoch draws.

Samplers are plain ``torch.utils.data.Sampler`` objects over a multi-task target matrix
(numpy and torch only, no Lightning), as Chemprop keeps its samplers in ``chemprop.data``:

* :class:`JointSampler`: task oversampling x quality curriculum in one exact distribution;
* :class:`CurriculumState`: the curriculum's phase and the rule that advances it;
* :class:`TaskAwareSampler`, :class:`DynamicCurriculumSampler`: the original project's
  samplers as exact special cases of ``JointSampler``.
"""

from admet.sampling.curriculum import CurriculumState
from admet.sampling.joint import COMPOSITION_MODES, JointSampler
from admet.sampling.legacy import DynamicCurriculumSampler, TaskAwareSampler

__all__ = [
    "COMPOSITION_MODES",
    "CurriculumState",
    "DynamicCurriculumSampler",
    "JointSampler",
    "TaskAwareSampler",
]
