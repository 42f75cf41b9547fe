"""Measure the staff command grammar against a labelled set of replies to approval digests.

Usage::

    python bench/eval_staff_replies.py [SET_DIR] [--quiet]

SET_DIR holds ``cases/*.eml`` and ``labels.jsonl`` (see the eval README); it defaults to
the ``staff_replies`` set beside the checkout.  Each mail goes through the same steps as in
the daemon: parse, trim, then :func:`parse_commands` with the digest's work orders from the
label.  Two figures matter, because the two kinds of mistake cost different things:

* valid replies parsed exactly -- every command right (verb, items, text with whitespace
  collapsed, vendor, WO ids, ``all``) and the reply judged valid: a miss here makes staff
  write again;
* invalid replies rejected -- a miss here applies a reply that should have been refused,
  so the floor is 100 %.

Every mismatch is listed.  tests/test_commands.py imports :func:`evaluate` and asserts the
floors, so a regression fails the suite.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from warrantyd.parsers.commands import Command, CommandParse, parse_commands
from warrantyd.parsers.message import parse_message

DEFAULT_SET = Path(__file__).resolve().parents[1].parent / "shared" / "eval" / "staff_replies"

VALID_FLOOR = 0.95
INVALID_FLOOR = 1.0


@dataclass
class CaseResult:
    file: str
    label: dict[str, object]
    parse: CommandParse
    new_text: str

    @property
    def expected_valid(self) -> bool:
        return bool(self.label["valid"])

    @property
    def commands_ok(self) -> bool:
        expected = [_expected_command(c) for c in self.label["commands"]]  # type: ignore[union-attr]
        return expected == [_command_key(c) for c in self.parse.commands]

    @property
    def ok(self) -> bool:
        """Valid replies: exact commands and judged valid; invalid ones: rejected."""
        if self.expected_valid:
            return self.parse.valid and self.commands_ok
        return not self.parse.valid


@dataclass
class Report:
    results: list[CaseResult] = field(default_factory=list)

    def _of(self, valid: bool) -> list[CaseResult]:
        return [r for r in self.results if r.expected_valid is valid]

    @property
    def valid_exact(self) -> tuple[int, int]:
        cases = self._of(True)
        return sum(r.ok for r in cases), len(cases)

    @property
    def invalid_rejected(self) -> tuple[int, int]:
        cases = self._of(False)
        return sum(r.ok for r in cases), len(cases)

    @property
    def mismatches(self) -> list[CaseResult]:
        return [r for r in self.results if not r.ok]


def _collapse(text: object) -> str | None:
    return " ".join(str(text).split()) if text is not None else None


def _expected_command(label: dict[str, object]) -> tuple[object, ...]:
    return (
        label["verb"],
        tuple(label.get("items") or ()),  # type: ignore[arg-type]
        _collapse(label.get("text")),
        label.get("vendor"),
        tuple(label.get("wo") or ()),  # type: ignore[arg-type]
        bool(label.get("all", False)),
    )


def _command_key(command: Command) -> tuple[object, ...]:
    return (
        command.verb,
        command.items,
        _collapse(command.text),
        command.vendor,
        command.wo,
        command.all,
    )


def new_text_of(raw: bytes) -> str:
    """The trimmed new text of a reply, as the daemon reads it.

    Falls back to the whole body when the trimmer is unavailable: the parser stops at the
    quote on its own, so the figures stay meaningful (if a little pessimistic).
    """
    msg = parse_message(raw)
    try:
        from warrantyd.parsers.trim import extract_reply
    except ImportError:
        return msg.text
    return extract_reply(msg).new_text


def evaluate(set_dir: Path) -> Report:
    report = Report()
    labels_path = set_dir / "labels.jsonl"
    for line in labels_path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        label = json.loads(line)
        new_text = new_text_of((set_dir / label["file"]).read_bytes())
        parse = parse_commands(new_text, label.get("digest_work_orders"))
        report.results.append(CaseResult(label["file"], label, parse, new_text))
    return report


def _describe(result: CaseResult) -> str:
    got = [
        {k: v for k, v in zip(("verb", "items", "text", "vendor", "wo", "all"), key, strict=True)
         if v not in (None, (), False) or k == "items"}
        for key in (_command_key(c) for c in result.parse.commands)
    ]
    lines = [
        f"{result.file}: expected valid={result.expected_valid}, got valid={result.parse.valid}"
        f"  tags={result.label.get('tags')}",
        f"  new text:  {result.new_text!r}",
        f"  expected:  {result.label['commands']}",
        f"  got:       {got}",
    ]
    lines += [f"  error:     {e.message}" for e in result.parse.errors]
    if result.label.get("error_hint"):
        lines.append(f"  hint:      {result.label['error_hint']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("set_dir", nargs="?", type=Path, default=DEFAULT_SET)
    parser.add_argument("--quiet", action="store_true", help="figures only, no mismatches")
    args = parser.parse_args(argv)
    if not (args.set_dir / "labels.jsonl").is_file():
        print(f"{args.set_dir}/labels.jsonl not found: pass the staff_replies set folder",
              file=sys.stderr)
        return 2
    report = evaluate(args.set_dir)
    valid_ok, valid_n = report.valid_exact
    invalid_ok, invalid_n = report.invalid_rejected
    print(f"valid replies parsed exactly: {valid_ok}/{valid_n} "
          f"({valid_ok / max(valid_n, 1):.0%}; target >= {VALID_FLOOR:.0%})")
    print(f"invalid replies rejected:     {invalid_ok}/{invalid_n} "
          f"({invalid_ok / max(invalid_n, 1):.0%}; target {INVALID_FLOOR:.0%})")
    if not args.quiet:
        for result in report.mismatches:
            print()
            print(_describe(result))
    below = valid_ok < VALID_FLOOR * valid_n or invalid_ok < INVALID_FLOOR * invalid_n
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
