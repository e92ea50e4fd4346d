"""The README's package tree (``## Architecture``) against ``src/admet``: every module and
package appears in it, under its own package, and every file or folder it names exists.

The tree is a code block opening with ``src/admet/``. An entry is a name ending in ``.py``
or ``/`` at the start of a line (indented two spaces per level; several may share a line);
the text after it, up to the next entry of the same or an outer level, describes it, and a
``name.py`` there (not part of a path) is a module of the package that entry is. Packages'
``__init__.py`` and ``__main__.py`` (the ``python -m`` commands, under ## Commands) are
implied, not listed."""

from __future__ import annotations

import re
from pathlib import Path

import admet

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(admet.__file__).parent
IMPLIED = {"__init__.py", "__main__.py"}
MODULE = re.compile(r"(?<![\w/.-])([A-Za-z_]\w*\.py)\b")


def readme_tree(text: str) -> set[str]:
    """The paths (relative to ``src/admet``, folders ending in ``/``) the tree names."""
    section = text.split("## Architecture", 1)[1]
    block = re.search(r"```\nsrc/admet/\n(.*?)```", section, re.S)
    assert block, "no tree of src/admet/ in the README's Architecture section"
    named: set[str] = set()
    stack: list[tuple[int, str]] = []  # (level, folder) of the entries the text is under
    owner = ""  # the folder whose description the current text belongs to
    for line in block.group(1).splitlines():
        indent = len(line) - len(line.lstrip(" "))
        head, _, desc = line.strip().partition("  ")
        tokens = head.split()
        if indent <= 4 and tokens and all(t.endswith((".py", "/")) for t in tokens):
            level = indent // 2
            while stack and stack[-1][0] >= level:
                stack.pop()
            parent = stack[-1][1] if stack else ""
            owner = parent
            for token in tokens:
                named.add(parent + token)
                if token.endswith("/"):
                    stack.append((level, parent + token))
                    owner = parent + token
        else:
            desc = line
        named.update(owner + m for m in MODULE.findall(desc) if m not in IMPLIED)
    return named


def package_tree() -> set[str]:
    found = set()
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if "__pycache__" in rel.parts:
            continue
        for i in range(1, len(rel.parts)):
            found.add("/".join(rel.parts[:i]) + "/")
        if rel.name not in IMPLIED:
            found.add(rel.as_posix())
    return found


def test_every_module_and_package_is_in_the_readme_tree():
    missing = sorted(package_tree() - readme_tree((ROOT / "README.md").read_text()))
    assert not missing, "add to the README's src/admet tree: " + ", ".join(missing)


def test_everything_the_readme_tree_names_exists():
    stale = sorted(readme_tree((ROOT / "README.md").read_text()) - package_tree())
    assert not stale, "the README's src/admet tree names what is not there: " + ", ".join(stale)


def test_the_parser_reads_entries_descriptions_and_nesting():
    text = (
        "## Architecture\n\n```\nsrc/admet/\n"
        "  a.py b.py          two modules\n"
        "  pkg/               x.py (see tests/test_y.py), y.py and\n"
        "                     z.py                              -> config\n"
        "    sub/             _p.py, __init__.py\n"
        "  c.py               the end\n```\n"
    )
    assert readme_tree(text) == {
        "a.py",
        "b.py",
        "pkg/",
        "pkg/x.py",
        "pkg/y.py",
        "pkg/z.py",
        "pkg/sub/",
        "pkg/sub/_p.py",
        "c.py",
    }
