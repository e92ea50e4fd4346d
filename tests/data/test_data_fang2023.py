"""fang2023 preparation on the real shared data, checksums, the downloader and the CLI."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from admet.data import fang2023, load_multitask_csv
from admet.data.fetch import fetch_files
from admet.errors import DataError

README_COUNTS = {  # the shared README's table: train, test rows per endpoint
    "HLM": (2469, 618),
    "RLM": (2443, 611),
    "MDR1_ER": (2113, 529),
    "Sol": (1738, 435),
    "hPPB": (1446, 362),
    "rPPB": (708, 177),
}


def _run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "admet.data", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def test_summary_counts_match_shared_readme(fang2023_processed: Path):
    summary = json.loads((fang2023_processed / "summary.json").read_text())
    for e, (train, test) in README_COUNTS.items():
        rows = summary["tasks"][e]["split_rows"]
        assert (rows["train"], rows["test"]) == (train, test), e
    # the PPB tasks mix Biogen (high) and AstraZeneca (medium) rows
    assert summary["tasks"]["hPPB"]["split_rows"]["train_by_quality"]["medium"] > 1000
    assert summary["tasks"]["HLM"]["split_rows"]["train_by_quality"] == {"high": 2469}


def test_train_table_layout_and_strict_exclusions(fang2023_processed: Path):
    ds = load_multitask_csv(fang2023_processed / "train.csv", "SMILES", list(fang2023.ENDPOINTS), "Quality")
    assert list(ds.extra.columns) == ["Source"]
    assert set(ds.quality) == {"high", "medium"}
    assert ds.report.n_replicates_averaged == 0  # prepare already merged replicates
    excl = pd.read_csv(fang2023_processed / "strict_exclusions.csv")
    train = set(ds.smiles)
    for e in fang2023.ENDPOINTS:
        test = set(pd.read_csv(fang2023_processed / f"test_{e}.csv")["SMILES"])
        assert set(excl.loc[excl.Endpoint == e, "SMILES"]) == test & train


@pytest.mark.slow
def test_prepare_is_byte_identical(fang2023_raw: Path, fang2023_processed: Path, tmp_path: Path):
    fang2023.prepare(raw=fang2023_raw, out=tmp_path, progress=False)
    for f in sorted(fang2023_processed.iterdir()):
        assert (tmp_path / f.name).read_bytes() == f.read_bytes(), f.name


@pytest.mark.slow
def test_low_tier_augmentation_converts_units(fang2023_raw: Path, tmp_path: Path):
    summary = fang2023.prepare(raw=fang2023_raw, out=tmp_path, augment=["low"], progress=False)
    assert summary["rows_by_quality"]["low"] > 2000
    train = pd.read_csv(tmp_path / "train.csv")
    low = train[train.Quality == "low"]
    assert low[["RLM", "MDR1_ER", "hPPB", "rPPB"]].isna().all().all()
    # solubility in log10(ug/mL): the converted AZ values sit in Biogen's range
    high_sol = train.loc[train.Quality == "high", "Sol"].median()
    assert abs(low["Sol"].median() - high_sol) < 1.5


def _copy_raw(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for p in dst.rglob("*"):
        p.chmod(0o644 if p.is_file() else 0o755)
    dst.chmod(0o755)
    return dst


@pytest.mark.slow
def test_checksum_mismatch_is_clear_and_writes_nothing(fang2023_raw: Path, tmp_path: Path):
    raw = _copy_raw(fang2023_raw, tmp_path / "raw")
    with (raw / "splits" / "ADME_Sol_test.csv").open("a") as fh:
        fh.write("CCO,1.0\n")
    out = tmp_path / "out"
    proc = _run_cli("prepare", "fang2023", "--raw", str(raw), "--out", str(out), "--quiet")
    assert proc.returncode == 2
    assert "ADME_Sol_test.csv: SHA-256 mismatch" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
def test_missing_raw_folder_is_a_one_line_error(tmp_path: Path):
    proc = _run_cli(
        "prepare",
        "fang2023",
        "--raw",
        str(tmp_path / "nowhere"),
        "--out",
        str(tmp_path / "out"),
        "--quiet",
    )
    assert proc.returncode == 2 and "raw fang2023 folder not found" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_raw_location_resolution_order(monkeypatch, tmp_path: Path):
    from admet.paths import project_root, raw_dataset_dir

    monkeypatch.delenv("ADMET_DATA_DIR", raising=False)
    assert raw_dataset_dir("fang2023") == project_root().parent / "shared" / "data" / "fang2023"
    monkeypatch.setenv("ADMET_DATA_DIR", str(tmp_path))
    assert raw_dataset_dir("fang2023") == tmp_path / "fang2023"
    assert raw_dataset_dir("fang2023", tmp_path / "x") == tmp_path / "x"


@pytest.fixture
def http_root(tmp_path: Path):
    """A local HTTP server on 127.0.0.1 serving a folder; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_downloads_and_verifies_from_local_server(http_root, fang2023_raw, tmp_path):
    root, base = http_root
    rels = ["ADME_public_set_3521.csv", "splits/ADME_rPPB_test.csv"]
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(fang2023_raw / rel, root / rel)
    urls = {rel: f"{base}/{rel}" for rel in rels}
    dest = tmp_path / "dest"
    written = fetch_files(urls, fang2023.RAW_SHA256, dest, progress=False)
    assert len(written) == 2
    for rel in rels:
        assert (dest / rel).read_bytes() == (fang2023_raw / rel).read_bytes()
    # a second fetch finds verified files and downloads nothing
    assert fetch_files(urls, fang2023.RAW_SHA256, dest, progress=False) == []


