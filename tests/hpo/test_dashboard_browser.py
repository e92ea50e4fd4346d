"""optuna-dashboard shows a finished trial's artifacts (parity plot, resolved config) in a
real headless browser (Debian's chromium driven by Playwright), and reports open offline."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import require
from playwright.sync_api import sync_playwright
from test_hpo_service import hpo, run_args

from admet.paths import project_root

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = project_root() / "test-artifacts"  # kept after the run (git-ignored)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@pytest.fixture
def finished_study(synthetic_csv, tmp_path: Path) -> tuple[Path, str, dict[str, str]]:
    env = {"ADMET_HPO_ARTIFACTS": str(tmp_path / "artifacts")}
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proc = hpo(tmp_path, *run_args(synthetic_csv, storage, "n_trials=1", "mlflow.enabled=false"), **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tmp_path, storage, env


@pytest.mark.slow
def test_dashboard_shows_the_trials_parity_plot_and_config_in_a_browser(finished_study):
    require(Path(CHROMIUM).is_file(), "Debian's chromium is not installed (apt-get install chromium)")
    home, storage, env = finished_study
    port = _free_port()
    log_path = home / "dashboard.log"
    with log_path.open("w") as log:
        dashboard = subprocess.Popen(
            [sys.executable, "-m", "admet.hpo", "dashboard", "--storage", storage, "--port", str(port)],
            env={**os.environ, "ADMET_HOME": str(home), **env},
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = _get(f"{base}/api/studies")["study_summaries"]
                break
            except OSError:
                assert dashboard.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.5)
        study_id = next(s["study_id"] for s in studies if s["study_name"] == "joint_sampling")
        trial = _get(f"{base}/api/studies/{study_id}")["trials"][0]
        names = sorted(a["filename"] for a in trial["artifacts"])
        assert names == ["config.yaml", "parity.png"], log_path.read_text()

        SCREENSHOTS.mkdir(exist_ok=True)
        shot = SCREENSHOTS / "dashboard-trial.png"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/dashboard/studies/{study_id}/trials")
            page.get_by_text("parity.png").first.wait_for(timeout=30_000)
            body = page.inner_text("body")
            # the artifact's image is served by the dashboard from the store
            images = page.eval_on_selector_all("img", "els => els.map(e => e.src)")
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
        assert "joint_sampling" in body and "Trial 0" in body and "config.yaml" in body
        parity = [src for src in images if "/artifacts/" in src]
        assert parity, images
        with urllib.request.urlopen(parity[0], timeout=5) as response:
            assert response.read(8) == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_size > 10_000
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=20)


@pytest.mark.slow
def test_report_pages_open_without_internet(finished_study):
    home, storage, env = finished_study
    proc = hpo(home, "report", "--storage", storage, "--out", str(home / "report"), **env)
    assert proc.returncode == 0, proc.stderr
    pages = list((home / "report").glob("*.html"))
    assert pages and (home / "report" / "plotly.min.js").stat().st_size > 1_000_000
    for page in pages:
        html = page.read_text()
        assert 'src="plotly.min.js"' in html and "cdn.plot.ly" not in html, page.name
