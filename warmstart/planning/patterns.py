"""The rules' regexes, run by RE2: linear time in a name's length, whatever the pattern.

Rules are untrusted: with a backtracking engine a pattern such as ``(a|aa)+$`` makes planning run
forever. RE2 (``google-re2``) never backtracks; its syntax is Python's without look-around
(``(?=``, ``(?!``, ``(?<=``), back-references inside a pattern (``\\1``, ``(?P=name)``), possessive
repetition, and with repetition counts up to 1000. Templates (``bert/\\1``) are ours and keep
Python's syntax: a template is expanded once against marker values when it is compiled (Python checks
its escapes and group references there), then by splicing group values in.

Many patterns (a long ``exclude:`` list) are matched at once with an RE2 set: one pass over a name
whatever their number. Should the set's automaton run out of memory (RE2 then reports no match), a
pattern that matches everything, added to every set, is missing from the answer, and each pattern is
asked on its own: never a silent miss.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import re2

__all__ = ["Pattern", "PatternSet", "Template", "compile_pattern", "compile_template"]

_SYNTAX = ("RE2 syntax, linear time: no look-around, no back-references inside a pattern, repetition "
           "counts up to 1000")


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print each refused pattern on stderr
    return options


_OPTIONS = _options()


class Pattern:
    """A compiled pattern: ``fullmatch(name)`` gives the match (its ``group``/``groups``) or None."""

    __slots__ = ("text", "_rx")

    def __init__(self, text: str, rx: Any):
        self.text, self._rx = text, rx

    @property
    def groups(self) -> int:
        return self._rx.groups

    @property
    def groupindex(self) -> dict[str, int]:
        return dict(self._rx.groupindex)

    def fullmatch(self, name: str) -> Any:
        return self._rx.fullmatch(name)

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


@functools.lru_cache(maxsize=1 << 14)
def compile_pattern(text: str) -> Pattern:
    """``text`` compiled by RE2 (cached); raises ``ValueError`` naming the pattern and what RE2 refused."""
    try:
        return Pattern(text, re2.compile(text, _OPTIONS))
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"invalid regex {text!r}: {reason} ({_SYNTAX})") from None
    except TypeError:
        raise ValueError(f"invalid regex {text!r}: not text") from None


class PatternSet:
    """Patterns matched together: :meth:`matches` gives the indices of those matching a whole name."""

    def __init__(self, patterns: Sequence[Pattern]):
        self.patterns = list(patterns)
        self._set, self._canary = _compiled_set(self.patterns)

    def matches(self, name: str) -> list[int]:
        if self._set is not None:
            found = self._set.Match(name) or []
            if self._canary in found:
                return sorted(i for i in found if i != self._canary)
        # no set, or its automaton gave up on this name: each pattern on its own (still linear)
        return [i for i, p in enumerate(self.patterns) if p.fullmatch(name)]

    def first(self, name: str) -> int | None:
        found = self.matches(name)
        return found[0] if found else None


def _compiled_set(patterns: Sequence[Pattern]) -> tuple[Any, int]:
    if not patterns:
        return None, -1
    try:
        rset = re2.Set.FullMatchSet(_OPTIONS)
        for p in patterns:
            rset.Add(p.text)
        canary = rset.Add("(?s).*")
        rset.Compile()
    except re2.error:  # too large for one automaton: the patterns are asked one by one
        return None, -1
    return rset, canary


_MARK = "\ue000{}\ue001"
_MARKED = re.compile("\ue000(\\d+)\ue001")


class Template:
    """A rename or ``from:`` template (``bert/\\1``, ``\\g<name>``) for a pattern's groups, checked
    when made (raises ``re.error`` for a bad escape or a group the pattern does not have)."""

    __slots__ = ("text", "_pieces")

    def __init__(self, text: str, pattern: Pattern):
        self.text = text
        if "\ue000" in text or "\ue001" in text:
            raise re.error("a template may not hold the characters U+E000 or U+E001")
        refs = [int(g) for g in re.findall(r"\\(?:g<)?(\d+)", text)]
        if refs and max(refs) > pattern.groups:
            raise re.error(f"refers to group {max(refs)}, but the pattern has {pattern.groups} group(s)")
        names = {index: name for name, index in pattern.groupindex.items()}
        marks = [_MARK.format(i) for i in range(1, pattern.groups + 1)]
        probe = "".join(f"(?P<{names[i]}>{re.escape(m)})" if i in names else f"({re.escape(m)})"
                        for i, m in enumerate(marks, 1))
        match = re.fullmatch(probe, "".join(marks))  # literal groups: linear
        try:
            expanded = match.expand(text)  # type: ignore[union-attr]
        except IndexError as exc:  # an unknown group name
            raise re.error(str(exc)) from None
        self._pieces = _MARKED.split(expanded)  # literal, group, literal, group, ..., literal

    def expand(self, match: Any) -> str:
        pieces = self._pieces
        out = [pieces[0]]
        for i in range(1, len(pieces), 2):
            out.append(match.group(int(pieces[i])) or "")
            out.append(pieces[i + 1])
        return "".join(out)


@functools.lru_cache(maxsize=1 << 14)
def compile_template(text: str, pattern: str) -> Template:
    """:class:`Template` of ``text`` for the pattern ``pattern`` (cached; raises ``ValueError`` for a bad
    pattern, ``re.error`` for a bad template)."""
    return Template(text, compile_pattern(pattern))
