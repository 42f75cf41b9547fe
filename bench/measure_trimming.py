"""Measure reply trimming on the shared test corpus and print per-source match rates.

Usage: python bench/measure_trimming.py [--corpus DIR] [--verbose]

Three sources carry ground truth for the new text of a reply:

* email_reply_trimmer: ``emails/X`` must trim to ``trimmed/X`` (both stripped);
* discourse: ``reply text: '...'`` (and ``text '...'``/``body '...'``) in MANIFEST.tsv, written
  in Discourse's Markdown, so the comparison also accepts a match once ``*``/``_`` emphasis
  is removed from both sides;
* email_reply_parser: the visible fragments, given as exact text, a prefix, or a
  substring (``visible: ...``, ``visible starts ...``, ``... contains ...``), plus the
  parts that must be hidden.

The functions here are imported by tests/test_trim.py, which asserts a floor under the
rates, so a regression fails the suite.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from warrantyd.parsers.message import parse_message
from warrantyd.parsers.trim import Reply, extract_reply, split_reply

DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


@dataclass(frozen=True)
class Outcome:
    source: str
    path: str
    ok: bool
    detail: str = ""


def _unescape(quoted: str) -> str:
    return quoted.replace("\\n", "\n")


def _demarkdown(text: str) -> str:
    return re.sub(r"[*_]", "", text).strip()


def _read_manifest(corpus: Path) -> list[dict[str, str]]:
    with (corpus / "MANIFEST.tsv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def trimmer_outcomes(corpus: Path) -> Iterator[Outcome]:
    """email_reply_trimmer: emails/X trims to trimmed/X."""
    base = corpus / "email_reply_trimmer"
    for email_path in sorted((base / "emails").glob("*.txt")):
        expected_path = base / "trimmed" / email_path.name
        if not expected_path.exists():
            continue
        text = email_path.read_bytes().decode("utf-8", errors="replace")
        expected = expected_path.read_bytes().decode("utf-8", errors="replace").strip()
        got = split_reply(text).new_text.strip()
        yield Outcome("email_reply_trimmer", email_path.name, got == expected,
                      "" if got == expected else f"expected {expected!r}\n     got {got!r}")


_QUOTED = r"'((?:[^'\\]|\\.|'(?=[^;()]*'))*)'"


def _discourse_expectations(expected: str) -> list[str]:
    found = []
    for label in ("reply text", "text", "body"):
        match = re.search(rf"(?:^|; ){label}:? '(.*?)'(?: \(|;|$)", expected)
        if match:
            found.append(_unescape(match.group(1)))
            break
    return found


def discourse_outcomes(corpus: Path) -> Iterator[Outcome]:
    """Discourse: the new text of the .eml equals the expected reply text."""
    for row in _read_manifest(corpus):
        if row["source_repo"] != "discourse/discourse":
            continue
        wanted = _discourse_expectations(row["expected"])
        if not wanted:
            continue
        reply = extract_reply(parse_message((corpus / row["path"]).read_bytes()))
        got = reply.new_text.strip()
        exp = wanted[0].strip()
        ok = got == exp or _demarkdown(got) == _demarkdown(exp)
        yield Outcome("discourse", row["path"], ok,
                      "" if ok else f"expected {exp!r}\n     got {got!r}")


def _parser_checks(expected: str) -> list[tuple[str, str]]:
    """(kind, text) checks from an email_reply_parser expectation."""
    checks: list[tuple[str, str]] = []
    patterns = (
        ("exact", r"visible: '(.*?)'(?: \(|;|$)"),
        ("starts", r"visible starts '(.*?)'"),
        ("contains", r"(?:visible|first fragment) contains '(.*?)'"),
        ("quote_starts", r"quote (?:starts|begins at a date line) '(.*?)'"),
        ("quote_contains", r"quote contains '(.*?)'"),
        ("hidden", r"signature '(.*?)' hidden"),
        ("hidden", r"'(.*?)' quote hidden"),
        ("quote_starts", r"quote header is '(.*?)'"),
        ("contains", r"'(.*?)' is reply text"),
    )
    for kind, pattern in patterns:
        for match in re.finditer(pattern, expected):
            value = _unescape(match.group(1))
            checks.append((kind, value.split("...")[0]))
    if "nothing to trim" in expected:
        checks.append(("untrimmed", ""))
    return checks


def _check(kind: str, value: str, reply: Reply, body: str) -> bool:
    new, quoted = reply.new_text.strip(), reply.quoted_text.strip()
    if kind == "exact":
        return new == value.strip()
    if kind == "starts":
        return new.startswith(value)
    if kind == "contains":
        return value in new
    if kind == "quote_starts":
        return quoted.startswith(value) or any(
            line.lstrip("> ").startswith(value) for line in quoted.split("\n")[:3]
        )
    if kind == "quote_contains":
        return value in quoted and value not in new
    if kind == "hidden":
        return value.strip() not in new
    if kind == "untrimmed":
        return new == body.strip().replace("\r\n", "\n")
    return False


def parser_outcomes(corpus: Path) -> Iterator[Outcome]:
    """email_reply_parser: visible text, prefixes, substrings, hidden parts."""
    for row in _read_manifest(corpus):
        if row["source_repo"] != "github/email_reply_parser":
            continue
        checks = _parser_checks(row["expected"])
        if not checks:
            continue
        body = (corpus / row["path"]).read_bytes().decode("utf-8", errors="replace")
        reply = split_reply(body)
        failed = [f"{kind} {value!r}" for kind, value in checks
                  if not _check(kind, value, reply, body)]
        yield Outcome("email_reply_parser", row["path"], not failed,
                      "" if not failed else "failed " + ", ".join(failed)
                      + f"\n     got {reply.new_text[:300]!r}")


def all_outcomes(corpus: Path) -> list[Outcome]:
    return [*trimmer_outcomes(corpus), *discourse_outcomes(corpus), *parser_outcomes(corpus)]


def rates(outcomes: list[Outcome]) -> dict[str, tuple[int, int]]:
    """Per source: (matches, cases)."""
    table: dict[str, tuple[int, int]] = {}
    for outcome in outcomes:
        ok, total = table.get(outcome.source, (0, 0))
        table[outcome.source] = (ok + outcome.ok, total + 1)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--verbose", "-v", action="store_true", help="show every failure")
    args = parser.parse_args(argv)
    if not (args.corpus / "MANIFEST.tsv").exists():
        print(f"no MANIFEST.tsv under {args.corpus}: pass --corpus DIR", file=sys.stderr)
        return 2
    outcomes = all_outcomes(args.corpus)
    if args.verbose:
        for outcome in outcomes:
            if not outcome.ok:
                print(f"FAIL {outcome.source} {outcome.path}\n     {outcome.detail}")
    total_ok = total = 0
    for source, (ok, count) in rates(outcomes).items():
        print(f"{source:22} {ok:3}/{count:<3} {100 * ok / count:5.1f}% exact")
        total_ok += ok
        total += count
    print(f"{'all':22} {total_ok:3}/{total:<3} {100 * total_ok / total:5.1f}% exact")
    return 0


if __name__ == "__main__":
    sys.exit(main())
