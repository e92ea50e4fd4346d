"""Write a rewritten YAML mapping back in the layout of the file it came from.

``python -m admet.config migrate`` moves keys between sections. ruamel keeps comments on
the node that happens to precede them, so a moved section left its header comment behind
(or carried the next section's header inside it, at the wrong indentation), a removed
key's comment vanished with it, and ``null`` came back as an empty value. This module does
the layout itself, from the original text:

* every comment is tied to a key path of the original file: a comment on a key's line
  stays on that key's line, a block of comment (and blank) lines stays in front of the key
  that follows it, at the same indentation relative to that key; the block in front of
  the first key is the file's header and stays at the top, the block after the last key
  stays at the end;
* the caller says where each moved path went (``old.path -> new.path``); comments follow
  their key there, re-indented to its new depth;
* a key that no longer exists anywhere is written as a comment where it was, with its
  value, its own comment and what became of it;
* a null is written as the file spelled it (``null``, ``~``, ``Null`` or nothing), a new
  null as ``null``;
* the mapping and sequence indentation is the file's own (measured from it, e.g. 4-space
  files stay 4-space).

Limits: comments are found line by line (``#`` preceded by whitespace, outside a quoted
scalar that starts and ends on the line); lines inside block scalars (``|``, ``>``) are
left alone; multi-line quoted scalars and flow collections spanning lines keep their
values but a ``#`` inside them on a continuation line would be read as a comment.

Over 350 lines because reading the file's layout (comments, nulls, indentation, block
scalars) and writing the new mapping in it must agree line for line.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import Comment, CommentedMap, CommentedSeq

__all__ = ["Indent", "Layout", "dump_like", "guess_indent", "read_layout", "strip_comments"]

Path = tuple[Any, ...]  # a key path: mapping keys and sequence indexes
NULL_SPELLINGS = ("null", "Null", "NULL", "~", "")


@dataclass(frozen=True)
class Indent:
    """ruamel's indentation settings: ``mapping`` spaces per nested mapping level,
    ``sequence`` spaces from a key to its items' content, ``offset`` from the key to the dash."""

    mapping: int = 2
    sequence: int = 4
    offset: int = 2


@dataclass
class _Node:
    """Where one key (or sequence item) of the original file sits."""

    line: int  # of the key (of the item's value for a sequence item)
    col: int
    value: Any
    null_spelling: str | None = None  # the value's spelling when it is null


@dataclass
class Layout:
    """The comments and null spellings of one YAML text, by key path."""

    lines: list[str]
    nodes: dict[Path, _Node] = field(default_factory=dict)
    inline: dict[Path, tuple[str, int, int]] = field(default_factory=dict)  # text, col, gap
    before: dict[Path, list[str]] = field(default_factory=dict)
    header: list[str] = field(default_factory=list)
    trailer: list[str] = field(default_factory=list)


def _walk(node: Any, path: Path = ()) -> Iterator[tuple[Path, Any, Any]]:
    """(path, value, container) for every key and item below ``node``, depth first."""
    if isinstance(node, CommentedMap):
        for key, value in node.items():
            yield (*path, key), value, node
            yield from _walk(value, (*path, key))
    elif isinstance(node, CommentedSeq):
        for i, value in enumerate(node):
            yield (*path, i), value, node
            yield from _walk(value, (*path, i))


def _position(container: Any, key: Any) -> tuple[int, int, int, int]:
    """(key line, key col, value line, value col), 0-based, of ``container[key]``."""
    if isinstance(container, CommentedMap):
        return tuple(container.lc.data[key])  # type: ignore[return-value]
    line, col = container.lc.data[key]
    return line, col, line, col


def _comment_start(line: str) -> int | None:
    """Column of the comment on ``line``, or None: a ``#`` at the start or after
    whitespace, outside a quoted scalar."""
    quote: str | None = None
    prev_content = ""  # last non-space character outside quotes
    i = 0
    while i < len(line):
        ch = line[i]
        if quote == "'":
            if ch == "'" and line[i + 1 : i + 2] == "'":
                i += 2
                continue
            if ch == "'":
                quote = None
        elif quote == '"':
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                quote = None
        elif ch in "'\"" and prev_content in ("", ":", "-", "[", "{", ",", "?"):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return i
        if quote is None and ch not in " \t":
            prev_content = ch
        i += 1
    return None


def _block_scalar_lines(lines: list[str]) -> set[int]:
    """Lines holding the content of block scalars (``key: |`` ...), which hold no comments."""
    inside: set[int] = set()
    i = 0
    while i < len(lines):
        line = lines[i]
        cut = _comment_start(line)
        content = (line if cut is None else line[:cut]).rstrip()
        token = content.rsplit(" ", 1)[-1] if content else ""
        if token[:1] in ("|", ">") and all(c in "+-0123456789" for c in token[1:]) and content != token:
            indent = len(line) - len(line.lstrip())
            j = i + 1
            while j < len(lines) and (
                not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent
            ):
                inside.add(j)
                j += 1
            i = j
            continue
        i += 1
    return inside


