"""ChempropModel: real (tiny) Chemprop training on the joint sampler."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from conftest import tiny_overrides
from lightning.pytorch.callbacks import Callback

from admet.data.training import holdout_split, load_training_data
from admet.model.metrics import regression_metrics, task_metrics
from admet.model.model import ChempropModel, TrainingDivergedError, freeze_startup_heap
from admet.sampling import CurriculumState, JointSampler


def _fit(csv, **extra) -> tuple[ChempropModel, object, object]:
    model = ChempropModel.from_config({}, tiny_overrides(csv, **extra))
    data = load_training_data(model.config)
    tr, va = holdout_split(data, 5, "random", 0)
    model.fit(data.subset(tr), data.subset(va))
    return model, data.subset(tr), data.subset(va)


@pytest.fixture(scope="module")
def trained(synthetic_csv):
    return _fit(synthetic_csv)


@pytest.mark.slow
def test_training_records_history_sampler_stats_and_quality_metrics(trained):
    model, _, val = trained
    assert model.epochs_trained == 3
    last = model.history[-1]
    for key in (
        "train_loss_epoch",
        "val_loss",
        "val/mae_macro",
        "val/mae/logP",
        "val/mae/high",
        "val/mae/medium",
        "sampler/entropy",
        "sampler/task_share/MW",
        "curriculum/phase",
    ):
        assert key in last, key
    # the sampler's epoch follows the trainer's: one statistics row per epoch 0, 1, 2
    assert [r["epoch"] for r in model.sampler_history] == [0, 1, 2]
    assert model.sampler_history[0]["phase"] == "warmup"
    assert model.best_score == pytest.approx(min(r["val/mae_macro"] for r in model.history))
    # and independently of the training code: the restored best weights' macro MAE on the
    # validation molecules, computed here with numpy
    assert model.best_score == pytest.approx(_macro_mae(model.predict_array(val.smiles), val.Y), rel=1e-4)


@pytest.mark.slow
def test_deterministic_on_cpu(synthetic_csv, trained):
    model, _, val = trained
    again, _, _ = _fit(synthetic_csv)
    np.testing.assert_array_equal(model.predict_array(val.smiles), again.predict_array(val.smiles))
    different, _, _ = _fit(synthetic_csv, optimization__seed=7)
    assert not np.array_equal(model.predict_array(val.smiles), different.predict_array(val.smiles))


@pytest.mark.slow
def test_a_fit_takes_the_startup_heap_out_of_garbage_collection_once(trained):
    # the module's fixture has fitted: what was alive then is frozen, and stays so
    frozen = gc.get_freeze_count()
    assert frozen > 0
    gc.collect()
    assert gc.get_freeze_count() == frozen
    assert freeze_startup_heap() is False
    assert gc.get_freeze_count() == frozen


@pytest.mark.slow
def test_steps_skip_lightnings_empty_wrappers_yet_count_and_train_as_through_them(synthetic_csv, trained):
    class Steps(Callback):
        """Counts what Lightning's wrappers would report (never through on_before_*)."""

        def on_train_end(self, trainer, pl_module) -> None:
            self.direct = pl_module._direct_steps
            self.global_step = trainer.global_step
            step = pl_module._optimizer_step
            # the direct path calls Adam's fused kernel itself once its state exists
            self.fused_shortcut = step is not None and step._state is pl_module.optimizers().optimizer.state

    class Hooked(Steps):
        """A callback with a per-step hook: the wrappers must run, and run it every step."""

        calls = 0

        def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
            self.calls += 1

    def fit(probe: Steps) -> ChempropModel:
        model = ChempropModel.from_config({}, tiny_overrides(synthetic_csv))
        data = load_training_data(model.config)
        tr, va = holdout_split(data, 5, "random", 0)
        model.fit(data.subset(tr), data.subset(va), callbacks=[probe])
        return model

    direct, wrapped = Steps(), Hooked()
    fast, slow = fit(direct), fit(wrapped)
    assert direct.direct is True and wrapped.direct is False
    assert direct.fused_shortcut is True and wrapped.fused_shortcut is False
    steps_per_epoch = fast.mpnn.steps_per_epoch
    assert direct.global_step == wrapped.global_step == wrapped.calls == 3 * steps_per_epoch
    for a, b in zip(fast.mpnn.state_dict().values(), slow.mpnn.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # and the module's fixture (no probe) trained the same weights
    model, _, val = trained
    np.testing.assert_array_equal(model.predict_array(val.smiles), fast.predict_array(val.smiles))


@pytest.mark.slow
def test_training_skips_the_nan_fill_of_deterministic_mode_and_restores_it(synthetic_csv):
    class Flags(Callback):
        def on_train_batch_start(self, *args) -> None:
            self.seen = (torch.are_deterministic_algorithms_enabled(), flags.fill_uninitialized_memory)

    flags = torch.utils.deterministic
    before = flags.fill_uninitialized_memory
    model = ChempropModel.from_config({}, tiny_overrides(synthetic_csv, optimization__max_epochs=1))
    data = load_training_data(model.config)
    tr, va = holdout_split(data, 5, "random", 0)
    probe = Flags()
    model.fit(data.subset(tr), data.subset(va), callbacks=[probe])
    # deterministic kernels stay on while training; the NaN fill of new tensors is off
    assert probe.seen == (True, False)
    assert flags.fill_uninitialized_memory is before


@pytest.mark.slow
def test_save_load_reproduces_predictions_exactly(trained, tmp_path):
    model, _, val = trained
    model.save(tmp_path / "m")
    state = torch.load(tmp_path / "m" / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    loaded = ChempropModel.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict_array(val.smiles), model.predict_array(val.smiles))
    assert loaded.config == model.config and loaded.best_epoch == model.best_epoch


@pytest.mark.slow
def test_predict_and_evaluate(trained):
    model, _, val = trained
    frame = model.predict(val.smiles[:4])
    tasks = ["logP", "TPSA", "MW"]
    assert list(frame.columns) == [f"{t}{x}" for t in tasks for x in ("_pred", "_std", "_lo90", "_hi90")]
    assert len(frame) == 4 and np.isfinite(frame.to_numpy()).all()
    metrics = model.evaluate(val)
    assert set(metrics) == {"logP", "TPSA", "MW", "macro"}
    assert metrics["logP"]["n"] == int(np.isfinite(val.Y[:, 0]).sum())
    P = model.predict_array(val.smiles)
    for i, t in enumerate(tasks):  # each task's MAE by hand, on its labelled molecules only
        rows = np.isfinite(val.Y[:, i])
        assert metrics[t]["mae"] == pytest.approx(np.abs(P[rows, i] - val.Y[rows, i]).mean(), rel=1e-6)
    assert metrics["macro"]["mae"] == pytest.approx(_macro_mae(P, val.Y), rel=1e-6)


def test_sampler_priority(synthetic_csv):
    data = load_training_data(ChempropModel.from_config({}, tiny_overrides(synthetic_csv)).config)
    joint = ChempropModel.from_config({}, tiny_overrides(synthetic_csv)).build_sampler(data)
    assert isinstance(joint, JointSampler) and isinstance(joint.curriculum_state, CurriculumState)
    with pytest.warns(DeprecationWarning):
        legacy = ChempropModel.from_config(
            {"optimization": {"task_sampling_alpha": 0.3}},
            [o for o in tiny_overrides(synthetic_csv) if not o.startswith("joint_sampling")],
        )
    sampler = legacy.build_sampler(data)
    assert sampler.composition_mode == "two_stage" and sampler.task_alpha == 0.3
    assert sampler.curriculum_state is None
    off = {"joint_sampling__enabled": False, "joint_sampling__curriculum__enabled": False}
    plain = ChempropModel.from_config({}, tiny_overrides(synthetic_csv, **off))
    assert plain.build_sampler(data) is None


@pytest.mark.slow
def test_plain_shuffle_and_multiplicative_train(synthetic_csv):
    for extra in (
        {"joint_sampling__enabled": False, "joint_sampling__curriculum__enabled": False},
        {"joint_sampling__composition_mode": "multiplicative", "optimization__criterion": "mse"},
    ):
        model, _, val = _fit(synthetic_csv, optimization__max_epochs=1, **extra)
        assert np.isfinite(model.best_score) and model.predict_array(val.smiles[:2]).shape == (2, 3)


class _PoisonWeights(Callback):
    def on_train_start(self, trainer, pl_module):
        with torch.no_grad():
            for p in pl_module.parameters():
                p.fill_(float("nan"))


@pytest.mark.slow
def test_nan_training_raises_diverged(synthetic_csv):
    model = ChempropModel.from_config({}, tiny_overrides(synthetic_csv, optimization__max_epochs=2))
    data = load_training_data(model.config)
    tr, va = holdout_split(data, 5, "random", 0)
    with pytest.raises(TrainingDivergedError, match="no finite val/mae_macro"):
        model.fit(data.subset(tr), data.subset(va), callbacks=[_PoisonWeights()])


def test_metrics_against_hand_computation():
    t = np.array([1.0, 2.0, 3.0, np.nan])
    p = np.array([1.5, 2.0, 2.0, 9.0])
    m = task_metrics(t, p)
    assert m["n"] == 3 and m["mae"] == pytest.approx(0.5)
    assert m["rmse"] == pytest.approx(np.sqrt((0.25 + 0 + 1) / 3))
    assert m["r2"] == pytest.approx(1 - 1.25 / 2)
    assert m["pearson_r"] == pytest.approx(np.corrcoef(t[:3], p[:3])[0, 1])
    macro = regression_metrics(np.column_stack([t, t]), np.column_stack([p, t]), ["a", "b"])["macro"]
    assert macro["mae"] == pytest.approx(0.25) and macro["n"] == 6


@pytest.mark.slow
def test_single_model_with_mlflow_logs_every_epochs_sampler_statistics(synthetic_csv, tmp_path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.setenv("ADMET_HOME", str(tmp_path))
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracked = {"mlflow__enabled": True, "mlflow__tracking_uri": uri, "mlflow__experiment_name": "m"}
    model, _, _ = _fit(synthetic_csv, **tracked)
    # the fit logged to its own store without moving the process's (Lightning's logger
    # would set it globally): fluent MLflow calls afterwards still go where they went
    assert mlflow.get_tracking_uri() == elsewhere
    client = MlflowClient(uri)
    run = client.get_run(model.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["admet.kind"] == "model"
    assert run.data.params["model.depth"] == "2"
    assert run.data.metrics["best/val/mae_macro"] == pytest.approx(model.best_score)
    keys = ["sampler/min", "sampler/max", "sampler/entropy", "sampler/effective_samples"]
    keys += ["sampler/task_share/logP", "sampler/quality_share/high", "sampler/phase"]
    monitored = [m.step for m in client.get_metric_history(run.info.run_id, "val/mae_macro")]
    for key in [*keys, "val/mae/logP", "val/mae/high"]:
        history = client.get_metric_history(run.info.run_id, key)
        assert len(history) == model.epochs_trained, key  # one value per epoch
        # on the same step axis as the metrics Lightning logs itself
        assert sorted(m.step for m in history) == sorted(monitored), key
    assert "model" in {a.path for a in client.list_artifacts(run.info.run_id)}


def _macro_mae(P: np.ndarray, Y: np.ndarray) -> float:
    """Mean over tasks of each task's MAE on its labelled rows (NaN = no label)."""
    maes = []
    for i in range(Y.shape[1]):
        rows = np.isfinite(Y[:, i])
        maes.append(np.abs(P[rows, i] - Y[rows, i]).mean())
    return float(np.mean(maes))
