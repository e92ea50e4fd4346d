"""Every shell command in README.md's code blocks is real and exercised somewhere.

* ``python -m admet.<area> <sub> [flags]`` (also one quoted in a ``# then: ...`` comment)
  parses with that area's own ``build_parser()`` (argparse, nothing is run), and every
  ``--flag`` is an exact option of the subcommand (argparse would accept an abbreviation).
* Each such command is run end to end by the tests ``README_TESTS`` names for it (pytest node
  ids), unless it is listed in ``NOT_RUN_END_TO_END`` with a reason. Every named test must
  exist (found by AST in its file) and invoke the command: the string literals of the test
  function, and of the functions it calls (in its own module or imported from another test
  module or conftest), hold the command's module, subcommand and every flag, and the scheme
  of every URL the README passes (``grpc://``).
* Any other command is listed in ``OTHER_COMMANDS`` with the CI step or test that runs it,
  and ``.ci/run`` does run the ones attributed to it.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from admet.paths import project_root

ROOT = project_root()
README = ROOT / "README.md"
TESTS = ROOT / "tests"

# README commands (as written, after ``python -m``) that no test runs end to end, and why;
# the parser check still applies to them.
NOT_RUN_END_TO_END: dict[str, str] = {
    "admet.hpo run --study joint_sampling": "the full study takes hours; tests run the same "
    "command with tiny overrides (tests/hpo/test_hpo_service.py, tests/test_compose_stack.py)",
    "admet.hpo serve-storage --storage postgresql://admet@db.example/admet_studies --host 0.0.0.0 "
    "--port 13000 --insecure": "tests/hpo/test_grpc_tls.py runs serve-storage --host 0.0.0.0 "
    "--insecure on a SQLite file (the README's host is an example)",
}
# README commands (as written, after ``python -m``) and the tests that run them end to end.
_TINY_STUDY = "tests/hpo/test_hpo_service.py::test_tiny_study_end_to_end_on_embedded_sqlite"
_NO_TEST_SPLIT = "tests/benchmark/test_no_test_split.py::test_study_refit_and_train_run_without_test_splits"
_PROXY = "tests/hpo/test_grpc_storage.py::test_two_workers_through_the_proxy_on_sqlite"
README_TESTS: dict[str, list[str]] = {
    "admet.hpo run --study joint_sampling optimization.max_epochs=2 ensemble.n_members=2 "
    "data.max_molecules=300 n_trials=4": [_TINY_STUDY, _NO_TEST_SPLIT],
    "admet.hpo status": [_TINY_STUDY],
    "admet.hpo best --export best.yaml": [_TINY_STUDY, _NO_TEST_SPLIT],
    "admet.model train --config best.yaml --out runs/best": [
        _NO_TEST_SPLIT,
        "tests/model/test_ensemble.py::test_cli_train_predict_evaluate_ensemble",
    ],
    "admet.hpo refit --members 5 --max-epochs 60 --out runs/best": [_NO_TEST_SPLIT],
    "admet.model predict --model runs/best --input new.csv --output preds.csv": [
        "tests/hpo/test_refit.py::test_refit_best_trial_then_predict",
        "tests/model/test_ensemble.py::test_cli_train_predict_evaluate_ensemble",
    ],
    "admet.hpo report --out report/": [_TINY_STUDY],
    "admet.hpo sync-mlflow": [
        "tests/hpo/test_hpo_service.py::test_mlflow_down_then_sync_creates_each_run_once"
    ],
    "admet.hpo dashboard": [
        "tests/hpo/test_hpo_service.py::test_dashboard_serves_the_study_on_loopback",
        "tests/hpo/test_dashboard_browser.py::test_dashboard_shows_the_trials_parity_plot_and_config_in_a_browser",
    ],
    "admet.hpo run --study joint_sampling --storage grpc://proxy.example:13000": [_PROXY],
    "admet.hpo status --storage grpc://proxy.example:13000": [_PROXY],
    "admet.config migrate configs/": [
        "tests/config/test_config_migrate.py::test_migration_rewrites_preserving_comments_order_unknown_sections"
    ],
    "admet.config migrate configs/ --check": [
        "tests/config/test_config_migrate.py::test_check_reports_files_needing_migration_and_writes_nothing"
    ],
    "admet.model train --config configs/ensemble_curriculum.yaml": [
        "tests/config/test_legacy_configs.py::test_legacy_ensemble_trains_on_its_folds_and_predicts_test_and_blind"
    ],
    "admet.hpo run --study-file configs/1-hpo-single/hpo_chemprop.yaml": [
        "tests/config/test_ray_tune.py::test_converted_study_runs_end_to_end"
    ],
}

# Commands other than ``python -m admet.*``: where each is exercised (a key is the first
# words of the command).
OTHER_COMMANDS: dict[str, str] = {
    "make install": ".ci/run",
    "make test": ".ci/run",
    "make run": "Makefile: the target runs the README's main job, "
    "python -m admet.hpo run --study joint_sampling (not run: the full study takes hours)",
    "python3 -m venv .venv": "Makefile: the install target makes the env (.ci/run: make install)",
    ". .venv/bin/activate": "Makefile: its targets call .venv/bin/python instead",
    'pip install torch==2.13.0 -e ".[dev]"': "Makefile: the install target (.ci/run: make install)",
    "python -m pytest": "Makefile: the test target (.ci/run: make test)",
    "export": "sets the environment of the commands that follow",
    "createdb": "not run: an administrator's step on the database host (the tests create "
    "their databases with SQL)",
}


@dataclass(frozen=True)
class Command:
    line: int
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"README.md:{self.line}: {shlex.join(self.argv)}"


def _split_comment(line: str) -> tuple[str, str]:
    """(code, comment) of a shell line: the first ``#`` outside quotes after a blank."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i], line[i + 1 :]
    return line, ""


