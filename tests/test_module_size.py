"""No module of ``src/admet`` is over 350 lines without saying why: its docstring then has
a line starting "Over 350 lines because" (CONTRIBUTING.md, "Where things go")."""

from __future__ import annotations

import ast
from pathlib import Path

import admet

SRC = Path(admet.__file__).parent
LIMIT = 350
REASON = "Over 350 lines because"


def n_lines(text: str) -> int:
    """Lines as ``wc -l`` counts them."""
    return text.count("\n")


def unexplained(path: Path) -> bool:
    """Whether ``path`` is over the limit with no reason in its module docstring."""
    text = path.read_text()
    if n_lines(text) <= LIMIT:
        return False
    doc = ast.get_docstring(ast.parse(text, str(path))) or ""
    return not any(line.startswith(REASON) for line in doc.splitlines())


def test_every_long_module_says_why_in_its_docstring():
    found = sorted(str(p.relative_to(SRC.parent)) for p in SRC.rglob("*.py") if unexplained(p))
    assert not found, (
        f"over {LIMIT} lines with no {REASON!r} line in the module docstring "
        "(split the module, or say why not): " + ", ".join(found)
    )


def test_the_check_sees_a_long_module_without_a_reason(tmp_path):
    body = "x = 1\n" * LIMIT
    short = tmp_path / "short.py"
    short.write_text('"""Short."""\n' + "x = 1\n" * (LIMIT - 1))
    bare = tmp_path / "bare.py"
    bare.write_text('"""A module."""\n' + body)
    explained = tmp_path / "explained.py"
    explained.write_text(f'"""A module.\n\n{REASON} it must.\n"""\n' + body)
    assert [unexplained(p) for p in (short, bare, explained)] == [False, True, False]
