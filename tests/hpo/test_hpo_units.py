"""Units of the HPO service: pruning reports, storage retries, direction checks, legacy mapping."""

from __future__ import annotations

import io
import logging
import warnings

import optuna
import pytest
from conftest import tiny_overrides
from sqlalchemy.exc import OperationalError

from admet.config import load_config
from admet.data.training import holdout_split, load_training_data
from admet.errors import BudgetTakenError, ConfigError
from admet.hpo.objective import TrialPruningCallback
from admet.hpo.runner import _quiet_lost_races, create_or_load_study
from admet.hpo.spec import load_study_spec
from admet.hpo.storage._retry import retrying
from admet.model.model import ChempropModel


@pytest.mark.slow
def test_pruning_callback_reports_each_epochs_own_value(synthetic_csv):
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    model = ChempropModel.from_config({}, tiny_overrides(synthetic_csv))
    data = load_training_data(model.config)
    tr, va = holdout_split(data, 5, "random", 0)
    model.fit(data.subset(tr), data.subset(va), callbacks=[TrialPruningCallback(trial)])
    frozen = study.trials[0]
    reported = [frozen.intermediate_values[e] for e in sorted(frozen.intermediate_values)]
    assert sorted(frozen.intermediate_values) == [0, 1, 2]
    assert reported == pytest.approx([row["val/mae_macro"] for row in model.history])


