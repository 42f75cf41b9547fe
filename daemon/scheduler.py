"""Scheduled jobs: cron times from config, run once per time slot however many daemons run.

APScheduler (3.x, :class:`~apscheduler.schedulers.asyncio.AsyncIOScheduler`) only says *when*
to look; whether a slot runs is decided in the database.  Each run of a job for a slot (the
cron time it belongs to, e.g. 07:00 today) first inserts a ``JobRun(job, slot)`` row, in the
same transaction as the job's work: the unique constraint on (job, slot) lets exactly one
daemon commit it, and a run that fails rolls its claim back with its work, so a later try can
still run the slot.  Nothing about jobs is kept in APScheduler's own store: the jobs are
defined from the config at every start and the slot bookkeeping is in ``job_run``.

Late runs are forgiving and never double: APScheduler coalesces missed firings into one
(``coalesce``), a firing up to ``catch_up_hours`` late still runs (``misfire_grace_time``),
and at start the newest slot of each job that passed within ``catch_up_hours`` runs once if
no daemon ran it — a daemon restarted at 07:10 still sends the 07:00 digest, one down all
night does not send a stale one.

The work of a job is synchronous database code; it runs in a worker thread so mail intake
and sending go on meanwhile.  After a job queues mail, the outbox sender is woken.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from warrantyd.daemon.config import Config
from warrantyd.storage.db import Database
from warrantyd.storage.models import MAIN_DIVISION, JobRun, utcnow

log = logging.getLogger("warrantyd.scheduler")

FOLLOWUP_DIGEST_JOB = "followup_digest"
VENDOR_NUDGES_JOB = "vendor_nudges"
EMERGENCY_ESCALATION_JOB = "emergency_escalation"
APPROVAL_DIGEST_JOB = "approval_digest"
MAX_SLOT_STEPS = 100_000
"""Bound on cron steps when looking back for a slot (an every-minute cron over 6 hours is 360)."""


@dataclass(frozen=True)
class JobContext:
    """What a job's work gets: the claiming transaction, the config, its slot and the time."""

    session: Session
    config: Config
    slot: datetime
    """The cron time this run is for (UTC), the same for every daemon."""
    now: datetime
    """When it actually runs: what stuck-ness and mail dates are measured against."""


@dataclass(frozen=True)
class JobOutcome:
    mails: int = 0
    """Mails queued (the outbox sender is woken when any were)."""
    summary: str = ""
    """One line for ``job_run.result`` and the log."""


JobWork = Callable[[JobContext], JobOutcome]


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    cron: str
    """Five-field crontab expression in the company's time zone."""
    work: JobWork

    def trigger(self, tz: tzinfo) -> CronTrigger:
        return CronTrigger.from_crontab(self.cron, timezone=tz)


class _SlotTaken(Exception):
    """Another run committed this slot first."""


@dataclass(frozen=True)
class SlotRun:
    """What became of one attempt to run a slot."""

    job: str
    slot: datetime
    status: str
    """ran | taken (another run claimed the slot) | failed (rolled back, may be retried)"""
    outcome: JobOutcome | None = None
    error: str | None = None


def last_slot(trigger: CronTrigger, now: datetime, *, within: timedelta) -> datetime | None:
    """The newest fire time of ``trigger`` in ``(now - within, now]`` (UTC), or None."""
    cursor = now - within + timedelta(microseconds=1)
    found: datetime | None = None
    fire = trigger.get_next_fire_time(None, cursor)
    steps = 0
    while fire is not None and fire <= now and steps < MAX_SLOT_STEPS:
        found = fire
        fire = trigger.get_next_fire_time(fire, fire)
        steps += 1
    return found.astimezone(UTC).replace(microsecond=0) if found is not None else None


# --- the jobs ---------------------------------------------------------------------------------

def _followup_digest(ctx: JobContext) -> JobOutcome:
    from warrantyd.daemon.followup import queue_followup_digest

    rows = queue_followup_digest(ctx.session, ctx.config, ctx.now, slot=ctx.slot)
    return JobOutcome(len(rows), f"follow-up digest to {len(rows)} staff" if rows
                      else "nothing stuck: no mail")


def _vendor_nudges(ctx: JobContext) -> JobOutcome:
    from warrantyd.daemon.followup import queue_vendor_nudges

    rows = queue_vendor_nudges(ctx.session, ctx.config, ctx.now)
    return JobOutcome(len(rows), f"{len(rows)} vendor reminder(s)")


