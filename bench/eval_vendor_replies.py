"""Measure the vendor-reply reader against a labelled set of vendor replies.

Usage::

    python bench/eval_vendor_replies.py [SET_DIR] [--timezone America/Denver] [--quiet]

SET_DIR holds ``cases/*.eml`` and ``labels.jsonl`` (see the eval README); it defaults to
the ``vendor_replies`` set beside the checkout.  Each mail goes through the same steps as
in the daemon: parse, trim, then :func:`read_vendor_reply` with the reply's ``Date``.
Prints intent accuracy, exact ``scheduled_for`` and ``window_end`` agreement (both null,
or the same instant), the combined "intent and scheduled date/time exact" figure, and
every mismatch.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from warrantyd.parsers.message import ParsedMessage, parse_message
from warrantyd.parsers.trim import extract_reply
from warrantyd.parsers.vendor_reply import VendorReading, read_vendor_reply

DEFAULT_SET = Path(__file__).resolve().parents[1].parent / "shared" / "eval" / "vendor_replies"


@dataclass
class CaseResult:
    file: str
    label: dict[str, object]
    reading: VendorReading
    intent_ok: bool
    scheduled_ok: bool
    window_ok: bool

    @property
    def combined_ok(self) -> bool:
        return self.intent_ok and self.scheduled_ok and self.window_ok


@dataclass
class Report:
    results: list[CaseResult] = field(default_factory=list)

    def rate(self, attribute: str) -> float:
        if not self.results:
            return 0.0
        return sum(bool(getattr(r, attribute)) for r in self.results) / len(self.results)

    @property
    def mismatches(self) -> list[CaseResult]:
        return [r for r in self.results if not r.combined_ok]


def is_auto_submitted(msg: ParsedMessage) -> bool:
    """RFC 3834 Auto-Submitted (anything but "no") and the common vendor equivalents."""
    value = (msg.header("Auto-Submitted") or "").strip().lower()
    if value and value != "no":
        return True
    if msg.header("X-Autoreply") or msg.header("X-Autorespond"):
        return True
    return (msg.header("Precedence") or "").strip().lower() in ("auto_reply", "bulk", "junk")


def read_case(raw: bytes, timezone: str) -> VendorReading:
    """Parse, trim and read one vendor reply, as the daemon does."""
    msg = parse_message(raw)
    if msg.date is None:
        raise ValueError("reply has no usable Date header; relative dates cannot be resolved")
    return read_vendor_reply(
        extract_reply(msg).new_text,
        msg.date,
        timezone,
        subject=msg.subject,
        auto_submitted=is_auto_submitted(msg),
    )


def _same_instant(expected: object, actual: datetime | None) -> bool:
    if expected is None or actual is None:
        return expected is None and actual is None
    return datetime.fromisoformat(str(expected)) == actual


def evaluate(set_dir: Path, timezone: str = "America/Denver") -> Report:
    """Read every labelled case of ``set_dir`` and compare with its label."""
    labels_file = set_dir / "labels.jsonl"
    if not labels_file.is_file():
        raise FileNotFoundError(f"{labels_file} not found: pass the folder of a vendor_replies set")
    report = Report()
    for line in labels_file.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        label = json.loads(line)
        reading = read_case((set_dir / label["file"]).read_bytes(), timezone)
        report.results.append(
            CaseResult(
                file=label["file"],
                label=label,
                reading=reading,
                intent_ok=reading.intent == label["intent"],
                scheduled_ok=_same_instant(label.get("scheduled_for"), reading.scheduled_for),
                window_ok=_same_instant(label.get("window_end"), reading.window_end),
            )
        )
    return report


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else "null"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("set_dir", nargs="?", type=Path, default=DEFAULT_SET)
    parser.add_argument("--timezone", default="America/Denver")
    parser.add_argument("--quiet", action="store_true", help="figures only, no mismatch list")
    args = parser.parse_args(argv)
    report = evaluate(args.set_dir, args.timezone)
    n = len(report.results)
    print(f"cases:                                 {n}")
    print(f"intent accuracy:                       {report.rate('intent_ok'):.1%}")
    print(f"scheduled_for exact:                   {report.rate('scheduled_ok'):.1%}")
    print(f"window_end exact:                      {report.rate('window_ok'):.1%}")
    print(f"intent and scheduled date/time exact:  {report.rate('combined_ok'):.1%}")
    if not args.quiet and report.mismatches:
        print("\nmismatches:")
        for r in report.mismatches:
            got = r.reading
            print(f"  {r.file}: expected {r.label['intent']} {r.label.get('scheduled_for')}"
                  f" .. {r.label.get('window_end')}")
            print(f"  {' ' * len(r.file)}  got      {got.intent} {_iso(got.scheduled_for)}"
                  f" .. {_iso(got.window_end)}  ({got.reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
