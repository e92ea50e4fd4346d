"""The status line of an ensemble fit: which member, which epoch, the latest validation
value; the same text for stacked members and members trained one by one."""

from __future__ import annotations

import io
import re

import pytest
from conftest import tiny_overrides

from admet.model import MONITOR
from admet.model.ensemble import ChempropEnsemble
from admet.model.progress import ConsoleStatus, FitProgress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_console_status_rewrites_one_line_on_a_terminal_and_keeps_lines_elsewhere():
    term = _Terminal()
    status = ConsoleStatus("fit", stream=term)
    status("a")
    status("b")
    status.say("member 1 done")  # clears the status line first; the result line stays
    assert term.getvalue() == "\r\033[Ka\r\033[Kb\r\033[K"
    log = io.StringIO()
    status = ConsoleStatus("fit", stream=log)
    status("a")
    status("b")
    assert log.getvalue() == "a\nb\n"


def test_fit_progress_text():
    shown: list[str] = []
    progress = FitProgress(shown.append, "trial 3", n_members=5, max_epochs=30, stacked=True)
    progress.start(reused=2)
    progress.member_done(0)
    progress.epoch(1, 3, {MONITOR: 0.41234})
    progress.epoch(2, 4, {MONITOR: float("nan")})
    progress.member_done(1, "fold MAE 0.4000")
    assert shown == [
        "trial 3 · 5 members stacked · starting (2 reused)",
        "trial 3 · members done 1/5 · member 2 · epoch 4/30 · val/mae_macro 0.4123",
        "trial 3 · members done 1/5 · member 3 · epoch 5/30 · val/mae_macro -",
        "trial 3 · member 2/5: fold MAE 0.4000",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("batched", [True, False])
def test_ensemble_fit_reports_every_member_epoch(synthetic_csv, batched):
    """Off a terminal: one line per member epoch from the start, then one result line per
    member; stacked members and members trained one by one say the same things."""
    out = io.StringIO()
    ens = ChempropEnsemble.from_config(
        {"ensemble": {"n_members": 2, "split": "random", "batched": batched}},
        tiny_overrides(synthetic_csv, optimization__max_epochs=2),
    )
    ens.fit(progress=ConsoleStatus("cell", stream=out, rewrite=False))
    lines = out.getvalue().splitlines()
    assert lines[0] == ("cell · 2 members stacked · starting" if batched else "cell · member 1/2 · starting")
    epochs = [line for line in lines if " · epoch " in line]
    assert len(epochs) == sum(m.epochs_trained for m in ens.members)
    for m in (1, 2):
        mine = [line for line in epochs if re.search(rf"· member {m}(/2)? ·", line)]
        assert [re.search(r"epoch (\d)/2", line)[1] for line in mine] == [
            str(e + 1) for e in range(ens.members[m - 1].epochs_trained)
        ]
        assert all(re.search(rf"{MONITOR} \d+\.\d{{4}}$", line) for line in mine)