def _emergency_escalation(ctx: JobContext) -> JobOutcome:
    from warrantyd.daemon.followup import queue_emergency_escalations

    rows = queue_emergency_escalations(ctx.session, ctx.config, ctx.now)
    return JobOutcome(len(rows), f"emergency escalation to {len(rows)} staff" if rows
                      else "no unhandled emergency")


def _approval_digest(ctx: JobContext, division: str = MAIN_DIVISION) -> JobOutcome:
    from warrantyd.daemon.digests import queue_pending_digest

    rows = queue_pending_digest(ctx.session, ctx.config, ctx.now, division)
    return JobOutcome(len(rows), f"approval digest to {len(rows)} staff" if rows
                      else "nothing waiting: no digest")


def approval_digest_job_name(division: str) -> str:
    """``approval_digest`` for the main division (its name from before divisions),
    ``approval_digest:NAME`` for another: one slot claim per division."""
    name = APPROVAL_DIGEST_JOB if division == MAIN_DIVISION \
        else f"{APPROVAL_DIGEST_JOB}:{division}"
    if len(name) <= 100:  # job_run.job
        return name
    return f"{APPROVAL_DIGEST_JOB}:{hashlib.sha256(division.encode()).hexdigest()[:40]}"


def jobs_from_config(config: Config) -> list[ScheduledJob]:
    """The follow-up digest, vendor reminders, emergency escalation and, for each division
    whose ``[staff] digest`` is a cron expression, its approval digest; a job whose cron is
    "" is off.

    The follow-up digest, the reminders and the escalation are one job each: one run covers
    every division (each division's staff get their own follow-up digest and escalations).
    """
    from warrantyd.daemon.digests import IMMEDIATE, digest_mode

    jobs = []
    if config.followup.digest_cron:
        jobs.append(ScheduledJob(FOLLOWUP_DIGEST_JOB, config.followup.digest_cron,
                                 _followup_digest))
    if config.followup.nudge_cron:
        jobs.append(ScheduledJob(VENDOR_NUDGES_JOB, config.followup.nudge_cron, _vendor_nudges))
    if config.followup.escalation_cron:
        jobs.append(ScheduledJob(EMERGENCY_ESCALATION_JOB, config.followup.escalation_cron,
                                 _emergency_escalation))
    for division in config.divisions:
        if digest_mode(config, division.name) != IMMEDIATE:
            jobs.append(ScheduledJob(approval_digest_job_name(division.name),
                                     division.staff.digest.strip(),
                                     functools.partial(_approval_digest,
                                                       division=division.name)))
    return jobs


# --- running them -----------------------------------------------------------------------------

