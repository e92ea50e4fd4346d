"""docker-compose.yml: real project commands, documented variables, no literal password."""

from __future__ import annotations

import importlib
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from admet.paths import project_root

ROOT = project_root()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
ENV_EXAMPLE = (ROOT / ".env.example").read_text()
VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)")


def _command(service: dict) -> list[str]:
    cmd = service.get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def test_expected_services_exist_and_worker_scales():
    services = COMPOSE["services"]
    assert {"postgres", "mlflow", "dashboard", "worker"} <= set(services)
    assert "healthcheck" in services["postgres"]
    assert any("/var/lib/postgresql/data" in v for v in services["postgres"]["volumes"])
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=N works
    assert _command(worker)[:5] == ["python", "-m", "admet.hpo", "run", "--study"]


@pytest.mark.parametrize("name", sorted(COMPOSE["services"]))
def test_every_command_is_a_real_cli_command(name):
    cmd = _command(COMPOSE["services"][name])
    if not cmd:
        return  # the image's own entrypoint (postgres)
    if cmd[:2] == ["python", "-m"]:
        module = importlib.import_module(f"{cmd[2]}.__main__")
        args = module.build_parser().parse_args(cmd[3:])  # raises SystemExit if not a real command
        assert args.command
    else:
        assert shutil.which(cmd[0], path=str(Path(sys.executable).parent)), f"{cmd[0]} not installed"
        if cmd[0] == "mlflow":
            from click.testing import CliRunner
            from mlflow.cli import cli

            assert CliRunner().invoke(cli, [cmd[1], "--help"]).exit_code == 0


def test_every_variable_is_documented_and_no_password_is_written():
    text = (ROOT / "docker-compose.yml").read_text()
    documented = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", ENV_EXAMPLE, flags=re.M))
    used = set(VARIABLE.findall(text))
    assert used, "the compose file uses no variables?"
    assert used <= documented, f"undocumented: {sorted(used - documented)}"
    assert re.search(r"^POSTGRES_PASSWORD=$", ENV_EXAMPLE, flags=re.M)  # empty in the example
    for match in re.finditer(r"^\s*\w*PASSWORD:\s*(\S+)", text, flags=re.M):
        assert match.group(1).startswith("${"), match.group(0)
    # every variable replaced by a marker, a URL's password (if any) must be one of them
    plain = re.sub(r"\$\{[^{}]*\}", "VAR", text)
    for match in re.finditer(r"://[^:\s/@]+:([^@\s/]+)@", plain):
        assert match.group(1) == "VAR", match.group(0)
