"""``ensemble.batched``: members trained together as one stacked model train as their own
fits would, stop on their own, and save and load as today's members."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_overrides

from admet.model import stacked_fit
from admet.model.ensemble import ChempropEnsemble
from admet.model.mpnn import MONITOR


def _ensemble(csv: Path, n: int = 2, **extra) -> ChempropEnsemble:
    return ChempropEnsemble.from_config(
        {"ensemble": {"n_members": n, "split": "random"}},
        tiny_overrides(csv, **{"optimization__max_epochs": 3, "model__dropout": 0.0, **extra}),
    )


@pytest.mark.slow
def test_batched_members_train_like_their_own_fits(synthetic_csv, tmp_path):
    separate = _ensemble(synthetic_csv).fit()
    batched = _ensemble(synthetic_csv, ensemble__batched=True).fit(checkpoint_dir=tmp_path / "ckpt")
    # same initial weights, batches, schedules and stopping: equal up to float summation order
    assert batched.cv_score == pytest.approx(separate.cv_score, rel=1e-3)
    for a, b in zip(separate.members, batched.members, strict=True):
        assert b.epochs_trained == a.epochs_trained and b.best_epoch == a.best_epoch
        va = [row[MONITOR] for row in a.history]
        vb = [row[MONITOR] for row in b.history]
        assert vb == pytest.approx(va, rel=1e-3)
        assert [r["epoch"] for r in b.sampler_history] == [r["epoch"] for r in a.sampler_history]
        assert "curriculum/phase" in b.history[0] and "val/mae/logP" in b.history[0]
        # the in-epoch time (training steps) is part of the member's share of the fit
        assert 0 < b.step_seconds < b.fit_seconds
    # saved like today's members: the folder loads and predicts the same numbers
    smiles = pd.read_csv(synthetic_csv)["SMILES"].head(6).tolist()
    before = batched.predict(smiles)
    loaded = ChempropEnsemble.load(batched.save(tmp_path / "model"))
    pd.testing.assert_frame_equal(loaded.predict(smiles), before)
    # and a later fit with the checkpoint folder reuses them instead of training again
    again = _ensemble(synthetic_csv, ensemble__batched=True).fit(checkpoint_dir=tmp_path / "ckpt")
    assert again.reused_members == [0, 1]


@pytest.mark.slow
def test_a_member_that_stops_keeps_its_best_weights_while_the_others_train_on(synthetic_csv, monkeypatch):
    real_validate = stacked_fit._validate

    def validate(stack, table, ended, positions):
        real_validate(stack, table, ended, positions)
        for mb in ended:
            mb.scalars["real"] = mb.scalars[MONITOR]
            if mb.index == 0:  # member 0 never improves after its first epoch
                mb.scalars[MONITOR] = 1.0 + mb.epoch

    monkeypatch.setattr(stacked_fit, "_validate", validate)
    ens = _ensemble(
        synthetic_csv, n=3, ensemble__batched=True, optimization__max_epochs=4, optimization__patience=1
    )
    ens.fit()
    first, *others = ens.members
    assert first.epochs_trained == 2 and first.best_epoch == 0
    assert [m.epochs_trained for m in others] == [4, 4]
    # member 0 kept epoch 0's weights: its fold error now is epoch 0's validation error
    assert ens.member_val_metrics[0]["macro"]["mae"] == pytest.approx(first.history[0]["real"], rel=1e-4)
    assert first.history[1]["real"] != pytest.approx(first.history[0]["real"], rel=1e-4)


@pytest.mark.slow
def test_an_architecture_it_cannot_stack_trains_one_by_one(synthetic_csv, caplog):
    ens = _ensemble(
        synthetic_csv, ensemble__batched=True, model__activation="tanh", optimization__max_epochs=1
    )
    with caplog.at_level("WARNING"):
        ens.fit()
    assert "training the members one by one" in caplog.text and "activation" in caplog.text
    assert len(ens.members) == 2 and np.isfinite(ens.cv_score)


@pytest.mark.slow
def test_members_finished_before_a_kill_are_reused(synthetic_csv, monkeypatch, tmp_path):
    """A member saved when it stopped survives a fit that dies later; the next fit with
    the same checkpoint folder reuses it and trains only the others (stacked again)."""
    real_validate = stacked_fit._validate

    def validate(stack, table, ended, positions):
        real_validate(stack, table, ended, positions)
        for mb in ended:
            if mb.index == 0:
                mb.scalars[MONITOR] = 1.0 + mb.epoch  # member 0 stops after its second epoch

    monkeypatch.setattr(stacked_fit, "_validate", validate)

    def kill(member: int, epoch: int, scalars: dict) -> None:
        if member == 1 and epoch == 2:
            raise KeyboardInterrupt

    extra = dict(n=3, ensemble__batched=True, optimization__max_epochs=4, optimization__patience=1)
    with pytest.raises(KeyboardInterrupt):
        _ensemble(synthetic_csv, **extra).fit(checkpoint_dir=tmp_path, on_member_epoch=kill)
    assert (tmp_path / "member_0" / "training.json").is_file()
    assert not (tmp_path / "member_1").exists()
    monkeypatch.setattr(stacked_fit, "_validate", real_validate)
    trained: list[int] = []
    resumed = _ensemble(synthetic_csv, **extra).fit(
        checkpoint_dir=tmp_path, on_member_epoch=lambda m, e, s: trained.append(m)
    )
    assert resumed.reused_members == [0]
    assert set(trained) == {1, 2} and resumed.members[0].epochs_trained == 2
