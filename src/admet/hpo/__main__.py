"""``python -m admet.hpo``: run and inspect Optuna studies of Chemprop ensembles.

    run --study joint_sampling [key=value ...]   join (or start) the study as a worker
    run --study-file PATH                        the same for a study file (or a Ray Tune
                                                 HPO file of the original project)
    refit [--trial N]                            retrain a trial as a full-budget ensemble
    status | best [--export F] | report --out D  inspect it
    best --chemprop-config T                     the best trial as a Chemprop CLI config
    sync-mlflow                                  create or complete missing MLflow runs
    dashboard [--host H] [--port P]              optuna-dashboard on the same storage
    serve-storage [--host H] [--port P]          Optuna's gRPC storage proxy in front of the
                                                 database: workers then use grpc://H:P
    run --gpus all|N|0,1 [--workers-per-gpu W]   one worker per GPU (x W) from one command

Every subcommand takes ``--storage URL`` (default: ``ADMET_HPO_STORAGE``, else
``./admet-studies.db``); ``grpc://HOST:PORT`` is a ``serve-storage`` proxy.

Over 350 lines because it is the argument parser and a small handler for each of the
subcommands above; their work is in the modules they call.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from admet.errors import AdmetError, cli_errors

# a base config's training folder that `run` prepares when missing -> the tiers it adds
# (studies/joint_sampling.yaml reads data/fang2023, studies/tiers.yaml data/fang2023_low)
_PREPARED: dict[str, list[str]] = {"fang2023": [], "fang2023_low": ["low"]}


def build_parser() -> argparse.ArgumentParser:
    usage = (__doc__ or "").split("\n\nOver 350 lines")[0]  # --help shows the commands, not the note
    parser = argparse.ArgumentParser(
        prog="python -m admet.hpo", description=usage, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument(
            "--study",
            "--study-file",
            dest="study",
            default="joint_sampling",
            help="name in studies/ or a YAML path (a Ray Tune HPO file is converted on the fly)",
        )
        p.add_argument("--storage", default=None, help="study storage URL")
        p.add_argument(
            "--name",
            default=None,
            help="the study's name in the storage (default: the study file's name)",
        )
        p.add_argument("--quiet", action="store_true", help="warnings only, no progress bar")
        return p

    run = add("run", "run trials as one worker until the study budget is spent")
    run.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="study keys (n_trials, seed, heartbeat_interval, grace_period, max_retry) "
        "or base run-config keys",
    )
    run.add_argument(
        "--worker-index",
        type=int,
        default=None,
        help="sampler seed offset (default: next free index registered in the study)",
    )
    run.add_argument(
        "--allow-space-change",
        action="store_true",
        help="run an existing study although its search space was edited (trials of both spaces mix)",
    )
    run.add_argument(
        "--device",
        default=None,
        metavar="DEV",
        help="device of this worker's trials: cuda:K, cuda, cpu (sets optimization.accelerator)",
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="start no trial after this many seconds (the trial in progress finishes), "
        "as Optuna's optimize(timeout=...)",
    )
    run.add_argument(
        "--gpus",
        default=None,
        metavar="all|N|0,1",
        help="start one worker per GPU (all, the first N, or these ids) and wait for them",
    )
    run.add_argument(
        "--max-db-connections",
        type=int,
        default=None,
        metavar="N",
        help="database connections this worker's pool may hold (default 2: the worker loop and "
        "the heartbeat; ADMET_MAX_DB_CONNECTIONS)",
    )
    run.add_argument(
        "--workers-per-gpu", type=int, default=1, metavar="W", help="workers per GPU with --gpus (default 1)"
    )
    add("status", "trial counts, best value, running trials, ETA")
    best = add("best", "best trial(s) and their full run config")
    best.add_argument("--export", default=None, help="write the best run config YAML here")
    best.add_argument(
        "--chemprop-config",
        default=None,
        metavar="TOML",
        help="write the best trial's model settings as a 'chemprop train --config-path' TOML here "
        "(regression heads only, unless --substitute-head)",
    )
    best.add_argument(
        "--substitute-head",
        action="store_true",
        help="with --chemprop-config: write a head Chemprop cannot express (branched, moe) as "
        "Chemprop's plain FFN of the same depth, and say so in the file",
    )
    refit = add("refit", "train the best (or a chosen) trial's config as a full-budget ensemble")
    refit.add_argument("--trial", type=int, default=None, help="trial number (default: the best trial)")
    refit.add_argument(
        "--members",
        type=int,
        default=None,
        help="ensemble members (default: the study's refit.members, else 5)",
    )
    refit.add_argument(
        "--max-epochs", type=int, default=None, help="default: the study's refit.max_epochs, else the trial's"
    )
    refit.add_argument("--out", default=None, help="model folder (default: models/<study>-trial<N>)")
    refit.add_argument(
        "--export",
        default=None,
        metavar="YAML",
        help="write the config the refit would train here, train nothing (to use it elsewhere)",
    )
    refit.add_argument(
        "overrides", nargs="*", metavar="key=value", help="run-config changes (not sampled keys)"
    )
    report = add("report", "plots (HTML + PNG) and a markdown summary")
    report.add_argument("--out", required=True)
    sync = add("sync-mlflow", "mirror finished trials to MLflow (idempotent)")
    sync.add_argument(
        "--tracking-uri", default=None, help="default: the base config's, then MLFLOW_TRACKING_URI"
    )
    dash = add("dashboard", "serve optuna-dashboard on the study storage")
    dash.add_argument("--host", default="127.0.0.1")
    dash.add_argument("--port", type=int, default=8080)
    serve = sub.add_parser("serve-storage", help="Optuna's gRPC storage proxy in front of the study database")
    serve.add_argument("--storage", default=None, help="the database URL (sqlite:// or postgresql://)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    serve.add_argument("--port", type=int, default=13000)
    serve.add_argument("--tls-cert", default=None, help="PEM certificate chain: serve grpcs:// (TLS)")
    serve.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    serve.add_argument(
        "--tls-client-ca",
        default=None,
        help="PEM CA: require every client to present a certificate it signed (mutual TLS)",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without TLS (a private network only)",
    )
    serve.add_argument("--quiet", action="store_true", help="warnings only")
    return parser


def _load_study(args: argparse.Namespace):
    import optuna

    from admet.hpo.spec import load_study_spec
    from admet.hpo.storage import open_storage, resolve_storage_url
    from admet.redact import mask_url

    spec = load_study_spec(args.study, [f"name={args.name}"] if args.name else [])
    url = resolve_storage_url(args.storage)
    storage = open_storage(url)
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        raise AdmetError(
            f"no study {spec.name!r} in {mask_url(url)}; start it with "
            f"'python -m admet.hpo run --study {args.study}'"
        ) from None
    return spec, study


def _run(args: argparse.Namespace) -> int:
    from admet.data import fang2023
    from admet.data.training import resolve_path
    from admet.hpo.gpus import check_device, run_gpu_workers
    from admet.hpo.runner import run_worker
    from admet.hpo.spec import load_study_spec
    from admet.hpo.storage import open_storage

    if args.max_db_connections is not None:  # inherited by --gpus children
        os.environ["ADMET_MAX_DB_CONNECTIONS"] = str(args.max_db_connections)
        from admet.hpo.db_connections import worker_connections

        worker_connections()  # a bad value fails here, in one line
    if args.gpus is not None:
        if args.device is not None:
            raise AdmetError("--device and --gpus exclude each other (--gpus sets each worker's device)")
        load_study_spec(args.study, args.overrides)  # a bad study fails once, not in every child
        return run_gpu_workers(args)
    overrides = list(args.overrides)
    if args.name:
        overrides.append(f"name={args.name}")
    if args.device is not None:
        overrides.append(f"optimization.accelerator={check_device(args.device)}")
    spec = load_study_spec(args.study, overrides)
    base = spec.base_run_config()
    open_storage(args.storage)  # an unreachable storage fails before anything is written
    train = resolve_path(base.data.train_file)
    if not train.is_file() and train.parent.name in _PREPARED:
        print(f"preparing fang2023 into {train.parent} (first run)", flush=True)
        fang2023.prepare(out=train.parent, augment=_PREPARED[train.parent.name], progress=not args.quiet)
    result = run_worker(
        spec,
        args.storage,
        mlflow_enabled=base.mlflow.enabled,
        worker_index=args.worker_index,
        progress=not args.quiet,
        allow_space_change=args.allow_space_change,
        timeout=args.timeout,
    )
    if result.already_complete:
        print(
            f"study {spec.name!r} is complete: {result.finished_in_study} finished trial(s) "
            f"of {spec.n_trials}"
        )
    else:
        print(
            f"worker {result.worker_index} ran {result.trials_run} trial(s); study "
            f"{spec.name!r} has {result.finished_in_study}/{spec.n_trials} finished"
        )
    return 0


def _status(args: argparse.Namespace) -> int:
    from admet.hpo.summary import status_text

    spec, study = _load_study(args)
    print(status_text(study, int(study.user_attrs.get("n_trials", spec.n_trials))))
    return 0


def _best(args: argparse.Namespace) -> int:
    import yaml

    from admet.hpo.summary import best_trials, export_best

    _, study = _load_study(args)
    trials = best_trials(study)
    best_config = None
    if args.chemprop_config:  # checked first: a head Chemprop cannot express writes nothing
        from admet.config import load_config
        from admet.hpo.summary import trial_config
        from admet.model.chemprop_export import chemprop_train_config

        best_config = load_config(trial_config(trials[0]))
        chemprop_train_config(best_config, substitute_head=args.substitute_head)
    for t in trials:
        print(f"trial {t.number}: values {[round(v, 5) for v in t.values]}")
        print(yaml.safe_dump(t.params, sort_keys=False).rstrip())
    if best_config is not None:
        from admet.model.chemprop_export import write_chemprop_config

        header = f"# best trial {trials[0].number} of study {study.study_name!r}; values {trials[0].values}\n"
        path = write_chemprop_config(
            best_config, args.chemprop_config, header, substitute_head=args.substitute_head
        )
        print(f"wrote {path} (chemprop train --config-path {path} -i TRAIN.csv -o DIR)")
    if args.export:
        path = export_best(trials[0], args.export)
        print(f"wrote {path} (python -m admet.model train --config {path} --out DIR)")
    return 0


def _refit(args: argparse.Namespace) -> int:
    from admet.hpo.refit import pick_trial, refit
    from admet.paths import home

    spec, study = _load_study(args)
    defaults = spec.refit or {}
    members = args.members if args.members is not None else int(defaults.get("members", 5))
    max_epochs = args.max_epochs if args.max_epochs is not None else defaults.get("max_epochs")
    trial = pick_trial(study, args.trial)
    if args.export:
        from admet.config import save_config
        from admet.hpo.refit import refit_config

        _, cfg = refit_config(study, trial.number, members, max_epochs, args.overrides)
        save_config(cfg, args.export)
        print(f"wrote trial {trial.number}'s refit config ({members} members) to {args.export}")
        return 0
    out = args.out or home() / "models" / f"{study.study_name}-trial{trial.number}"
    result = refit(
        study,
        out,
        trial.number,
        members=members,
        max_epochs=max_epochs,
        overrides=args.overrides,
        progress=not args.quiet,
    )
    ens = result.ensemble
    print(
        f"refit trial {trial.number} (study value {trial.values}): {len(ens.members)} members, "
        f"CV MAE {ens.cv_score:.4f}, {ens.fit_seconds:.0f} s; saved to {result.out}"
    )
    if ens.mlflow_run_id:
        print(
            f"MLflow run {ens.mlflow_run_id} "
            f"(tags admet.study={study.study_name}, admet.trial={trial.number})"
        )
    print(f"predict: python -m admet.model predict --model {result.out} --input FILE.csv --output OUT.csv")
    return 0


def _report(args: argparse.Namespace) -> int:
    from admet.hpo.report import write_report

    _, study = _load_study(args)
    files = write_report(study, args.out)
    print(f"wrote {len(files)} file(s) to {args.out}")
    return 0


def _sync(args: argparse.Namespace) -> int:
    from admet.hpo.mlflow_mirror import MlflowMirror
    from admet.hpo.storage import resolve_storage_url

    spec, study = _load_study(args)
    uri = args.tracking_uri or spec.base_run_config().mlflow.tracking_uri
    mirror = MlflowMirror(spec.name, uri, resolve_storage_url(args.storage))
    counts = mirror.sync(study)
    if not counts["available"]:
        raise AdmetError("MLflow is unreachable; nothing was synced (see the warning above)")
    print(
        f"synced {counts['mirrored']} finished trial(s) to MLflow experiment "
        f"'optuna-{spec.name}' ({counts['unfinished']} unfinished skipped)"
    )
    return 0


def _serve_storage(args: argparse.Namespace) -> int:
    from admet.hpo.storage import serve_storage

    serve_storage(
        args.storage,
        args.host,
        args.port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        client_ca=args.tls_client_ca,
        insecure=args.insecure,
    )
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from admet.hpo.dashboard import serve_dashboard

    serve_dashboard(args.storage, args.host, args.port)
    return 0


class _QuietInterrupt(logging.Filter):
    """Drop Optuna's traceback of a trial failed by Ctrl-C or taken over by another worker
    (and its follow-up line): the worker says in one line what happens to the trial."""

    def __init__(self) -> None:
        super().__init__()
        self._interrupted: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        from optuna.exceptions import UpdateFinishedTrialError

        quiet = (KeyboardInterrupt, UpdateFinishedTrialError)
        if record.exc_info and isinstance(record.exc_info[1], quiet):
            self._interrupted.add(message.split(" failed", 1)[0])
            return False
        return not (
            message.endswith("failed with value None.")
            and message.split(" failed", 1)[0] in self._interrupted
        )


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in (
        "admet.sampling.joint",
        "alembic",
        "mlflow",
        "lightning",
        "lightning.pytorch",
        "admet.sampling.curriculum",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import optuna

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for handler in logging.getLogger("optuna").handlers:
        handler.addFilter(_QuietInterrupt())
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    commands = {
        "run": _run,
        "status": _status,
        "best": _best,
        "refit": _refit,
        "report": _report,
        "sync-mlflow": _sync,
        "dashboard": _dashboard,
        "serve-storage": _serve_storage,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
