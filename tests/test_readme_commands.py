"""Every shell command in README.md's code blocks is real and exercised somewhere.

* ``python -m admet.<area> <sub> [flags]`` (also one quoted in a ``# then: ...`` comment)
  parses with that area's own ``build_parser()`` (argparse, nothing is run), and every
  ``--flag`` is an exact option of the subcommand (argparse would accept an abbreviation).
* Each such command is run end to end by some test (a test module that invokes the same
  area, subcommand and flags) unless it is listed in ``NOT_RUN_END_TO_END`` with a reason.
* Any other command is listed in ``OTHER_COMMANDS`` with the CI step or test that runs it,
  and ``.ci/run`` does run the ones attributed to it.
"""

from __future__ import annotations

import argparse
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
# Test modules that only parse commands (they run nothing end to end).
PARSE_ONLY = {"test_deployment.py", "test_deploy_recipes.py", Path(__file__).name}

# Commands other than ``python -m admet.*``: where each is exercised (a key is the first
# words of the command).
OTHER_COMMANDS: dict[str, str] = {
    'pip install torch==2.13.0 -e ".[dev]"': ".ci/run",
    "python -m pytest": ".ci/run",
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


def _test_sources() -> dict[Path, str]:
    return {p: p.read_text() for p in TESTS.rglob("test_*.py") if p.name not in PARSE_ONLY}


def _runs_end_to_end(command: Command, sources: dict[Path, str]) -> list[Path]:
    """Test modules that name the command's module and pass its subcommand and every flag
    as literal arguments (a heuristic: ``"refit", "--members", "3"``)."""
    module, sub, flags = _key(command.argv)
    return [
        path
        for path, text in sources.items()
        if module in text and f'"{sub}"' in text and all(f'"{f}"' in text for f in flags)
    ]


@pytest.mark.parametrize("command", ADMET, ids=str)
def test_admet_command_is_run_by_a_test_or_listed(command):
    listed = shlex.join(command.argv[2:])
    if listed in NOT_RUN_END_TO_END:
        return
    assert _runs_end_to_end(command, _test_sources()), (
        f"{command}: no test runs it; run it in a test or add {listed!r} to NOT_RUN_END_TO_END"
    )


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
    if OTHER_COMMANDS[matches[0]] == ".ci/run":
        ci = [c.argv for c in shell_commands((ROOT / ".ci" / "run").read_text())]
        assert any(argv[: len(command.argv)] == command.argv for argv in ci), (
            f"{command}: .ci/run does not run it"
        )
