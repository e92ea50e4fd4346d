"""Model folders are whole or absent: a failed or killed save leaves the previous folder (or
none), a leftover partial folder or a truncated file is refused in one line, and a second
writer to the same folder is refused at once."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from admet.errors import DataError
from admet.model import ChempropEnsemble, load_saved
from admet.model.folder import MANIFEST, PARTIAL, FolderBusyError, check_complete, writing

FIXTURE = Path(__file__).parent / "fixtures" / "ensemble_v0.1.0"


def test_a_finished_write_lands_whole_with_its_manifest(tmp_path):
    with writing(tmp_path / "m") as tmp:
        assert PARTIAL in tmp.name and tmp.parent == tmp_path
        (tmp / "a.txt").write_text("abc")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.bin").write_bytes(b"\0" * 7)
    manifest = json.loads((tmp_path / "m" / MANIFEST).read_text())
    assert manifest == {"files": {"a.txt": 3, "sub/b.bin": 7}}
    assert [p.name for p in tmp_path.iterdir() if PARTIAL in p.name] == []
    assert check_complete(tmp_path / "m") == tmp_path / "m"


def test_a_failed_write_leaves_the_previous_folder_untouched(tmp_path):
    with writing(tmp_path / "m") as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError, match="disk trouble"), writing(tmp_path / "m") as tmp:
        (tmp / "a.txt").write_text("second, half")
        raise RuntimeError("disk trouble")
    assert (tmp_path / "m" / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["m"]
    with writing(tmp_path / "m") as tmp:  # a replacement swaps the whole folder
        (tmp / "b.txt").write_text("new")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["b.txt", MANIFEST]


def test_a_second_writer_is_refused_at_once(tmp_path):
    with writing(tmp_path / "m") as tmp:
        (tmp / "a.txt").write_text("one")
        start = time.monotonic()
        with pytest.raises(FolderBusyError, match="another process is writing"), writing(tmp_path / "m"):
            pass
        assert time.monotonic() - start < 1
    # the lock is released with the first writer
    with writing(tmp_path / "m") as tmp:
        (tmp / "a.txt").write_text("two")
    assert (tmp_path / "m" / "a.txt").read_text() == "two"


def test_a_truncated_or_missing_file_is_refused(tmp_path):
    ChempropEnsemble.load(FIXTURE).save(tmp_path / "ens")
    assert isinstance(load_saved(tmp_path / "ens"), ChempropEnsemble)
    weights = tmp_path / "ens" / "member_1" / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(DataError, match=r"incomplete model folder \(member_1/weights.pt"):
        load_saved(tmp_path / "ens")
    shutil.rmtree(tmp_path / "ens" / "member_1")
    with pytest.raises(DataError, match="incomplete model folder"):
        ChempropEnsemble.load(tmp_path / "ens")


@pytest.mark.slow
def test_a_save_killed_halfway_leaves_no_folder_and_predict_refuses_the_partial(tmp_path):
    out = tmp_path / "model"
    ready = tmp_path / "ready"
    code = textwrap.dedent(f"""
        import time
        from pathlib import Path
        import torch
        from admet.model import ChempropEnsemble
        real = torch.save
        def slow(obj, f, *a, **kw):  # the first member's weights are written, then the process stalls
            real(obj, f, *a, **kw)
            Path({str(ready)!r}).touch()
            time.sleep(600)
        torch.save = slow
        ChempropEnsemble.load({str(FIXTURE)!r}).save({str(out)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the save never reached its first weights file"
            time.sleep(0.05)
        # while it stalls, a second writer is refused
        with pytest.raises(FolderBusyError), writing(out):
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert not out.exists()
    (partial,) = [p for p in tmp_path.iterdir() if PARTIAL in p.name]
    assert (partial / "member_0").exists() or any(partial.rglob("weights.pt"))
    smiles = tmp_path / "in.csv"
    smiles.write_text("SMILES\nc1ccccc1O\n")
    for folder, message in ((partial, "incomplete model folder"), (out, "no trained model")):
        done = subprocess.run(
            [sys.executable, "-m", "admet.model", "predict", "--model", str(folder), "--input", str(smiles),
             "--output", str(tmp_path / "p.csv")],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode != 0 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    # the lock died with the process: the next save goes through
    fd = os.open(tmp_path / ".model.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)
