"""The study-wide trial budget that all workers share.

``n_trials`` counts finished trials (COMPLETE or PRUNED) over every worker. A worker runs
one trial at a time and re-checks the budget in between (:func:`next_step`), so the
overshoot is at most the number of workers that were mid-trial. A trial that starts after
earlier finished or running trials already took the budget (two workers checked at the
same moment) is refused by :func:`claim` and ends as FAIL, counted by no one.
"""

from __future__ import annotations

from typing import Literal

import optuna
from optuna.trial import TrialState

from admet.errors import BudgetTakenError

__all__ = ["BUDGET_TAKEN", "FINISHED", "budget", "claim", "next_step"]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# fail_reason of a trial refused by claim(): a lost race, not a failure of the worker
BUDGET_TAKEN = "study budget already taken by other workers"


def budget(study: optuna.Study) -> dict[str, int]:
    """Trial counts by state name, plus ``FINISHED`` (COMPLETE + PRUNED)."""
    counts = {state.name: 0 for state in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] += 1
    counts["FINISHED"] = counts["COMPLETE"] + counts["PRUNED"]
    return counts


def next_step(counts: dict[str, int], n_trials: int) -> Literal["done", "wait", "run"]:
    """What a worker does next: the budget is spent (``done``); only running trials could
    still spend it, so wait for them to finish or go stale (``wait``); or start a trial."""
    if counts["FINISHED"] >= n_trials:
        return "done"
    if counts["FINISHED"] + counts["RUNNING"] >= n_trials and counts["WAITING"] == 0:
        return "wait"
    return "run"


def claim(trial: optuna.Trial, n_trials: int) -> None:
    """Refuse ``trial`` if the trials numbered before it already take the whole budget.

    Raises:
        BudgetTakenError: the budget was taken by earlier finished or running trials; the
            trial's ``fail_reason`` says so.
    """
    earlier = trial.study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    )
    if sum(t.number < trial.number for t in earlier) >= n_trials:
        trial.set_user_attr("fail_reason", BUDGET_TAKEN)
        raise BudgetTakenError(f"trial {trial.number}: study budget already taken")
