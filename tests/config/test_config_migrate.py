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


COMMENTED = Path(__file__).parent / "fixtures" / "commented"


def test_migration_keeps_comments_nulls_and_indentation_of_a_commented_file(tmp_path):
    """Header comments move with their section, inline comments stay on their key, a key
    that is gone is left as a comment saying what became of it, nulls keep their spelling
    and the file keeps its 4-space indentation (expected text written by hand)."""
    from admet.config.legacy import migrate_file

    path = tmp_path / "legacy.yaml"
    path.write_text((COMMENTED / "legacy.yaml").read_text())
    result = migrate_file(path)
    assert result.error is None and result.written
    assert path.read_text() == (COMMENTED / "migrated.yaml").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        before = load_config(yaml.safe_load((COMMENTED / "legacy.yaml").read_text()))
        assert load_config(yaml.safe_load(path.read_text())) == before  # same meaning
    again = migrate_file(path)
    assert not again.changed and path.read_text() == (COMMENTED / "migrated.yaml").read_text()


def test_migration_layout_with_dashes_at_key_column_and_moved_section_at_the_end(tmp_path):
    """Sequences written ``- x`` under their key stay so; a section moved from the end of
    the file takes its header and its first key's comment with it; the trailer stays last."""
    from admet.config.legacy import migrate_file

    path = tmp_path / "end.yaml"
    path.write_text(
        "data:\n"
        "  target_cols:\n"
        "  - LogD   # first\n"
        "  - KSOL\n"
        "optimization:\n"
        "  max_epochs: 2\n"
        "# curriculum at the end\n"
        "curriculum:\n"
        "  # its seed\n"
        "  seed: 7\n"
        "  enabled: true\n"
        "  qualities: [high, low]\n"
        "  patience: ~   # spelled as a tilde\n"
        "# bye\n"
    )
    assert migrate_file(path).written
    assert path.read_text() == (
        "data:\n"
        "  target_cols:\n"
        "  - LogD   # first\n"
        "  - KSOL\n"
        "optimization:\n"
        "  max_epochs: 2\n"
        "joint_sampling:\n"
        "  # its seed\n"
        "  seed: 7\n"
        "  # curriculum at the end\n"
        "  curriculum:\n"
        "    enabled: true\n"
        "    qualities: [high, low]\n"
        "    patience: ~  # spelled as a tilde\n"
        "    count_normalize: false\n"
        "    min_delta: 0.0001\n"
        "    phase_proportions:\n"
        "      warmup:\n"
        "      - 0.9\n"
        "      - 0.1\n"
        "      expand:\n"
        "      - 0.6\n"
        "      - 0.4\n"
        "      polish:\n"
        "      - 1.0\n"
        "      - 0.0\n"
        "  enabled: true\n"
        "  task_oversampling:\n"
        "    alpha: 0.0\n"
        "  composition_mode: multiplicative\n"
        "# bye\n"
    )


def test_file_with_anchors_is_refused_not_expanded(tmp_path):
    """A rewrite would turn aliases and merge keys into copies: the file is left alone."""
    from admet.config.legacy import migrate_file

    path = tmp_path / "anchors.yaml"
    text = "base: &b\n  depth: 2\nmodel:\n  <<: *b\noptimization:\n  task_sampling_alpha: 0.1\n"
    path.write_text(text)
    result = migrate_file(path)
    assert result.error is not None and "anchors" in result.error
    assert path.read_text() == text