def _null_spelling(line: str, col: int, is_key: bool) -> str | None:
    """How the null at ``col`` of ``line`` (a key's or an item's position) is written."""
    rest = line[col:]
    if is_key:  # the value follows the key's ':' (an empty null has no position of its own)
        colon = next((i for i, c in enumerate(rest) if c == ":" and rest[i + 1 : i + 2] in ("", " ")), None)
        rest = "" if colon is None else rest[colon + 1 :]
    elif rest.startswith("-"):
        rest = rest[1:]
    cut = _comment_start(rest)
    spelled = (rest if cut is None else rest[:cut]).strip()
    return spelled if spelled in NULL_SPELLINGS else None


def read_layout(text: str, data: Any) -> Layout:
    """The comments of ``text`` tied to key paths of ``data`` (its round-trip load)."""
    lines = text.splitlines()
    layout = Layout(lines=lines)
    line_path: dict[int, Path] = {}
    for path, value, container in _walk(data):
        kline, kcol, _, _ = _position(container, path[-1])
        node = _Node(kline, kcol, value)
        if value is None:
            node.null_spelling = _null_spelling(lines[kline], kcol, isinstance(container, CommentedMap))
        layout.nodes[path] = node
        line_path.setdefault(kline, path)  # the outermost node starting on the line
    scalar_lines = _block_scalar_lines(lines)
    pending: list[str] = []
    first_content = True
    last_path: Path | None = None
    for i, line in enumerate(lines):
        if i in scalar_lines:
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            pending.append(line.rstrip())
            continue
        path = line_path.get(i)
        if path is None:  # a continuation line (flow collection, multi-line scalar)
            path = last_path
        elif pending:
            if first_content:
                layout.header = pending
            else:
                layout.before.setdefault(path, []).extend(pending)
            pending = []
        first_content = False
        cut = _comment_start(line)
        if cut is not None and path is not None:
            gap = cut - len(line[:cut].rstrip())
            layout.inline[path] = (line[cut:].rstrip(), cut, max(gap, 1))
        last_path = path
    if first_content:  # no key at all: everything is header
        layout.header = pending
    else:
        layout.trailer = pending
    return layout


def _measure(values: list[int], default: int) -> int:
    return Counter(values).most_common(1)[0][0] if values else default


def guess_indent(text: str, data: Any) -> Indent:
    """The indentation ``text`` (loaded as ``data``) uses, for block mappings and sequences;
    the defaults where it has none of a kind."""
    lines = text.splitlines()
    mapping: list[int] = []
    sequence: list[int] = []
    offset: list[int] = []
    for path, value, container in _walk(data):
        kline, kcol, _, _ = _position(container, path[-1])
        if not isinstance(container, CommentedMap):
            continue
        if isinstance(value, CommentedMap) and value and not value.fa.flow_style():
            cline, ccol = value.lc.data[next(iter(value))][:2]
            if cline > kline:
                mapping.append(ccol - kcol)
        elif isinstance(value, CommentedSeq) and value and not value.fa.flow_style():
            iline, icol = value.lc.data[0]
            dash = lines[iline].rfind("-", 0, icol) if iline < len(lines) else -1
            if iline > kline and dash >= 0:
                sequence.append(icol - kcol)
                offset.append(dash - kcol)
    default = Indent()
    m = _measure(mapping, default.mapping)
    s = _measure(sequence, max(default.sequence, m))
    o = _measure(offset, s - 2 if s >= 2 else 0)
    return Indent(mapping=m, sequence=max(s, o + 2), offset=o)


def strip_comments(node: Any) -> None:
    """Drop every comment (and kept blank line) ruamel attached to ``node`` and below."""
    for item in [node, *(v for _, v, _ in _walk(node))]:
        if isinstance(item, (CommentedMap, CommentedSeq)):
            setattr(item, Comment.attrib, Comment())


def _represent_null(representer: Any, _: None) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def _dump_plain(data: Any, indent: Indent) -> str:
    y = YAML()
    y.preserve_quotes = True
    y.indent(mapping=indent.mapping, sequence=indent.sequence, offset=indent.offset)
    y.width = 4096
    y.representer.add_representer(type(None), _represent_null)
    out = io.StringIO()
    y.dump(data, out)
    return out.getvalue()


def _shift(block: list[str], by: int) -> list[str]:
    """Comment lines of ``block`` moved right (or left, not past column 0) by ``by``."""
    out = []
    for line in block:
        if not line.strip() or by == 0:
            out.append(line)
        elif by > 0:
            out.append(" " * by + line)
        else:
            lead = len(line) - len(line.lstrip())
            out.append(line[min(lead, -by) :])
    return out