@pytest.mark.slow
def test_pruning_callback_prunes_when_the_pruner_says_so(synthetic_csv):
    class Always(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    study = optuna.create_study(pruner=Always())
    model = ChempropModel.from_config({}, tiny_overrides(synthetic_csv))
    data = load_training_data(model.config)
    tr, va = holdout_split(data, 5, "random", 0)
    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 0"):
        model.fit(data.subset(tr), data.subset(va), callbacks=[TrialPruningCallback(study.ask())])


@pytest.mark.slow
def test_stacked_members_report_and_prune_like_one_by_one(synthetic_csv):
    """With ``ensemble.batched`` the trial hears member 0's epochs, as from the callback,
    and a prune ends the stacked fit."""
    from admet.model.ensemble import ChempropEnsemble

    overrides = tiny_overrides(synthetic_csv, ensemble__batched=True)
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    pruning = TrialPruningCallback(study.ask())
    ens = ChempropEnsemble.from_config({"ensemble": {"n_members": 2, "split": "random"}}, overrides)
    ens.fit(on_member_epoch=lambda m, epoch, scalars: pruning.report(epoch, scalars) if m == 0 else None)
    frozen = study.trials[0]
    reported = [frozen.intermediate_values[e] for e in sorted(frozen.intermediate_values)]
    assert reported == pytest.approx([row["val/mae_macro"] for row in ens.members[0].history])
    assert pruning.epochs == ens.members[0].epochs_trained

    class Always(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    study = optuna.create_study(pruner=Always())
    pruning = TrialPruningCallback(study.ask())
    ens = ChempropEnsemble.from_config({"ensemble": {"n_members": 2, "split": "random"}}, overrides)
    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 0"):
        ens.fit(on_member_epoch=lambda m, epoch, scalars: pruning.report(epoch, scalars) if m == 0 else None)


class _Flaky:
    url = "postgresql://u@db.example:5432/x"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

        class _Engine:
            def dispose(self) -> None:
                pass

        self.engine = _Engine()

    def call(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            try:
                raise OperationalError("select 1", {}, Exception("server closed the connection"))
            except OperationalError as exc:  # Optuna wraps driver errors like this
                raise optuna.exceptions.StorageInternalError("wrapped") from exc
        return "ok"


def test_storage_calls_are_retried_through_optunas_wrapper(monkeypatch):
    monkeypatch.setattr("admet.hpo.storage._retry.time.sleep", lambda s: None)
    monkeypatch.setenv("ADMET_STORAGE_RETRY_SECONDS", "60")
    flaky = _Flaky(failures=3)
    wrapped = retrying(type(flaky).call)
    assert wrapped(flaky) == "ok" and flaky.calls == 4
    monkeypatch.setenv("ADMET_STORAGE_RETRY_SECONDS", "5")
    never = _Flaky(failures=10**6)
    with pytest.raises(optuna.exceptions.StorageInternalError):
        retrying(type(never).call)(never)


def test_a_lost_connection_further_down_the_chain_is_a_lost_connection():
    """Optuna's fallback after a first error fails with PendingRollbackError in the same
    session (a PostgreSQL shutdown under the proxy): retried, not passed to the worker."""
    from sqlalchemy.exc import IntegrityError, PendingRollbackError

    from admet.hpo.storage._retry import connection_lost

    def wrapped(error: BaseException, during: BaseException | None = None) -> BaseException:
        """Optuna's StorageInternalError from ``error``, raised while handling ``during``."""
        error.__context__ = during
        outer = optuna.exceptions.StorageInternalError("An exception is raised during the commit")
        outer.__cause__ = error
        return outer

    shutdown = OperationalError(
        "commit", {}, Exception("terminating connection due to administrator command")
    )
    pending = PendingRollbackError("Can't reconnect until invalid transaction is rolled back")
    assert connection_lost(wrapped(pending, during=shutdown))
    assert not connection_lost(wrapped(PendingRollbackError("rolled back for another reason")))
    duplicate = IntegrityError("insert", {}, Exception("duplicate key value violates unique constraint"))
    assert not connection_lost(wrapped(duplicate))


def test_changed_directions_are_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = load_study_spec("joint_sampling")
    create_or_load_study(spec, url)
    spec.objectives, spec.directions = ["cv_mae_macro", "sparse_tasks_mae"], ["minimize", "minimize"]
    with pytest.raises(ConfigError, match="use a new study name"):
        create_or_load_study(spec, url)


def test_legacy_curriculum_only_keeps_curriculum_only_sampling():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        cfg = load_config({"curriculum": {"enabled": True, "qualities": ["high", "medium"]}})
        both = load_config(
            {
                "curriculum": {"enabled": True, "qualities": ["high", "medium"]},
                "optimization": {"task_sampling_alpha": 0.4},
            }
        )
    js = cfg.joint_sampling
    assert js.enabled and js.task_oversampling.alpha == 0.0 and js.composition_mode == "multiplicative"
    assert both.joint_sampling.task_oversampling.alpha == 0.4
    assert both.joint_sampling.composition_mode == "two_stage"
    with (
        pytest.raises(ConfigError, match=r"conflicts with joint_sampling\.enabled=false"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", DeprecationWarning)
        load_config({"curriculum": {"enabled": True}, "joint_sampling": {"enabled": False}})


def test_a_trial_that_lost_the_budget_race_is_logged_in_one_line_without_traceback():
    from optuna.study._optimize import _log_failed_trial

    _quiet_lost_races()
    _quiet_lost_races()  # idempotent
    target = logging.getLogger("optuna.study._optimize")
    assert sum(type(f).__name__ == "_LostRaceWithoutTraceback" for f in target.filters) == 1
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    target.addHandler(handler)
    try:
        for error in (BudgetTakenError("trial 3: study budget already taken"), ValueError("a real bug")):
            try:
                raise error
            except Exception as exc:
                _log_failed_trial(3, {}, repr(exc), exc_info=(type(exc), exc, exc.__traceback__))
    finally:
        target.removeHandler(handler)
    lost, bug = out.getvalue().split("Trial 3 failed with value None.")[:2]
    assert "study budget already taken" in lost and "Traceback" not in lost
    assert "Traceback" in bug and "a real bug" in bug  # other failures keep theirs


@pytest.mark.slow
@pytest.mark.parametrize("batched", [False, True])
def test_worker_says_which_member_and_epoch_a_trial_is_on(synthetic_csv, tmp_path, caplog, batched):
    """Off a terminal, the worker logs one status line per member epoch from the trial's
    start on: trial number, member, epoch e/E and the validation value. With stacked
    members (ensemble.batched) the trial also reports its epochs to the pruner."""
    from admet.hpo.runner import run_worker

    spec = load_study_spec(
        "joint_sampling",
        [
            "n_trials=1",
            f"data.train_file={synthetic_csv}",
            "data.target_cols=[logP, TPSA, MW]",
            "data.featurization_cache_dir=null",
            "ensemble.split=random",
            "ensemble.n_members=2",
            f"ensemble.batched={str(batched).lower()}",
            "optimization.max_epochs=2",
            "model.depth=2",
            "model.message_hidden_dim=16",
            "model.hidden_dim=16",
        ],
    )
    with caplog.at_level(logging.INFO, logger="admet.hpo.runner"):
        run_worker(spec, f"sqlite:///{tmp_path / 's.db'}", mlflow_enabled=False, progress=False)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("trial 0 · ")]
    assert "starting" in lines[0]
    epochs = [line for line in lines if " · epoch " in line]
    trial = optuna.load_study(study_name="joint_sampling", storage=f"sqlite:///{tmp_path / 's.db'}").trials[0]
    n_epochs = trial.user_attrs["epochs_trained"]
    assert len(epochs) == n_epochs  # one line per member epoch
    assert any("member 2" in line and "epoch 1/2 · val/mae_macro 0." in line for line in epochs)
    # member 0's epochs reached the pruner, stacked or not
    assert sorted(trial.intermediate_values) == list(range(len(trial.intermediate_values)))
    assert len(trial.intermediate_values) >= 1


# Finished members are cached on disk under config_hash: its value for a given config
# must never change, or a retried trial retrains members it already has. These values
# are what the code gave before the config was built once per trial.
PINNED_HASH_CONFIG = (
    {
        "ensemble": {"n_members": 2, "n_folds": 3},
        "data": {"target_cols": ["HLM", "Sol"], "max_molecules": 40},
    },
    [
        "model.depth=4",
        "optimization.init_lr=1",
        "joint_sampling.enabled=true",
        "joint_sampling.curriculum.enabled=true",
        "joint_sampling.curriculum.phase_proportions={warmup: [0.8, 0.15, 0.05], expand: [0.6, 0.3, 0.1],"
        " robust: [0.5, 0.3, 0.2], polish: [0.7, 0.2, 0.1]}",
    ],
)


def test_config_hash_of_a_known_config_never_changes():
    from admet.hpo.objective import config_hash

    assert config_hash(load_config({"ensemble": {"n_members": 3}})) == "1bf75fc9e806e326"
    assert config_hash(load_config(*PINNED_HASH_CONFIG)) == "8e1953a597a05f94"


def test_a_trial_config_is_the_base_config_with_the_sampled_values_hashed_like_its_dict():
    from admet.config import config_hash, config_to_dict

    base = load_config(*PINNED_HASH_CONFIG)
    cfg = load_config(base, {"model.depth": 3, "joint_sampling.task_oversampling.alpha": 0.25})
    assert (cfg.model.depth, cfg.joint_sampling.task_oversampling.alpha, base.model.depth) == (3, 0.25, 4)
    assert config_hash(config_to_dict(base)) == config_hash(base) == "8e1953a597a05f94"
    with pytest.raises(ConfigError, match=r"did you mean 'model\.depth'"):
        load_config(base, {"model.dpeth": 3})
