"""admet.interrupt: a Ctrl-C is raised where it is safe, and never lost."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

import pytest

from admet import interrupt


def _press() -> None:
    """A real SIGINT to this process; its handler runs in the main thread right away."""
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # the handler runs at the next bytecode boundary at the latest


def _frame_in(path: str):
    """A live frame whose code claims to come from ``path`` (as a SQLAlchemy frame would)."""
    namespace: dict = {}
    exec(compile("import sys\ndef here():\n    return sys._getframe()\n", path, "exec"), namespace)
    return namespace["here"]()


def test_a_ctrl_c_is_raised_where_it_lands_outside_database_calls():
    before = signal.getsignal(signal.SIGINT)
    with interrupt.deliver_at_safe_points():
        with pytest.raises(KeyboardInterrupt):
            _press()
        interrupt.consume()
        interrupt.check()  # consumed: nothing left to raise
    assert signal.getsignal(signal.SIGINT) is before


def test_a_swallowed_ctrl_c_is_raised_again_at_the_next_check():
    with interrupt.deliver_at_safe_points():
        with contextlib.suppress(KeyboardInterrupt):  # as Python does inside a finalizer
            _press()
        assert interrupt.pending()
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
        assert not interrupt.pending()


def test_a_ctrl_c_inside_a_database_call_waits_for_the_next_check_unless_pressed_twice():
    handler = interrupt._on_sigint
    with interrupt.deliver_at_safe_points():
        inside = _frame_in(f"{sys.prefix}/lib/site-packages/sqlalchemy/engine/base.py")
        handler(signal.SIGINT, inside)  # held back: no exception here
        assert interrupt.pending()
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, inside)  # a second Ctrl-C is not held back
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
        interrupt.consume()
        # a weakref callback (run by garbage collection anywhere) would swallow it
        handler(signal.SIGINT, _frame_in(f"{sys.prefix}/lib/python3/weakref.py"))
        assert interrupt.pending()
        interrupt.consume()
        elsewhere = _frame_in("/work/project/train.py")
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, elsewhere)
        interrupt.consume()


@pytest.mark.slow
def test_a_held_back_ctrl_c_stops_a_fit_after_its_next_batch(synthetic_csv):
    """The training loop is a safe point: a Ctrl-C recorded during an epoch (here, as if it
    had landed in an MLflow database write) ends the fit with KeyboardInterrupt, and the
    worker's handler is back in place afterwards (Lightning ignores SIGINT while it stops)."""
    from conftest import tiny_overrides
    from lightning.pytorch.callbacks import Callback

    from admet.data.training import holdout_split, load_training_data
    from admet.model.model import ChempropModel

    batches: list[int] = []

    class PressDuringADatabaseWrite(Callback):
        def on_train_epoch_start(self, trainer, module) -> None:
            if trainer.current_epoch == 1:
                db = _frame_in(f"{sys.prefix}/lib/site-packages/sqlalchemy/orm/session.py")
                interrupt._on_sigint(signal.SIGINT, db)

        def on_train_batch_start(self, trainer, *args) -> None:
            batches.append(trainer.current_epoch)

    model = ChempropModel.from_config({}, tiny_overrides(synthetic_csv, optimization__max_epochs=5))
    data = load_training_data(model.config)
    tr, va = holdout_split(data, 5, "random", 0)
    with interrupt.deliver_at_safe_points():
        with pytest.raises(KeyboardInterrupt):
            model.fit(data.subset(tr), data.subset(va), callbacks=[PressDuringADatabaseWrite()])
        assert signal.getsignal(signal.SIGINT) is interrupt._on_sigint
        assert not interrupt.pending()
    assert max(batches) == 1 and batches.count(1) == 1  # stopped after the first batch after


def test_check_does_nothing_without_the_handler_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGINT)
    interrupt.check()
    with interrupt.deliver_at_safe_points():
        assert signal.getsignal(signal.SIGINT) is interrupt._on_sigint
    assert signal.getsignal(signal.SIGINT) is before