class JobScheduler:
    """Runs :class:`ScheduledJob` slots once each across every daemon on the database."""

    def __init__(self, db: Database, config: Config, jobs: list[ScheduledJob] | None = None, *,
                 worker_id: str | None = None, on_mail: Callable[[], None] | None = None,
                 clock: Callable[[], datetime] = utcnow,
                 catch_up: timedelta | None = None) -> None:
        self.db = db
        self.config = config
        self.jobs = jobs if jobs is not None else jobs_from_config(config)
        self.worker_id = (worker_id
                          or f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(3)}")
        self.on_mail = on_mail
        self.clock = clock
        self.catch_up_window = (catch_up if catch_up is not None
                                else timedelta(hours=config.followup.catch_up_hours))
        try:
            self.tz: tzinfo = ZoneInfo(config.company.timezone)
        except (KeyError, ValueError):
            self.tz = ZoneInfo("UTC")
        self.triggers = {job.name: job.trigger(self.tz) for job in self.jobs}
        self._scheduler: AsyncIOScheduler | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.catch_up_task: asyncio.Task[list[SlotRun]] | None = None
        self.last_runs: dict[str, SlotRun] = {}

    # -- one slot --

    def run_slot(self, job: ScheduledJob, slot: datetime, now: datetime | None = None
                 ) -> SlotRun:
        """Claim ``slot`` of ``job`` and do its work, all in one transaction (blocking).

        The claim is the first write, so on SQLite the write lock is taken before any work
        and on PostgreSQL a second daemon's claim waits for the first to commit (then finds
        the slot taken) or to roll back (then runs it itself).
        """
        slot = slot.astimezone(UTC).replace(microsecond=0)
        now = now or self.clock()
        try:
            with self.db.session() as session:
                run = JobRun(job=job.name, slot=slot, worker=self.worker_id, started_at=now)
                session.add(run)
                try:
                    session.flush()
                except IntegrityError:
                    # Leaves the transaction through its rollback.  (No savepoint: on SQLite
                    # a savepoint opened before any other write commits when released.)
                    raise _SlotTaken from None
                outcome = job.work(JobContext(session, self.config, slot, now))
                run.finished_at = max(self.clock(), now)
                run.result = outcome.summary[:2000]
            result = SlotRun(job.name, slot, "ran", outcome)
        except _SlotTaken:
            log.debug("%s %s: already claimed", job.name, slot.isoformat())
            result = SlotRun(job.name, slot, "taken")
        except Exception as exc:  # a job's failure must not stop the scheduler or the daemon
            log.exception("%s for %s failed; it is retried at the next start within the "
                          "catch-up window", job.name, slot.isoformat())
            result = SlotRun(job.name, slot, "failed", error=f"{type(exc).__name__}: {exc}")
        if result.status != "taken":
            self.last_runs[job.name] = result
        if result.status == "ran" and result.outcome is not None:
            log.info("%s for %s: %s", job.name, slot.astimezone(self.tz).isoformat(),
                     result.outcome.summary)
            if result.outcome.mails and self.on_mail is not None:
                self.on_mail()
        return result

    def slot_taken(self, job: str, slot: datetime) -> bool:
        with self.db.session() as session:
            return session.scalar(select(JobRun.id).where(
                JobRun.job == job, JobRun.slot == slot.astimezone(UTC))) is not None

    async def run_due(self, job: ScheduledJob, now: datetime | None = None) -> SlotRun | None:
        """Run the newest slot of ``job`` within the catch-up window, if any (and not taken)."""
        now = now or self.clock()
        slot = last_slot(self.triggers[job.name], now, within=self.catch_up_window)
        if slot is None:
            return None
        return await asyncio.to_thread(self.run_slot, job, slot, now)

    async def catch_up(self, now: datetime | None = None) -> list[SlotRun]:
        """At start: every job's newest slot within the catch-up window, once."""
        now = now or self.clock()
        runs = []
        for job in self.jobs:
            run = await self.run_due(job, now)
            if run is not None:
                runs.append(run)
                if run.status == "ran":
                    log.info("caught up %s for %s", job.name, run.slot.isoformat())
        return runs

    # -- the asyncio side --

    async def _fire(self, name: str) -> None:
        """Called by APScheduler at a cron time (or late, coalesced, within the grace)."""
        job = next(j for j in self.jobs if j.name == name)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self.run_due(job)
        finally:
            if task is not None:
                self._tasks.discard(task)

    def start(self) -> None:
        """Register the jobs with APScheduler and start catching up (needs a running loop)."""
        if self._scheduler is not None:
            return
        grace = max(1, int(self.catch_up_window.total_seconds()))
        scheduler = AsyncIOScheduler(timezone=self.tz, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": grace})
        for job in self.jobs:
            scheduler.add_job(self._fire, trigger=self.triggers[job.name], args=[job.name],
                              id=job.name, name=job.name, replace_existing=True)
        scheduler.start()
        self._scheduler = scheduler
        self.catch_up_task = asyncio.create_task(self.catch_up(), name="scheduler-catch-up")
        self._tasks.add(self.catch_up_task)
        self.catch_up_task.add_done_callback(self._tasks.discard)
        if self.jobs:
            log.info("scheduled: %s", ", ".join(f"{j.name} ({j.cron})" for j in self.jobs))

    def stop(self) -> None:
        """No new runs start; a run in hand finishes (see :meth:`aclose`)."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    async def aclose(self) -> None:
        """Stop and wait for the runs in hand to commit or roll back."""
        self.stop()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._scheduler = None

    def next_runs(self) -> dict[str, datetime | None]:
        """When each job next fires (from now), for status pages."""
        now = self.clock()
        return {job.name: self.triggers[job.name].get_next_fire_time(None, now)
                for job in self.jobs}

    @property
    def status(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "running": bool(self._scheduler is not None and self._scheduler.running),
            "jobs": {job.name: job.cron for job in self.jobs},
            "next": {k: v.isoformat() if v else None for k, v in self.next_runs().items()},
            "last": {k: {"slot": r.slot.isoformat(), "status": r.status, "error": r.error,
                         "summary": r.outcome.summary if r.outcome else None}
                     for k, r in self.last_runs.items()},
        }
