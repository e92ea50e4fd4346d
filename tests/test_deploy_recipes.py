"""deploy/kubernetes and deploy/slurm: real project commands, documented variables, no
literal password; the Slurm script is run (with a stand-in ``python``) as a task would."""

from __future__ import annotations

import importlib
import os
import re
import shlex
import stat
import subprocess

import pytest
import yaml

from admet.paths import project_root

ROOT = project_root()
K8S = ROOT / "deploy" / "kubernetes"
SLURM = ROOT / "deploy" / "slurm" / "hpo-workers.sbatch"
DOCS = [*(K8S.glob("*.yaml")), SLURM, K8S / "README.md"]


def _objects() -> list[dict]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        out += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


OBJECTS = _objects()


def _by_kind(kind: str) -> list[dict]:
    return [o for o in OBJECTS if o["kind"] == kind]


def _named(kind: str, name: str) -> dict:
    (obj,) = [o for o in _by_kind(kind) if o["metadata"]["name"] == name]
    return obj


def _containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


def _parse_project_command(argv: list[str]):
    """``python -m admet.<area> ARGS`` parsed by that area's own parser (SystemExit if a
    subcommand or flag does not exist)."""
    assert argv[:2] == ["python", "-m"] and argv[2].startswith("admet."), argv
    module = importlib.import_module(f"{argv[2]}.__main__")
    return module.build_parser().parse_args(argv[3:])


def _read_in_src() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "src").rglob("*.py"):
        names |= set(re.findall(r"[\"']([A-Z][A-Z0-9_]{2,})[\"']", path.read_text()))
    return names


def _documented(name: str) -> bool:
    env_example = (ROOT / ".env.example").read_text()
    return name in _read_in_src() or re.search(rf"\b{name}\b", env_example) is not None


def _env_set_by(container: dict) -> dict[str, dict]:
    """name -> its entry (``value`` or ``valueFrom``), ConfigMaps of ``envFrom`` included."""
    env = {e["name"]: e for e in container.get("env", [])}
    config_maps = {o["metadata"]["name"]: o for o in _by_kind("ConfigMap")}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        assert ref in config_maps, f"envFrom names ConfigMap {ref!r}, which no manifest defines"
        env.update({k: {"name": k, "value": v} for k, v in config_maps[ref]["data"].items()})
    return env


def test_manifests_parse_with_api_versions_and_names():
    kinds = sorted(o["kind"] for o in OBJECTS)
    assert {"Job", "Deployment", "Service", "ConfigMap"} <= set(kinds)
    for obj in OBJECTS:
        assert obj["apiVersion"] and obj["metadata"]["name"], obj
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", obj["metadata"]["name"])


def test_worker_job_runs_the_worker_command_in_parallel():
    (job,) = _by_kind("Job")
    assert isinstance(job["spec"]["parallelism"], int) and job["spec"]["parallelism"] >= 2
    assert "completions" not in job["spec"]  # a work queue: done when the workers are
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")
    (worker,) = _containers(job)
    argv = [*worker["command"], *worker.get("args", [])]
    assert argv[:6] == ["python", "-m", "admet.hpo", "run", "--study", "joint_sampling"]
    args = _parse_project_command(argv)
    assert args.command == "run" and args.study == "joint_sampling"


def test_dashboard_deployment_and_service_match():
    deployment = _named("Deployment", "admet-dashboard")
    service = _named("Service", "admet-dashboard")
    (container,) = _containers(deployment)
    args = _parse_project_command([*container["command"], *container.get("args", [])])
    assert args.command == "dashboard" and args.host == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert args.port in ports.values()
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert ports.get(port["targetPort"], port["targetPort"]) == args.port
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"].startswith("/api/") and ports.get(probe["port"], probe["port"]) == args.port