def test_fetch_rejects_corrupted_download_atomically(http_root, tmp_path):
    root, base = http_root
    (root / "f.csv").write_text("tampered\n")
    dest = tmp_path / "dest"
    good = hashlib.sha256(b"original\n").hexdigest()
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        fetch_files({"f.csv": f"{base}/f.csv"}, {"f.csv": good}, dest, progress=False)
    assert not (dest / "f.csv").exists()
    assert list(dest.iterdir()) == []  # no partial file left behind


def test_fetch_without_network_fails_fast_and_says_where_to_put_files(tmp_path):
    start = time.monotonic()
    with pytest.raises(DataError, match=r"copy the raw files by hand into .*dest"):
        fetch_files(
            {"f.csv": "http://127.0.0.1:9/f.csv"},
            {"f.csv": "0" * 64},
            tmp_path / "dest",
            timeout=3,
            progress=False,
        )
    assert time.monotonic() - start < 10


@pytest.mark.slow
def test_fetch_cli_downloads_every_raw_file_from_a_local_mirror(http_root, fang2023_raw, tmp_path):
    root, base = http_root
    for rel in fang2023.RAW_FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(fang2023_raw / rel, root / rel)
    env = {**os.environ, "ADMET_FANG2023_MIRROR": base + "/"}
    dest = tmp_path / "raw"
    proc = _run_cli("fetch", "fang2023", "--dest", str(dest), "--timeout", "5", "--quiet", env=env)
    assert proc.returncode == 0, proc.stderr
    for rel in fang2023.RAW_FILES:
        assert (dest / rel).read_bytes() == (fang2023_raw / rel).read_bytes(), rel
    sums = dict(line.split("  ")[::-1] for line in (dest / "SHA256SUMS").read_text().splitlines())
    assert sums == {rel: fang2023.RAW_SHA256[rel] for rel in fang2023.RAW_FILES}
    # a tampered file on the mirror: exit 2, one line naming it, nothing replaced
    (root / "splits" / "ADME_rPPB_test.csv").write_text("SMILES,rPPB\nC,1\n")
    (dest / "splits" / "ADME_rPPB_test.csv").unlink()
    proc = _run_cli("fetch", "fang2023", "--dest", str(dest), "--timeout", "5", "--quiet", env=env)
    assert proc.returncode == 2 and "ADME_rPPB_test.csv: SHA-256 mismatch" in proc.stderr
    assert "Traceback" not in proc.stderr and not (dest / "splits" / "ADME_rPPB_test.csv").exists()
