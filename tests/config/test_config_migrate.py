"""``python -m admet.config migrate`` on legacy files written here."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from admet.config import load_config

LEGACY = {
    "alpha_only.yaml": """\
# experiment with task oversampling
data:
  train_file: data/fang2023/train.csv   # processed table
optimization:
  max_epochs: 3
  task_sampling_alpha: 0.3   # oversample rare tasks
  batch_size: 32
""",
    "curriculum_only.yaml": """\
model:
  depth: 2
# quality curriculum, old location
curriculum:
  enabled: true      # turn it on
  qualities: [high, medium]
  patience: 2
mlflow:
  enabled: false
""",
    "both.yml": """\
optimization:
  task_sampling_alpha: 0.7
curriculum:
  enabled: true
  qualities: [high, medium]
ensemble:
  n_members: 2
""",
    "neither.yaml": """\
# already new
joint_sampling:
  enabled: true
  task_oversampling:
    alpha: 0.5
""",
    "nested/unknown_sections.yaml": """\
optimization:
  task_sampling_alpha: 0.2
custom_plugin:        # not ours: must survive
  threshold: 3
notes: keep me
""",
}


@pytest.fixture
def legacy_dir(tmp_path: Path) -> Path:
    for name, text in LEGACY.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def _migrate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "admet.config", "migrate", *args], capture_output=True, text=True, timeout=120
    )


def _load_quietly(path: Path):
    data = yaml.safe_load(path.read_text())
    for key in ("custom_plugin", "notes"):
        data.pop(key, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # no legacy key left
        return load_config(data)


def test_check_reports_files_needing_migration_and_writes_nothing(legacy_dir):
    before = {p: p.read_text() for p in legacy_dir.rglob("*.y*ml")}
    proc = _migrate(str(legacy_dir), "--check")
    assert proc.returncode == 1
    assert "4 to migrate, 0 failed" in proc.stdout
    assert {p: p.read_text() for p in before} == before


def test_dry_run_prints_unified_diff_and_writes_nothing(legacy_dir):
    before = (legacy_dir / "alpha_only.yaml").read_text()
    proc = _migrate(str(legacy_dir / "alpha_only.yaml"), "--dry-run")
    assert proc.returncode == 0
    assert "-  task_sampling_alpha: 0.3" in proc.stdout and "+joint_sampling:" in proc.stdout
    assert (legacy_dir / "alpha_only.yaml").read_text() == before


def test_migration_rewrites_preserving_comments_order_unknown_sections(legacy_dir):
    legacy_cfgs = {}
    for name in LEGACY:
        data = yaml.safe_load(LEGACY[name])
        data.pop("custom_plugin", None)
        data.pop("notes", None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            legacy_cfgs[name] = load_config(data)

    proc = _migrate(str(legacy_dir))
    assert proc.returncode == 0, proc.stderr
    warning = "unknown_sections.yaml: warning: will not load as is: unknown config key 'custom_plugin'"
    assert warning in proc.stdout

    alpha = (legacy_dir / "alpha_only.yaml").read_text()
    assert "# experiment with task oversampling" in alpha
    assert "# processed table" in alpha and "# oversample rare tasks" in alpha
    assert alpha.index("data:") < alpha.index("optimization:") < alpha.index("joint_sampling:")
    assert "batch_size: 32" in alpha

    cur = (legacy_dir / "curriculum_only.yaml").read_text()
    assert "# turn it on" in cur and "\ncurriculum:" not in cur
    assert cur.index("model:") < cur.index("joint_sampling:") < cur.index("mlflow:")

    unknown = (legacy_dir / "nested/unknown_sections.yaml").read_text()
    assert "custom_plugin:" in unknown and "# not ours: must survive" in unknown
    assert "notes: keep me" in unknown

    assert (legacy_dir / "neither.yaml").read_text() == LEGACY["neither.yaml"]
    for name, old in legacy_cfgs.items():
        assert _load_quietly(legacy_dir / name) == old, name  # same meaning after migration


def test_migration_is_idempotent(legacy_dir):
    assert _migrate(str(legacy_dir)).returncode == 0
    after_first = {p: p.read_text() for p in legacy_dir.rglob("*.y*ml")}
    second = _migrate(str(legacy_dir))
    assert second.returncode == 0 and "0 to migrate" in second.stdout
    assert {p: p.read_text() for p in after_first} == after_first
    assert _migrate(str(legacy_dir), "--check").returncode == 0


def test_invalid_yaml_and_invalid_config_reported_per_file_without_stopping(legacy_dir):
    broken = legacy_dir / "broken.yaml"
    broken.write_text("optimization:\n  task_sampling_alpha: [0.3\n")
    conflict = legacy_dir / "conflict.yaml"
    conflict.write_text(
        "optimization:\n  task_sampling_alpha: 0.3\njoint_sampling:\n  task_oversampling:\n    alpha: 0.9\n"
    )
    texts = {broken: broken.read_text(), conflict: conflict.read_text()}
    proc = _migrate(str(legacy_dir))
    assert proc.returncode == 2
    assert "broken.yaml, line" in proc.stderr and "invalid YAML" in proc.stderr
    assert "conflicts with" in proc.stderr
    assert "2 failed" in proc.stdout
    assert all(p.read_text() == t for p, t in texts.items())  # left untouched
    assert "task_sampling_alpha" not in (legacy_dir / "alpha_only.yaml").read_text()  # others done