def test_volumes_and_claims_exist():
    claims = {o["metadata"]["name"] for o in _by_kind("PersistentVolumeClaim")}
    for obj in [*_by_kind("Job"), *_by_kind("Deployment")]:
        pod = obj["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            for mount in container.get("volumeMounts", []):
                volume = volumes[mount["name"]]
                if "persistentVolumeClaim" in volume:
                    assert volume["persistentVolumeClaim"]["claimName"] in claims
    # workers write the artifact store the dashboard reads: the same claim, same path
    (job,) = _by_kind("Job")
    deployment = _named("Deployment", "admet-dashboard")
    for obj in (job, deployment):
        (container,) = _containers(obj)
        where = _env_set_by(container)["ADMET_HPO_ARTIFACTS"]["value"]
        assert where in {m["mountPath"] for m in container["volumeMounts"]}


def test_storage_proxy_serves_mutual_tls_from_secrets():
    deployment = _named("Deployment", "admet-storage-proxy")
    service = _named("Service", "admet-storage-proxy")
    assert deployment["spec"]["replicas"] == 1
    (container,) = _containers(deployment)
    args = _parse_project_command([*container["command"], *container.get("args", [])])
    assert args.command == "serve-storage" and args.host == "0.0.0.0" and not args.insecure
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    for path in (args.tls_cert, args.tls_key, args.tls_client_ca):
        (name,) = [n for n, mount in mounts.items() if path.startswith(mount + "/")]
        assert "secret" in volumes[name], name  # certificates and keys come from Secrets
    readme = (K8S / "README.md").read_text()
    for volume in volumes.values():
        assert volume["secret"]["secretName"] in readme
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == args.port
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


@pytest.mark.parametrize(
    ("kind", "name"),
    [("Job", "admet-hpo-workers"), ("Deployment", "admet-dashboard"), ("Deployment", "admet-storage-proxy")],
)
def test_every_variable_is_documented_and_the_password_comes_from_a_secret(kind, name):
    obj = _named(kind, name)
    (container,) = _containers(obj)
    env = _env_set_by(container)
    undocumented = sorted(name for name in env if not _documented(name))
    assert not undocumented, f"set but neither read in src/ nor in .env.example: {undocumented}"
    secret = env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
    assert "value" not in env["PGPASSWORD"]
    # the README says how to create exactly that Secret and key
    readme = (K8S / "README.md").read_text()
    assert f"kubectl create secret generic {secret['name']} --from-literal={secret['key']}=" in readme
    storage = env["ADMET_HPO_STORAGE"]["value"]
    assert storage.startswith("postgresql://") and not re.search(r"://[^/@]*:[^/@]*@", storage)


def test_no_literal_password_anywhere():
    assert not _by_kind("Secret"), "a Secret manifest would hold the password: create it with kubectl"
    for path in DOCS:
        text = path.read_text()
        for match in re.finditer(r"://[^\s/@:'\"]+:([^\s/@'\"]+)@", text):
            assert match.group(1).startswith("$"), f"{path.name}: {match.group(0)}"
        for match in re.finditer(r"(?im)^[#\s]*(?:export\s+)?\w*PASSWORD\w*\s*[=:]\s*(\S+)", text):
            value = match.group(1)
            assert value in ("...", "|") or value.startswith(("$", '"$')), f"{path.name}: {match.group(0)}"
        assert '--from-literal=password="$' in text or "--from-literal" not in text


# -- Slurm ----------------------------------------------------------------------------------


def _sbatch_options() -> dict[str, str]:
    opts = {}
    for line in SLURM.read_text().splitlines():
        if line.startswith("#SBATCH "):
            key, _, value = line[len("#SBATCH ") :].strip().partition("=")
            opts[key] = value
    return opts


def test_slurm_script_is_an_array_job_with_one_gpu_per_task():
    opts = _sbatch_options()
    assert re.fullmatch(r"\d+-\d+(%\d+)?", opts["--array"])
    assert opts["--gres"] == "gpu:1"
    assert "CUDA_VISIBLE_DEVICES=" not in SLURM.read_text().replace("CUDA_VISIBLE_DEVICES=${", "")
    assert subprocess.run(["bash", "-n", str(SLURM)]).returncode == 0
    # variables it sets itself (export/assignments) are documented
    assigned = set(re.findall(r"(?m)^\s*(?:export\s+)?([A-Z_][A-Z0-9_]*)=", SLURM.read_text()))
    assert all(_documented(name) for name in assigned), assigned


def test_slurm_task_runs_a_real_worker_command(tmp_path):
    """Run the script as Slurm would run one task, with a ``python`` that records its
    arguments: the command it runs parses with the project's own parser."""
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/argv\nenv > {tmp_path}/env\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {
        "PATH": f"{fake.parent}:{os.environ['PATH']}",
        "SLURM_ARRAY_TASK_ID": "1",
        "SLURM_ARRAY_JOB_ID": "42",
        "SLURM_SUBMIT_DIR": str(tmp_path),
        "CUDA_VISIBLE_DEVICES": "3",  # what Slurm sets from --gres=gpu:1
        "ADMET_HPO_STORAGE": "postgresql://admet@db.example:5432/admet_studies",
    }
    done = subprocess.run(["bash", str(SLURM)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "CUDA_VISIBLE_DEVICES=3" in done.stdout
    argv = ["python", *(tmp_path / "argv").read_text().splitlines()]
    args = _parse_project_command(argv)
    assert args.command == "run" and args.study == "joint_sampling"
    task_env = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines() if "=" in line)
    assert task_env["CUDA_VISIBLE_DEVICES"] == "3"  # Slurm's GPU reaches the worker untouched
    assert task_env["ADMET_HPO_STORAGE"] == env["ADMET_HPO_STORAGE"]

    env.pop("ADMET_HPO_STORAGE")  # the storage must come from the environment
    missing = subprocess.run(["bash", str(SLURM)], env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "ADMET_HPO_STORAGE" in missing.stderr


def test_slurm_usage_lines_are_real_commands():
    usage = [
        shlex.split(line.lstrip("# ").split("#")[0])
        for line in SLURM.read_text().splitlines()
        if line.startswith("#   sbatch")
    ]
    assert usage and all(u[0] == "sbatch" and u[-1] == "deploy/slurm/hpo-workers.sbatch" for u in usage)
    assert (ROOT / usage[0][-1]).is_file()
