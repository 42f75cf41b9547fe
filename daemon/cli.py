"""The ``warrantyd`` command.

Exit codes: 0 success, 1 the command ran but something it checked failed, 2 bad usage or bad
configuration (with one readable line per problem, never a traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from warrantyd.daemon.config import Config, ConfigError, load_config
from warrantyd.storage import MAIN_DIVISION

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_CONFIG = "config.toml"


class UsageError(Exception):
    """The operator asked for something that cannot be done as asked."""


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", default=os.environ.get("WARRANTYD_CONFIG",
                                                                 DEFAULT_CONFIG),
                        help="config file (default: $WARRANTYD_CONFIG or ./config.toml)")


def _add_division(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--division", metavar="NAME",
                        help=f"{help_text} (a [[divisions]] name, or {MAIN_DIVISION!r})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warrantyd", description="Email-native work orders for warranty teams.")
    parser.add_argument("--verbose", "-v", action="count", default=0,
                        help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the daemon in the foreground")
    _add_config(p)
    p.add_argument("--import-existing", action="store_true",
                   help="also import mail that was in the mailbox before the first start")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="validate config; reach the database, IMAP, SMTP, the LLM")
    _add_config(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("db", help="database maintenance")
    _add_config(p)
    p.add_argument("action", choices=["upgrade"], help="upgrade: apply schema migrations")
    p.set_defaults(func=cmd_db)

    for name, func, help_text in (
        ("explain", cmd_explain, "what the daemon would make of each mail, without acting"),
        ("draft", cmd_draft, "dry-run drafting of homeowner mails"),
        ("read-vendor-reply", cmd_read_vendor_reply, "read intent and schedule of vendor mails"),
    ):
        p = sub.add_parser(name, help=help_text)
        _add_config(p)
        p.add_argument("files", nargs="+", metavar="FILE.eml")
        p.add_argument("--json", action="store_true", help="one JSON object per line per file")
        if func is not cmd_read_vendor_reply:
            _add_division(p, "read the files as if they came to this division's mailbox "
                             "(default: the division of the mailbox they are addressed to)")
        p.set_defaults(func=func)

    p = sub.add_parser("sr", help="service requests: list, show")
    _add_config(p)
    srs = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = srs.add_parser("list", help="service requests, newest first")
    q.add_argument("--property", help="address or community contains TEXT")
    q.add_argument("--homeowner", help="homeowner name or email contains TEXT")
    q.add_argument("--status", help="open, in_progress, resolved (comma-separated)")
    q.add_argument("--since", help="created since: 2026-03-01, 7d, 48h, today")
    _add_division(q, "only this division's requests")
    q.add_argument("--limit", type=int, default=50)
    q.add_argument("--offset", type=int, default=0)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_sr_list)
    q = srs.add_parser("show", help="one service request with its work orders and history")
    q.add_argument("ref", metavar="SR-n")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_sr_show)

    p = sub.add_parser("wo", help="work orders: list, show")
    _add_config(p)
    wos = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = wos.add_parser("list", help="work orders, newest first")
    q.add_argument("--property", help="address or community contains TEXT")
    q.add_argument("--vendor", help="vendor name, email or alias contains TEXT")
    q.add_argument("--status", help="draft, in_progress, completed, rejected (comma-separated)")
    q.add_argument("--sr", metavar="SR-n", help="only this service request's work orders")
    q.add_argument("--since", help="created since: 2026-03-01, 7d, 48h, today")
    q.add_argument("--needs-followup", action="store_true",
                   help="only what is stuck, each with the reason")
    _add_division(q, "only this division's work orders")
    q.add_argument("--limit", type=int, default=50)
    q.add_argument("--offset", type=int, default=0)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_wo_list)
    q = wos.add_parser("create", help="a manual work order on a service request (a draft)")
    q.add_argument("--sr", required=True, metavar="SR-n")
    q.add_argument("--trade", help="the trade (inferred from the description when omitted)")
    q.add_argument("--description", required=True)
    q.add_argument("--vendor", help="vendor name, alias or email (suggested for the draft)")
    q.add_argument("--actor", help="who is creating it, for the history (default: cli:USER)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_wo_create)
    q = wos.add_parser("show", help="one work order with its full history")
    q.add_argument("ref", metavar="WO-n")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_wo_show)

    p = sub.add_parser("import", help="import homes or vendors from a CSV file")
    _add_config(p)
    p.add_argument("kind", choices=["homes", "vendors"])
    p.add_argument("file", metavar="FILE.csv")
    p.add_argument("--dry-run", action="store_true", help="validate only; write nothing")
    _add_division(p, f"the division they belong to (default: {MAIN_DIVISION}, the top-level "
                     f"[mailbox])")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("inbox", help="inbound mail: list, reprocess")
    _add_config(p)
    inbox = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = inbox.add_parser("list", help="stored inbound mail, newest first")
    q.add_argument("--status", choices=["new", "done", "ignored", "quarantined"])
    _add_division(q, "only mail that came to this division's mailbox")
    q.add_argument("--limit", type=int, default=50)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_inbox_list)
    q = inbox.add_parser("reprocess", help="put a (quarantined) mail back in line")
    q.add_argument("id", type=int)
    q.set_defaults(func=cmd_inbox_reprocess)

    p = sub.add_parser("demo", help="a sandbox that shows the whole product on this machine")
    p.add_argument("--script", action="store_true",
                   help="play the whole story unattended, print each step, then exit")
    p.add_argument("--data-dir", metavar="DIR",
                   help="keep the sandbox here (default: a temporary directory, removed at exit)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    if args.command == "run":
        level = min(level, logging.INFO)
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print("warrantyd: the configuration has problems:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"warrantyd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAILED


def _config(args: argparse.Namespace, *, partial: bool = False) -> Config:
    return load_config(Path(args.config), partial=partial)


def _divisions(config: Config, name: str | None) -> tuple[str, ...] | None:
    """``--division NAME`` as the divisions a command keeps (None: every one)."""
    from warrantyd.daemon.reports import BadFilter, parse_division

    try:
        return parse_division(name, config)
    except BadFilter as exc:
        raise UsageError(str(exc)) from None


def _arrival(config: Config, name: str | None) -> str | None:
    """``--division NAME`` of ``explain``/``draft``: the mailbox the files are read as having
    come to (an unknown name is a usage error, never silently the main division)."""
    chosen = _divisions(config, name)
    return chosen[0] if chosen else None


def _database(config: Config) -> Any:
    from warrantyd.storage.db import Database

    db = Database(config.database.url)
    try:
        db.upgrade()
    except Exception as exc:
        raise UsageError(f"cannot open the database {config.database.url}: "
                         f"{str(exc).splitlines()[0]}; check [database] url") from None
    return db


def _emit(args: argparse.Namespace, objects: list[dict[str, Any]],
          human: Callable[[dict[str, Any]], str]) -> None:
    for obj in objects:
        if args.json:
            print(json.dumps(obj, ensure_ascii=False, default=str))
        else:
            print(human(obj))


def _read_files(files: Sequence[str]) -> list[tuple[str, bytes | None, str | None]]:
    out: list[tuple[str, bytes | None, str | None]] = []
    for name in files:
        try:
            out.append((name, Path(name).read_bytes(), None))
        except OSError as exc:
            out.append((name, None, f"cannot read {name}: {exc.strerror or exc}"))
    return out


# --- commands -------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from warrantyd.daemon.worker import spawn_worker

    # First of all: the worker loads the processing code while this process reads the
    # config, upgrades the schema and connects (each has a core of its own).
    worker = spawn_worker()
    try:
        config = _config(args)
        from warrantyd.daemon.service import Service

        service = Service(config, import_existing=args.import_existing, worker=worker)
    except BaseException:
        worker.close()
        raise
    asyncio.run(service.run())
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from warrantyd.daemon.checks import run_checks

    config = _config(args)
    results = asyncio.run(run_checks(config))
    for name, ok, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    return EXIT_OK if all(ok for _, ok, _ in results) else EXIT_FAILED


def cmd_db(args: argparse.Namespace) -> int:
    config = _config(args, partial=True)
    _database(config).dispose()
    print(f"database {config.database.url} is at the newest schema")
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    from warrantyd.daemon.explain import explain_mail

    config = _config(args, partial=True)
    arrival = _arrival(config, args.division)
    db = _database(config)
    results = []
    for name, raw, problem in _read_files(args.files):
        if raw is None:
            results.append({"file": name, "classification": None, "errors": [problem]})
            continue
        with db.session() as session:
            results.append({"file": name, **explain_mail(session, config, raw,
                                                         arrival=arrival)})
    db.dispose()
    _emit(args, results, _human_explain)
    return EXIT_OK


def _human_explain(obj: dict[str, Any]) -> str:
    lines = [f"{obj['file']}: {obj.get('classification')} — {obj.get('reason', '')}"]
    if obj.get("division"):
        lines.append(f"  division: {obj['division']} ({obj.get('division_reason', '')})")
    if obj.get("new_text"):
        lines.append("  new text: " + obj["new_text"][:300].replace("\n", "\n            "))
    for att in obj.get("attachments", []):
        lines.append(f"  attachment: {att['filename']} ({att['content_type']}, {att['size']} B)")
    for cmd in obj.get("commands", []):
        lines.append(f"  command: {cmd}")
    if "authorized" in obj:
        lines.append(f"  authorized: {obj['authorized']} ({obj.get('auth_reason')})")
    for err in obj.get("errors", []):
        lines.append(f"  error: {err}")
    return "\n".join(lines)


def cmd_draft(args: argparse.Namespace) -> int:
    from warrantyd.daemon.explain import draft_mail

    config = _config(args, partial=True)
    arrival = _arrival(config, args.division)
    db = _database(config)
    results = []
    for name, raw, problem in _read_files(args.files):
        if raw is None:
            results.append({"file": name, "issues": [], "errors": [problem]})
            continue
        results.append({"file": name, **asyncio.run(draft_mail(db, config, raw,
                                                               arrival=arrival))})
    db.dispose()
    _emit(args, results, lambda o: json.dumps(o, ensure_ascii=False, indent=2, default=str))
    return EXIT_OK


def cmd_read_vendor_reply(args: argparse.Namespace) -> int:
    from warrantyd.daemon.explain import read_vendor_mail

    config = _config(args, partial=True)
    results = []
    for name, raw, problem in _read_files(args.files):
        if raw is None:
            results.append({"file": name, "intent": None, "errors": [problem]})
            continue
        results.append({"file": name, **read_vendor_mail(config, raw)})
    _emit(args, results, lambda o: (f"{o['file']}: {o.get('intent')} "
                                    f"{o.get('scheduled_for') or ''} {o.get('window_end') or ''}"
                                    ).rstrip())
    return EXIT_OK


def _zone(config: Config) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(config.company.timezone)


def _records(args: argparse.Namespace, run: Callable[[Any, Config], int]) -> int:
    """Open the database for a read/write records command; bad refs and filters exit 2."""
    from warrantyd.daemon.reports import BadFilter

    config = _config(args, partial=True)
    db = _database(config)
    try:
        return run(db, config)
    except (LookupError, BadFilter) as exc:
        raise UsageError(str(exc).strip("'\"")) from None
    finally:
        db.dispose()


def _width() -> int:
    import shutil

    return shutil.get_terminal_size((100, 24)).columns


def cmd_sr_list(args: argparse.Namespace) -> int:
    from warrantyd.daemon import reports

    def run(db: Any, config: Config) -> int:
        tz = _zone(config)
        rows = reports.sr_list(db, reports.build_sr_filter(
            property=args.property, homeowner=args.homeowner, status=args.status,
            since=args.since, limit=args.limit, offset=args.offset, tz=tz,
            division=args.division, config=config))
        if args.json:
            _emit(args, rows, str)
        else:
            print(reports.render_sr_table(rows, width=_width(), tz=tz))
        return EXIT_OK

    return _records(args, run)


def cmd_sr_show(args: argparse.Namespace) -> int:
    from warrantyd.daemon import reports

    def run(db: Any, config: Config) -> int:
        detail = reports.sr_show(db, args.ref)
        _emit(args, [detail], lambda d: reports.render_sr(d, tz=_zone(config)))
        return EXIT_OK

    return _records(args, run)


def cmd_wo_list(args: argparse.Namespace) -> int:
    from warrantyd.daemon import reports
    from warrantyd.storage.queries import FollowupThresholds

    def run(db: Any, config: Config) -> int:
        tz = _zone(config)
        thresholds = FollowupThresholds.from_mapping(config.extra.get("followup") or {})
        rows = reports.wo_list(db, reports.build_wo_filter(
            property=args.property, vendor=args.vendor, status=args.status, sr=args.sr,
            since=args.since, needs_followup=args.needs_followup, limit=args.limit,
            offset=args.offset, tz=tz, division=args.division, config=config),
            thresholds=thresholds, tz=tz)
        if args.json:
            _emit(args, rows, str)
        else:
            print(reports.render_wo_table(rows, width=_width(), tz=tz))
        return EXIT_OK

    return _records(args, run)


def cmd_wo_show(args: argparse.Namespace) -> int:
    from warrantyd.daemon import reports

    def run(db: Any, config: Config) -> int:
        detail = reports.wo_show(db, args.ref)
        _emit(args, [detail], lambda d: reports.render_wo(d, tz=_zone(config)))
        return EXIT_OK

    return _records(args, run)


def cmd_wo_create(args: argparse.Namespace) -> int:
    import getpass

    from warrantyd.daemon import reports
    from warrantyd.daemon.staff import create_manual_work_order
    from warrantyd.storage.models import utcnow

    def run(db: Any, config: Config) -> int:
        actor = args.actor or f"cli:{getpass.getuser()}"
        try:
            with db.session() as session:
                wo = create_manual_work_order(
                    session, config, sr_ref=args.sr, trade=args.trade,
                    description=args.description, vendor=args.vendor, actor=actor,
                    now=utcnow())
                ref = wo.ref
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        detail = reports.wo_show(db, ref)
        _emit(args, [detail], lambda d: f"{ref} created as a draft on {args.sr.upper()}; "
                                        f"staff review it in the next digest\n"
                                        + reports.render_wo(d, tz=_zone(config)))
        return EXIT_OK

    return _records(args, run)


def cmd_import(args: argparse.Namespace) -> int:
    from warrantyd.daemon.importer import (
        ImportFileError,
        TerminalProgress,
        import_homes,
        import_vendors,
    )

    def run(db: Any, config: Config) -> int:
        (division,) = _divisions(config, args.division) or (MAIN_DIVISION,)
        into = f" into division {division}" if len(config.divisions) > 1 else ""
        progress = TerminalProgress(f"importing {args.kind}{into}")
        try:
            if args.kind == "homes":
                report = import_homes(db, args.file, progress=progress, dry_run=args.dry_run,
                                      division=division)
            else:
                report = import_vendors(db, args.file, trades=config.company.trades,
                                        progress=progress, dry_run=args.dry_run,
                                        division=division)
        except (ImportFileError, OSError) as exc:
            raise UsageError(str(exc)) from None
        finally:
            progress.close()
        for error in report.errors:
            print(error, file=sys.stderr)
        print(report.summary(args.kind) + into)
        return EXIT_OK if report.ok else EXIT_FAILED

    return _records(args, run)


def cmd_inbox_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from warrantyd.daemon.reports import inbound_in_divisions
    from warrantyd.storage.models import InboundMessage

    config = _config(args, partial=True)
    divisions = _divisions(config, args.division)
    db = _database(config)
    with db.session() as session:
        stmt = select(InboundMessage).order_by(InboundMessage.id.desc()).limit(args.limit)
        if args.status:
            stmt = stmt.where(InboundMessage.status == args.status)
        if divisions is not None:
            stmt = stmt.where(inbound_in_divisions(config, divisions))
        rows = [{"id": r.id, "status": r.status, "received_at": r.received_at.isoformat(),
                 "from": r.from_addr, "subject": r.subject, "classification": r.classification,
                 "reason": r.reason,
                 "attempts": r.attempts, "last_error": r.last_error, "message_id": r.message_id,
                 "mailbox": r.mailbox, "uid": r.uid,
                 "division": config.division_of_inbound(r.mailbox).name}
                for r in session.scalars(stmt)]
    db.dispose()
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return EXIT_OK
    if not rows:
        print("no inbound mail" + (f" with status {args.status}" if args.status else "")
              + (f" in division {args.division}" if args.division else ""))
    several = len(config.divisions) > 1
    for r in rows:
        where = f"{r['division'][:12]:<12}  " if several else ""
        print(f"{r['id']:>6}  {r['status']:<11} {r['received_at'][:19]}  {where}"
              f"{(r['from'] or '-')[:30]:<30}  {(r['subject'] or '')[:40]}")
        if r["last_error"]:
            print(f"        error: {r['last_error'].splitlines()[-1][:120]}")
        elif r["status"] == "ignored" and r["reason"]:
            print(f"        why: {r['reason'][:120]}")
    return EXIT_OK


def cmd_inbox_reprocess(args: argparse.Namespace) -> int:
    from warrantyd.storage.inbound import reprocess

    config = _config(args, partial=True)
    db = _database(config)
    try:
        with db.session() as session:
            row = reprocess(session, args.id)
            print(f"inbound message {row.id} queued again; a running daemon processes it on "
                  f"its next pass")
    except (LookupError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    finally:
        db.dispose()
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from warrantyd.daemon.demo import main as demo_main
    from warrantyd.daemon.demo_servers import DemoServerError

    try:
        return demo_main(args.data_dir, script=args.script)
    except DemoServerError as exc:
        raise UsageError(str(exc)) from None


if __name__ == "__main__":
    raise SystemExit(main())
