"""Measure the offline drafter on a labelled set of homeowner mail.

Usage::

    python bench/eval_drafter.py [SET_DIR] [--worst N] [--json]

SET_DIR defaults to ``shared/eval/drafting`` beside the checkout; it holds ``cases/*.eml``
and ``labels.jsonl`` (see that set's README).  Predicted issues are matched one to one to
labelled issues (same trade first, then nearest location and summary words), and the
script prints issue-count exactness, issue precision and recall, trade F1, priority
accuracy, emergency recall, photo accuracy and no-issue accuracy, then the worst cases.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from warrantyd.daemon.drafters.base import DraftIssue, DraftRequest, Photo
from warrantyd.daemon.drafters.offline import OfflineDrafter
from warrantyd.daemon.drafting import drafting_text
from warrantyd.parsers.message import ParsedMessage, parse_message
from warrantyd.parsers.trim import extract_reply

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SET = REPO_ROOT.parent / "shared" / "eval" / "drafting"


def mail_text(msg: ParsedMessage) -> str:
    """The homeowner's new text, exactly as the service gives it to a drafter."""
    return drafting_text(msg, extract_reply(msg))


def build_request(msg: ParsedMessage) -> DraftRequest:
    photos = tuple(
        Photo(a.filename, a.content_type, a.content)
        for a in msg.attachments
        if a.content_type.lower().startswith("image/")
    )
    return DraftRequest(text=mail_text(msg), subject=msg.subject, photos=photos,
                        homeowner_name=msg.from_name)


_WORD = re.compile(r"[a-z]+")
_STOP = frozenset({
    "the", "a", "an", "of", "and", "in", "on", "at", "to", "is", "are", "it", "its", "for",
    "with", "from", "by",
})


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 2}


def _norm_location(loc: str | None) -> str:
    loc = (loc or "").lower().replace("master", "primary").replace("bath ", "bathroom ")
    return re.sub(r"\bbath$", "bathroom", loc).strip()


def location_matches(label: str | None, predicted: str | None) -> bool:
    a, b = _norm_location(label), _norm_location(predicted)
    if not a or not b:
        return a == b
    return a == b or a in b or b in a or bool(_words(a) & _words(b) - {"upstairs", "front"})


def _pair_score(label: dict, pred: DraftIssue) -> float:
    summary = _words(label.get("summary", ""))
    mine = _words(f"{pred.title} {pred.description}")
    overlap = len(summary & mine) / max(1, len(summary))
    score = overlap
    if pred.trade == label["trade"]:
        score += 1.0
    if location_matches(label.get("location"), pred.location):
        score += 0.3
    return score


def match(labels: list[dict], preds: list[DraftIssue]) -> list[tuple[int, int]]:
    """Greedy one-to-one matching, best pair first; a pair needs a shared trade or words."""
    pairs = sorted(
        ((_pair_score(lab, p), i, j) for i, lab in enumerate(labels) for j, p in enumerate(preds)),
        reverse=True,
    )
    used_l: set[int] = set()
    used_p: set[int] = set()
    out: list[tuple[int, int]] = []
    for score, i, j in pairs:
        if i in used_l or j in used_p or score < 0.25:
            continue
        used_l.add(i)
        used_p.add(j)
        out.append((i, j))
    return out


@dataclass
class Tally:
    cases: int = 0
    count_exact: int = 0
    labelled: int = 0
    predicted: int = 0
    matched: int = 0
    trade_ok: int = 0
    priority_ok: int = 0
    location_ok: int = 0
    emergencies: int = 0
    emergencies_found: int = 0
    false_emergencies: int = 0
    photos: int = 0
    photos_ok: int = 0
    no_issue_cases: int = 0
    no_issue_ok: int = 0
    worst: list[tuple[float, str, list[str]]] = field(default_factory=list)

    def figures(self) -> dict[str, float]:
        def ratio(a: int, b: int) -> float:
            return round(a / b, 3) if b else 1.0

        tp = self.trade_ok
        fp = self.predicted - tp
        fn = self.labelled - tp
        return {
            "cases": self.cases,
            "issue_count_exact": ratio(self.count_exact, self.cases),
            "issue_precision": ratio(self.matched, self.predicted),
            "issue_recall": ratio(self.matched, self.labelled),
            "trade_f1": ratio(2 * tp, 2 * tp + fp + fn),
            "trade_accuracy_matched": ratio(self.trade_ok, self.matched),
            "priority_accuracy_matched": ratio(self.priority_ok, self.matched),
            "location_accuracy_matched": ratio(self.location_ok, self.matched),
            "emergency_recall": ratio(self.emergencies_found, self.emergencies),
            "false_emergencies": self.false_emergencies,
            "photo_accuracy": ratio(self.photos_ok, self.photos),
            "no_issue_accuracy": ratio(self.no_issue_ok, self.no_issue_cases),
        }


