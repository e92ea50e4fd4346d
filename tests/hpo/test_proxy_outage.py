"""A storage outage longer than the retry window in the middle of a trial: the worker waits
it out (as it does the database's) and the interrupted trial is failed and queued again
exactly once, whether or not Optuna's own FAIL reached the storage.

The proxy's failure is injected as the ``grpc.RpcError`` the proxy client raises once its
retry window is spent (``_grpc_client._retrying_channel`` returns the last UNAVAILABLE,
CANCELLED or DEADLINE_EXCEEDED outcome): the 16-worker soak saw five workers exit on it
(``benchmarks/results/hpo_soak.md``). The end-to-end run with a real proxy stopped for
longer than the window is in ``test_proxy_restart.py``.
"""

from __future__ import annotations

import json
from collections import Counter

import grpc
import optuna
import pytest
from optuna.trial import TrialState

from admet.hpo.runner import run_worker
from admet.hpo.spec import load_study_spec
from admet.hpo.storage import OUTAGE_ERRORS, is_outage, until_reachable
from admet.hpo.storage._retry import connection_lost


class _ProxyError(grpc.RpcError):
    """What Optuna's proxy client raises for a failed call: an RpcError with a status code."""

    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(f"<_InactiveRpcError status = {code}>")
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


@pytest.mark.parametrize(
    ("code", "away"),
    [
        (grpc.StatusCode.UNAVAILABLE, True),
        (grpc.StatusCode.CANCELLED, True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, True),
        (grpc.StatusCode.NOT_FOUND, False),
        (grpc.StatusCode.UNKNOWN, False),  # the proxy answered: its storage call raised
    ],
)
def test_a_proxy_error_is_an_outage_only_when_the_proxy_is_away(code, away):
    exc = _ProxyError(code)
    assert connection_lost(exc) is away
    assert is_outage(exc) is away
    try:  # further down the chain, as Optuna's _run_trial re-raises it from its tell
        raise RuntimeError("tell failed") from exc
    except RuntimeError as outer:
        assert connection_lost(outer) is away


def test_until_reachable_waits_out_the_proxy_and_raises_what_is_not_an_outage(monkeypatch):
    monkeypatch.setattr("admet.hpo.storage._retry.time.sleep", lambda s: None)
    calls = iter(
        [_ProxyError(grpc.StatusCode.UNAVAILABLE)] * 3 + [_ProxyError(grpc.StatusCode.DEADLINE_EXCEEDED)]
    )

    def call() -> str:
        err = next(calls, None)
        if err is not None:
            raise err
        return "back"

    assert until_reachable(call) == "back"
    with pytest.raises(grpc.RpcError):
        until_reachable(lambda: (_ for _ in ()).throw(_ProxyError(grpc.StatusCode.NOT_FOUND)))
    assert issubclass(_ProxyError, OUTAGE_ERRORS)


class _CheapObjective:
    """Draws one parameter, reports two steps, returns; the first report of trial
    ``fail_in`` raises the proxy error once (the runner's contract: ``worker``,
    ``current_trial``)."""

    def __init__(self, fail_in: int) -> None:
        self.worker = "test-worker"
        self.current_trial: int | None = None
        self.fail_in = fail_in
        self.raised = 0

    def __call__(self, trial: optuna.Trial) -> float:
        self.current_trial = trial.number
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(2):
            if trial.number == self.fail_in and not self.raised:
                self.raised += 1
                raise _ProxyError(grpc.StatusCode.DEADLINE_EXCEEDED)
            trial.report(x + step, step)
        return x


def _retries(study: optuna.Study) -> Counter[int]:
    """How many times each failed trial was queued again (Optuna's ``failed_trial``)."""
    return Counter(
        t.system_attrs["failed_trial"]
        for t in study.get_trials(deepcopy=False)
        if "failed_trial" in t.system_attrs
    )


@pytest.mark.parametrize("fail_landed", [True, False], ids=["fail-recorded", "tell-lost-too"])
def test_a_trial_cut_by_a_long_outage_is_failed_and_retried_once(tmp_path, monkeypatch, fail_landed):
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = load_study_spec("joint_sampling", ["n_trials=3", "mlflow.enabled=false", "name=outage"])
    monkeypatch.setattr("admet.hpo.storage._retry.time.sleep", lambda s: None)
    objective = _CheapObjective(fail_in=1)
    if not fail_landed:
        # the proxy is still away when Optuna tells the trial FAIL: the trial stays RUNNING
        from admet.hpo.storage import ResilientRDBStorage

        real = ResilientRDBStorage.set_trial_state_values
        lost = {"n": 0}

        def set_state(self, trial_id, state, values=None):  # type: ignore[no-untyped-def]
            if state == TrialState.FAIL and objective.raised and not lost["n"]:
                lost["n"] += 1
                raise _ProxyError(grpc.StatusCode.UNAVAILABLE)
            return real(self, trial_id, state, values)

        monkeypatch.setattr(ResilientRDBStorage, "set_trial_state_values", set_state)

    result = run_worker(spec, url, mlflow_enabled=False, progress=False, objective=objective)

    study = optuna.load_study(study_name="outage", storage=url)
    states = Counter(t.state for t in study.trials)
    assert objective.raised == 1
    assert result.finished_in_study == 3 and states[TrialState.COMPLETE] == 3, states
    assert states[TrialState.FAIL] == 1 and not states[TrialState.RUNNING] and not states[TrialState.WAITING]
    failed = next(t for t in study.trials if t.state == TrialState.FAIL)
    assert failed.number == 1
    assert _retries(study) == Counter({1: 1})  # queued exactly once
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") == 1)
    assert retry.state == TrialState.COMPLETE and retry.params == failed.params  # same parameters
    if not fail_landed:  # the worker failed it itself
        assert lost["n"] == 1
        assert failed.user_attrs["fail_reason"] == "study storage unreachable"
    json.dumps([t.number for t in study.trials])  # the study reads back whole


def test_a_trial_another_worker_already_retried_is_not_queued_twice(tmp_path):
    """The outage outlasted the grace period: another worker failed this worker's trial as
    stale and queued its retry; this worker, back, queues nothing more."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    from admet.hpo.runner import _retry_after_outage

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}")
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    study.tell(trial, state=TrialState.FAIL)
    RetryHeartbeatStaleTrialCallback(max_retry=2)(study, study.trials[0])  # the other worker's retry
    _retry_after_outage(study, trial.number, max_retry=2)
    assert _retries(study) == Counter({0: 1})
    _retry_after_outage(study, None, max_retry=2)  # no trial of this worker: nothing
    assert len(study.trials) == 2