def dump_like(
    original: str,
    original_data: Any,
    new_data: Any,
    moved: Callable[[Path], Path],
    removed_note: Callable[[Path], str],
) -> str:
    """``new_data`` as YAML text laid out like ``original`` (loaded as ``original_data``).

    Args:
        original: the file's text.
        original_data: its round-trip load, before any change.
        new_data: the rewritten mapping (a ruamel round-trip map); its comments are dropped
            and re-created from ``original``.
        moved: maps a key path of the original to its path in ``new_data`` (itself when
            the key did not move).
        removed_note: what became of an original path that is absent from ``new_data``;
            written in the comment left where the key was.
    """
    layout = read_layout(original, original_data)
    indent = guess_indent(original, original_data)
    strip_comments(new_data)
    plain = _dump_plain(new_data, indent)
    reloaded = YAML().load(plain)
    out_line: dict[int, tuple[Path, _Node]] = {}
    present: set[Path] = set()
    for path, value, container in _walk(reloaded):
        kline, kcol, _, _ = _position(container, path[-1])
        out_line.setdefault(kline, (path, _Node(kline, kcol, value)))
        present.add(path)

    before: dict[Path, list[str]] = {}
    inline: dict[Path, list[tuple[str, int, int]]] = {}
    target_col = {path: node.col for path, node in out_line.values()}
    removed: list[Path] = []
    for path, node in layout.nodes.items():
        new = moved(path)
        if new in present:
            if path in layout.before:
                shift = target_col.get(new, node.col) - node.col
                before.setdefault(new, []).extend(_shift(layout.before[path], shift))
            if path in layout.inline:
                inline.setdefault(new, []).append(layout.inline[path])
        elif not any(path[: len(r)] == r for r in removed):
            removed.append(path)

    # A removed key is written out as comments in front of the next original key that is
    # still there (its section's next key, or the next section), shifted as that key was.
    tail: list[str] = []
    anchored: dict[Path, list[str]] = {}
    by_line = sorted((n.line, p) for p, n in layout.nodes.items())
    for root in removed:
        block = _commented_out(layout, root, removed_note(root))
        end = max(n.line for p, n in layout.nodes.items() if p[: len(root)] == root)
        anchor = next(
            (
                p
                for ln, p in by_line
                if ln > end and moved(p) in present and not any(p[: len(r)] == r for r in removed)
            ),
            None,
        )
        if anchor is None:
            tail.extend(block)
            continue
        new = moved(anchor)
        shift = target_col.get(new, layout.nodes[anchor].col) - layout.nodes[anchor].col
        anchored.setdefault(new, []).extend(_shift(block, shift))
    for path, block in anchored.items():
        before[path] = block + before.get(path, [])

    out: list[str] = list(layout.header)
    for i, line in enumerate(plain.splitlines()):
        entry = out_line.get(i)
        if entry is not None:
            path, node = entry
            out.extend(before.get(path, []))
            line = _respell_null(line, path, node, layout, moved)
            for comment, col, gap in inline.get(path, []):
                content = line.rstrip()
                # at its old column while the line fits, else as far from the value as it was (at most 2)
                line = content + " " * max(col - len(content), min(gap, 2)) + comment
        out.append(line)
    out.extend(tail)
    out.extend(layout.trailer)
    return "\n".join(out) + "\n"


def _commented_out(layout: Layout, root: Path, note: str) -> list[str]:
    """The original lines of the key ``root`` (and what it holds) as comments, the key's
    line saying what became of it; the comments in front of it first."""
    node = layout.nodes[root]
    end = max(n.line for p, n in layout.nodes.items() if p[: len(root)] == root)
    block = list(layout.before.get(root, []))
    for i in range(node.line, end + 1):
        text = layout.lines[i].rstrip()
        if not text.strip():
            continue
        lead = len(text) - len(text.lstrip())
        if text.lstrip().startswith("#"):
            block.append(text)
            continue
        if i == node.line:
            cut = _comment_start(text)
            own = "" if cut is None else f"  {text[cut:]}"
            content = text if cut is None else text[:cut].rstrip()
            block.append(
                f"{' ' * lead}# {content[lead:]}{own}  ({note})"
                if own
                else f"{' ' * lead}# {content[lead:]}  # {note}"
            )
        else:
            block.append(f"{' ' * lead}# {text[lead:]}")
    return block


def _respell_null(line: str, path: Path, node: _Node, layout: Layout, moved: Callable[[Path], Path]) -> str:
    """``line`` (written with ``null``) with the null spelled as the original file did."""
    if node.value is not None or not line.rstrip().endswith("null"):
        return line
    spelling = next(
        (
            n.null_spelling
            for p, n in layout.nodes.items()
            if moved(p) == path and n.null_spelling is not None
        ),
        "null",
    )
    stem = line.rstrip()[: -len("null")]
    return (stem + spelling).rstrip() if spelling else stem.rstrip()