def _simple_commands(code: str) -> list[list[str]]:
    lexer = shlex.shlex(code, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    commands, current, skip = [], [], False
    for token in lexer:
        if skip:
            skip = False
        elif token in (";", "&&", "||", "|", "&"):
            commands.append(current)
            current = []
        elif token in (">", ">>", "<", ">&", "&>"):
            if current and current[-1].isdigit():  # 2>&1: the descriptor is no argument
                current.pop()
            skip = True
        else:
            current.append(token)
    commands.append(current)
    out = []
    for argv in commands:
        while argv and (argv[0] in ("do", "then", "nohup", "time") or re.match(r"[A-Z_]+=", argv[0])):
            argv = argv[1:]
        if argv and argv[0] not in ("for", "done", "fi"):
            out.append(argv)
    return out


def shell_commands(script: str, first_line: int = 1) -> list[Command]:
    """The simple commands of a shell script (continuation lines joined), with those quoted
    as ``python -m admet.*`` in its comments."""
    lines = script.split("\n")
    found: list[Command] = []
    i = 0
    while i < len(lines):
        start, logical = i, lines[i]
        while _split_comment(logical)[0].rstrip().endswith("\\") and i + 1 < len(lines):
            logical = _split_comment(logical)[0].rstrip()[:-1] + " " + lines[i + 1]
            i += 1
        i += 1
        code, comment = _split_comment(logical)
        try:
            argvs = _simple_commands(code)
        except ValueError:  # shell syntax beyond shlex (a heredoc, ...): not a README command
            continue
        for argv in argvs:
            found.append(Command(first_line + start, tuple(argv)))
        for quoted in re.findall(r"python -m admet\.\w+[^#;|&>]*", comment):
            found.append(Command(first_line + start, tuple(shlex.split(quoted))))
    return found


def readme_commands() -> list[Command]:
    text = README.read_text()
    found: list[Command] = []
    for block in re.finditer(r"^```(bash|sh|shell|console)\n(.*?)^```", text, flags=re.M | re.S):
        found += shell_commands(block.group(2), text[: block.start(2)].count("\n") + 1)
    return found


COMMANDS = readme_commands()
ADMET = [c for c in COMMANDS if c.argv[:2] == ("python", "-m") and c.argv[2].startswith("admet.")]
OTHER = [c for c in COMMANDS if c not in ADMET]


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices[name]


def _key(argv: tuple[str, ...]) -> tuple[str, str, tuple[str, ...]]:
    """(module, subcommand, its --flags in order) of ``python -m admet.X SUB ...``."""
    flags = tuple(dict.fromkeys(a.split("=", 1)[0] for a in argv[4:] if a.startswith("--")))
    return argv[2], argv[3], flags


def test_readme_has_the_commands_it_should():
    assert len(ADMET) >= 10, [str(c) for c in ADMET]
    subs = {(c.argv[2], c.argv[3]) for c in ADMET}
    for expected in ("run", "status", "best", "refit", "report", "sync-mlflow", "dashboard"):
        assert ("admet.hpo", expected) in subs, expected


@pytest.mark.parametrize("command", ADMET, ids=str)
def test_admet_command_parses_with_exact_flags(command):
    module = importlib.import_module(f"{command.argv[2]}.__main__")
    parser = module.build_parser()
    args = parser.parse_args(list(command.argv[3:]))  # SystemExit(2) if not a real command
    assert args.command == command.argv[3]
    options = set(_subparser(parser, command.argv[3])._option_string_actions)
    for flag in _key(command.argv)[2]:
        assert flag in options, f"{command}: {flag} is not an option of {command.argv[3]} (abbreviated?)"


def _defs(tree: ast.Module) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """Its functions by name (``Class::method`` for a method), as pytest names them."""
    out: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out[f"{node.name}::{item.name}"] = item
    return out


def _test_module(name: str) -> Path | None:
    """The file of a test module imported by its bare name (tests/ is on sys.path)."""
    found = sorted(TESTS.rglob(f"{name.rsplit('.', 1)[-1]}.py"))
    return found[0] if found else None


def _invoked_words(path: Path, name: str) -> set[str] | None:
    """The string literals of test ``name`` in ``path`` and of every function it calls,
    transitively, in its module or imported from another test module: the words of the
    argv it can build. None when there is no such test."""
    parsed: dict[Path, tuple[dict, dict]] = {}

    def load(file: Path) -> tuple[dict, dict]:
        if file not in parsed:
            tree = ast.parse(file.read_text())
            imported = {}
            for node in tree.body:
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    source = _test_module(node.module)
                    if source is not None and not node.module.startswith("admet"):
                        imported |= {a.asname or a.name: (source, a.name) for a in node.names}
            parsed[file] = (_defs(tree), imported)
        return parsed[file]

    defs, _ = load(path)
    if name not in defs:
        return None
    words: set[str] = set()
    todo, seen = [(path, defs[name])], set()
    while todo:
        file, fn = todo.pop()
        if (file, fn.name, fn.lineno) in seen:
            continue
        seen.add((file, fn.name, fn.lineno))
        file_defs, imported = load(file)
        for node in ast.walk(fn):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                words.add(node.value)
            elif isinstance(node, ast.Name) and node.id != fn.name:
                if node.id in file_defs:
                    todo.append((file, file_defs[node.id]))
                elif node.id in imported:
                    source, original = imported[node.id]
                    target = load(source)[0].get(original)
                    if target is not None:
                        todo.append((source, target))
    return words


def _required_words(command: Command) -> list[str]:
    """What a test's literals must hold to run the command: module, subcommand, flags and
    each URL scheme the README passes."""
    module, sub, flags = _key(command.argv)
    schemes = [re.match(r"[a-z+]+://", a)[0] for a in command.argv[4:] if re.match(r"[a-z+]+://", a)]
    return [module, sub, *flags, *schemes]


@pytest.mark.parametrize("command", ADMET, ids=str)
def test_admet_command_is_run_by_its_tests_or_listed(command):
    listed = shlex.join(command.argv[2:])
    if listed in NOT_RUN_END_TO_END:
        assert listed not in README_TESTS, f"{listed!r} is in both NOT_RUN_END_TO_END and README_TESTS"
        return
    assert README_TESTS.get(listed), (
        f"{command}: name the tests that run it in README_TESTS, or add {listed!r} to NOT_RUN_END_TO_END"
    )
    for node in README_TESTS[listed]:
        file, _, name = node.partition("::")
        path = ROOT / file
        assert path.is_file(), f"{command}: {node}: no such test file"
        words = _invoked_words(path, name.split("[")[0])
        assert words is not None, f"{command}: {node}: no such test in {file}"
        # a flag or word is a literal of its own; a URL scheme starts one (an f-string's text)
        missing = [
            w
            for w in _required_words(command)
            if w not in words and not ("://" in w and any(x.startswith(w) for x in words))
        ]
        assert not missing, f"{command}: {node} does not invoke it (no literal {missing})"


def test_readme_tests_list_is_current():
    written = {shlex.join(c.argv[2:]) for c in ADMET}
    assert set(README_TESTS) <= written, set(README_TESTS) - written


def test_not_run_list_is_current():
    written = {shlex.join(c.argv[2:]) for c in ADMET}
    assert set(NOT_RUN_END_TO_END) <= written, set(NOT_RUN_END_TO_END) - written


@pytest.mark.parametrize("command", OTHER, ids=str)
def test_other_command_is_exercised(command):
    text = shlex.join(command.argv)
    matches = [
        k
        for k in OTHER_COMMANDS
        if text == k or text.startswith(k + " ") or shlex.split(k) == list(command.argv)
    ]
    assert matches, f"{command}: say in OTHER_COMMANDS which CI step or test runs it"
    if OTHER_COMMANDS[matches[0]].startswith("Makefile:") and command.argv[0] not in ("make", "."):
        recipes = [
            tuple(shlex.split(part))
            for line in (ROOT / "Makefile").read_text().splitlines()
            if line.startswith("\t")
            for part in re.split(
                r"\|\||&&",
                line.replace("$(VENV)/bin/", "").replace("$(VENV)", ".venv").replace("$(PYTHON)", "python3"),
            )
        ]
        n = len(command.argv)
        assert any(r[:n] == command.argv for r in recipes), f"{command}: the Makefile does not run it"
    if OTHER_COMMANDS[matches[0]] == ".ci/run":
        ci = [c.argv for c in shell_commands((ROOT / ".ci" / "run").read_text())]
        assert any(argv[: len(command.argv)] == command.argv for argv in ci), (
            f"{command}: .ci/run does not run it"
        )


def test_ci_runs_every_test_slow_ones_included():
    """CONTRIBUTING's loop leaves out ``-m slow``; CI must not: ``make test`` without ARGS,
    whose recipe is a plain ``python -m pytest``."""
    ci = [c.argv for c in shell_commands((ROOT / ".ci" / "run").read_text())]
    test_runs = [argv for argv in ci if argv[:2] == ("make", "test")]
    assert test_runs, ".ci/run runs no make test"
    assert all(not any(a.startswith("ARGS=") for a in argv) for argv in test_runs), test_runs
    recipe = (ROOT / "Makefile").read_text().split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "$(VENV)/bin/python -m pytest $(ARGS)" in recipe, recipe


def test_make_run_is_the_readme_main_job():
    """``make run`` (quick start step 2) is the study command the manual steps give."""
    recipe = (ROOT / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "$(VENV)/bin/python -m admet.hpo run --study joint_sampling $(ARGS)" in recipe
    assert any(c.argv == ("python", "-m", "admet.hpo", "run", "--study", "joint_sampling") for c in ADMET)