def evaluate(
    set_dir: Path, drafter: OfflineDrafter | None = None, verbose: bool = False
) -> Tally:
    drafter = drafter or OfflineDrafter()
    tally = Tally()
    for line in (set_dir / "labels.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        label = json.loads(line)
        msg = parse_message((set_dir / label["file"]).read_bytes())
        result = drafter.draft_sync(build_request(msg))
        preds = result.issues
        gold = label["issues"]
        tally.cases += 1
        tally.labelled += len(gold)
        tally.predicted += len(preds)
        tally.count_exact += len(gold) == len(preds)
        if not gold:
            tally.no_issue_cases += 1
            tally.no_issue_ok += not preds
        pairs = match(gold, preds)
        tally.matched += len(pairs)
        problems: list[str] = []
        if len(gold) != len(preds):
            problems.append(f"count {len(preds)} (want {len(gold)})")
        by_label = dict(pairs)
        for i, j in pairs:
            lab, pred = gold[i], preds[j]
            tally.trade_ok += pred.trade == lab["trade"]
            tally.priority_ok += pred.priority == lab["priority"]
            tally.location_ok += location_matches(lab.get("location"), pred.location)
            if pred.trade != lab["trade"]:
                problems.append(f"trade {pred.trade} (want {lab['trade']}): {lab['summary']}")
            if verbose and not location_matches(lab.get("location"), pred.location):
                problems.append(f"location {pred.location} (want {lab.get('location')})")
            if pred.priority != lab["priority"]:
                problems.append(f"priority {pred.priority} (want {lab['priority']}): "
                                f"{lab['summary']}")
        for i, lab in enumerate(gold):
            if lab["priority"] == "emergency":
                tally.emergencies += 1
                j = by_label.get(i)
                found = j is not None and preds[j].priority == "emergency"
                tally.emergencies_found += found
                if not found:
                    problems.append(f"MISSED EMERGENCY: {lab['summary']}")
        matched_preds = {j for _, j in pairs}
        for j, pred in enumerate(preds):
            if pred.priority == "emergency" and not any(
                gold[i]["priority"] == "emergency" for i, jj in pairs if jj == j
            ):
                tally.false_emergencies += 1
                problems.append(f"false emergency: {pred.title}")
            if j not in matched_preds:
                problems.append(f"extra issue: {pred.title}")
        for i, lab in enumerate(gold):
            if i not in by_label:
                problems.append(f"missed issue: {lab['summary']}")
        for name, index in (label.get("photos") or {}).items():
            tally.photos += 1
            j = by_label.get(index)
            tally.photos_ok += j is not None and name in preds[j].photos
            if j is None or name not in preds[j].photos:
                problems.append(f"photo {name} misplaced")
        if problems:
            weight = sum(3 if p.startswith("MISSED") else 1 for p in problems)
            tally.worst.append((weight, label["file"], problems))
    tally.worst.sort(key=lambda w: -w[0])
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("set_dir", nargs="?", type=Path, default=DEFAULT_SET)
    parser.add_argument("--worst", type=int, default=10, help="how many worst cases to list")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    parser.add_argument("--locations", action="store_true", help="also list location misses")
    args = parser.parse_args(argv)
    if not (args.set_dir / "labels.jsonl").is_file():
        print(f"{args.set_dir} has no labels.jsonl: pass the drafting set folder", file=sys.stderr)
        return 2
    tally = evaluate(args.set_dir, verbose=args.locations)
    figures = tally.figures()
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    for key, value in figures.items():
        print(f"{key:28} {value}")
    if args.worst:
        print(f"\nworst cases ({min(args.worst, len(tally.worst))} of {len(tally.worst)}):")
        for _, name, problems in tally.worst[: args.worst]:
            print(f"  {name}")
            for problem in problems:
                print(f"      {problem}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
