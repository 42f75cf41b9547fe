"""The scheduler: one run per slot across daemons, catch-up at start, jobs from config.

Runs on SQLite and PostgreSQL (the ``database`` fixture).  Nothing waits for a cron time:
slots and clocks are given explicitly.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from config_builder import PAT, build_config
from sqlalchemy import select

from warrantyd.daemon.config import Config
from warrantyd.daemon.scheduler import (
    APPROVAL_DIGEST_JOB,
    EMERGENCY_ESCALATION_JOB,
    FOLLOWUP_DIGEST_JOB,
    VENDOR_NUDGES_JOB,
    JobContext,
    JobOutcome,
    JobScheduler,
    ScheduledJob,
    jobs_from_config,
    last_slot,
)
from warrantyd.storage.db import Database
from warrantyd.storage.models import JobRun, OutboundMessage, ServiceRequest, WorkOrder

DENVER = ZoneInfo("America/Denver")


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=DENVER)  # type: ignore[misc]


def make_config(tmp_path: Path, database: Database, *, digest: str = "immediate",
                **followup: Any) -> Config:
    return build_config(tmp_path, database, sync=False,
                        staff={"addresses": [PAT], "digest": digest}, followup=followup)


class Counting:
    """A job's work that counts its runs and remembers the slots and times it was given."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[datetime, datetime]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, ctx: JobContext) -> JobOutcome:
        with self.lock:
            self.calls.append((ctx.slot, ctx.now))
        if self.fail:
            raise RuntimeError("the job broke")
        return JobOutcome(mails=1, summary="did it")


def runs(database: Database) -> list[JobRun]:
    with database.session() as s:
        return list(s.scalars(select(JobRun).order_by(JobRun.id)))


# --- slots ----------------------------------------------------------------------------------

def test_last_slot_is_the_newest_cron_time_within_the_window() -> None:
    daily = CronTrigger.from_crontab("0 7 * * *", timezone=DENVER)
    six = timedelta(hours=6)
    assert last_slot(daily, local(2025, 3, 10, 7, 10), within=six) == \
        local(2025, 3, 10, 7, 0).astimezone(UTC)
    assert last_slot(daily, local(2025, 3, 10, 7, 0), within=six) == \
        local(2025, 3, 10, 7, 0).astimezone(UTC), "fired on the dot"
    assert last_slot(daily, local(2025, 3, 10, 6, 59), within=six) is None
    assert last_slot(daily, local(2025, 3, 10, 13, 0, ), within=six) is None, "6 h is over"
    assert last_slot(daily, local(2025, 3, 10, 6, 59), within=timedelta(days=1)) == \
        local(2025, 3, 9, 7, 0).astimezone(UTC)
    # Several missed slots coalesce into the newest one.
    hourly = CronTrigger.from_crontab("0 * * * *", timezone=DENVER)
    assert last_slot(hourly, local(2025, 3, 10, 12, 30), within=six) == \
        local(2025, 3, 10, 12, 0).astimezone(UTC)
    # Company time across the DST change (March 9, 2025 in Denver).
    assert last_slot(daily, local(2025, 3, 9, 8, 0), within=six) == \
        datetime(2025, 3, 9, 13, 0, tzinfo=UTC)
    assert last_slot(daily, local(2025, 3, 8, 8, 0), within=six) == \
        datetime(2025, 3, 8, 14, 0, tzinfo=UTC)


# --- one run per slot -----------------------------------------------------------------------

def test_two_daemons_run_a_slot_once(tmp_path: Path, database: Database) -> None:
    config = make_config(tmp_path, database)
    work = Counting()
    job = ScheduledJob("report", "0 7 * * *", work)
    woken: list[str] = []
    first = JobScheduler(database, config, [job], worker_id="a",
                         on_mail=lambda: woken.append("a"))
    second = JobScheduler(database, config, [job], worker_id="b",
                          on_mail=lambda: woken.append("b"))
    slot = local(2025, 3, 10, 7, 0)
    now = slot + timedelta(seconds=1)
    assert first.run_slot(job, slot, now).status == "ran"
    assert second.run_slot(job, slot, now).status == "taken"
    assert first.run_slot(job, slot, now + timedelta(minutes=5)).status == "taken"
    assert len(work.calls) == 1 and woken == ["a"]
    assert work.calls[0] == (slot.astimezone(UTC), now)
    [row] = runs(database)
    assert (row.job, row.slot, row.worker, row.result) == ("report", slot.astimezone(UTC), "a",
                                                           "did it")
    assert row.started_at == now and row.finished_at is not None
    # The next slot is a new run; another job's same slot too.
    assert second.run_slot(job, slot + timedelta(days=1)).status == "ran"
    other = ScheduledJob("other", "0 7 * * *", work)
    assert first.run_slot(other, slot).status == "ran"
    assert len(work.calls) == 3 and len(runs(database)) == 3


def test_concurrent_claims_of_one_slot_run_it_once(tmp_path: Path, database: Database) -> None:
    config = make_config(tmp_path, database)
    work = Counting()
    job = ScheduledJob("report", "0 7 * * *", work)
    daemons = [JobScheduler(database, config, [job], worker_id=f"w{i}") for i in range(4)]
    slot = local(2025, 3, 10, 7, 0)
    start = threading.Barrier(len(daemons))
    results: list[str] = []

    def run(daemon: JobScheduler) -> None:
        start.wait()
        results.append(daemon.run_slot(job, slot).status)

    threads = [threading.Thread(target=run, args=(d,)) for d in daemons]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ran", "taken", "taken", "taken"]
    assert len(work.calls) == 1 and len(runs(database)) == 1


def test_a_failed_run_releases_its_slot(tmp_path: Path, database: Database) -> None:
    config = make_config(tmp_path, database)
    broken = Counting(fail=True)
    job = ScheduledJob("report", "0 7 * * *", broken)
    daemon = JobScheduler(database, config, [job], worker_id="a")
    slot = local(2025, 3, 10, 7, 0)
    result = daemon.run_slot(job, slot)
    assert result.status == "failed" and "the job broke" in (result.error or "")
    assert runs(database) == [], "the claim rolled back with the work"
    assert daemon.status["last"]["report"]["status"] == "failed"
    fixed = ScheduledJob("report", "0 7 * * *", Counting())
    assert daemon.run_slot(fixed, slot).status == "ran"


# --- missed slots ---------------------------------------------------------------------------

async def test_catch_up_at_start_runs_a_missed_slot_once(tmp_path: Path,
                                                         database: Database) -> None:
    config = make_config(tmp_path, database, catch_up_hours=6)
    work = Counting()
    job = ScheduledJob("report", "0 * * * *", work)     # hourly
    restarted = local(2025, 3, 10, 12, 40)              # down since 7:00
    daemon = JobScheduler(database, config, [job], worker_id="a", clock=lambda: restarted)
    [caught] = await daemon.catch_up()
    assert caught.status == "ran" and caught.slot == local(2025, 3, 10, 12, 0).astimezone(UTC)
    assert len(work.calls) == 1, "the missed hours coalesce into one run"
    other = JobScheduler(database, config, [job], worker_id="b", clock=lambda: restarted)
    assert [r.status for r in await other.catch_up()] == ["taken"]
    assert len(work.calls) == 1


async def test_no_catch_up_beyond_the_grace(tmp_path: Path, database: Database) -> None:
    config = make_config(tmp_path, database, catch_up_hours=2)
    work = Counting()
    job = ScheduledJob("report", "0 7 * * *", work)
    daemon = JobScheduler(database, config, [job], worker_id="a",
                          clock=lambda: local(2025, 3, 10, 9, 30))
    assert await daemon.catch_up() == []
    assert work.calls == [] and runs(database) == []


async def test_start_registers_coalescing_jobs_and_catches_up(tmp_path: Path,
                                                              database: Database) -> None:
    config = make_config(tmp_path, database, catch_up_hours=3)
    work = Counting()
    job = ScheduledJob("report", "30 7 * * *", work)
    now = datetime.now(UTC).replace(microsecond=0)
    daemon = JobScheduler(database, config, [job], worker_id="a", clock=lambda: now)
    daemon.start()
    try:
        registered = daemon._scheduler.get_job("report")  # type: ignore[union-attr]
        assert registered.coalesce is True and registered.max_instances == 1
        assert registered.misfire_grace_time == 3 * 3600
        assert daemon.catch_up_task is not None
        caught = await daemon.catch_up_task
        expected = last_slot(daemon.triggers["report"], now, within=timedelta(hours=3))
        assert [r.slot for r in caught] == ([expected] if expected else [])
        assert daemon.status["running"] and daemon.status["next"]["report"]
    finally:
        await daemon.aclose()
    assert not daemon.status["running"]


# --- the jobs from the config ---------------------------------------------------------------

def test_jobs_from_config(tmp_path: Path, database: Database) -> None:
    defaults = jobs_from_config(make_config(tmp_path, database))
    assert [(j.name, j.cron) for j in defaults] == [
        (FOLLOWUP_DIGEST_JOB, "0 7 * * *"), (VENDOR_NUDGES_JOB, "0 9 * * mon-fri"),
        (EMERGENCY_ESCALATION_JOB, "*/5 * * * *")]
    cron = jobs_from_config(make_config(tmp_path, database, digest="0 8,13 * * mon-fri",
                                        nudge_cron="", escalation_cron=""))
    assert [(j.name, j.cron) for j in cron] == [
        (FOLLOWUP_DIGEST_JOB, "0 7 * * *"), (APPROVAL_DIGEST_JOB, "0 8,13 * * mon-fri")]


def add_draft(database: Database, at: datetime, priority: str = "routine") -> int:
    with database.session() as s:
        sr = ServiceRequest(status="open", requester_email="dana@example.com",
                            requester_name="Dana", subject="Sink", created_at=at, updated_at=at)
        s.add(sr)
        s.flush()
        wo = WorkOrder(service_request_id=sr.id, status="draft", trade="plumbing",
                       priority=priority, description="Kitchen sink leaks.", created_at=at,
                       updated_at=at)
        s.add(wo)
        s.flush()
        return wo.id


def test_cron_approval_digest_and_follow_up_run_through_their_slots(
        tmp_path: Path, database: Database) -> None:
    config = make_config(tmp_path, database, digest="0 8 * * *")
    woken: list[int] = []
    jobs = {j.name: j for j in jobs_from_config(config)}
    daemons = [JobScheduler(database, config, list(jobs.values()), worker_id=w,
                            on_mail=lambda: woken.append(1)) for w in ("a", "b")]
    slot = (datetime.now(UTC) - timedelta(days=1)).astimezone(DENVER).replace(
        hour=8, minute=0, second=0, microsecond=0)
    add_draft(database, slot - timedelta(hours=30))
    for daemon in daemons:
        daemon.run_slot(jobs[APPROVAL_DIGEST_JOB], slot, slot + timedelta(seconds=2))
        daemon.run_slot(jobs[FOLLOWUP_DIGEST_JOB], slot, slot + timedelta(seconds=2))
    with database.session() as s:
        kinds = sorted(m.kind for m in s.scalars(select(OutboundMessage)))
    assert kinds == ["digest", "digest_followup"], "each once, though two daemons ran them"
    assert len(woken) == 2, "the outbox sender is woken after each job that queued mail"
    results = {r.job: r.result for r in runs(database)}
    assert results == {APPROVAL_DIGEST_JOB: "approval digest to 1 staff",
                       FOLLOWUP_DIGEST_JOB: "follow-up digest to 1 staff"}


@pytest.mark.parametrize("cron", ["0 7 * * *"])
def test_nothing_to_do_is_still_a_run(tmp_path: Path, database: Database, cron: str) -> None:
    """A slot with nothing stuck is claimed (so no other daemon tries) and sends nothing."""
    config = make_config(tmp_path, database)
    woken: list[int] = []
    job = next(j for j in jobs_from_config(config) if j.name == FOLLOWUP_DIGEST_JOB)
    daemon = JobScheduler(database, config, [job], on_mail=lambda: woken.append(1))
    result = daemon.run_slot(job, local(2025, 3, 10, 7, 0))
    assert result.status == "ran" and result.outcome == JobOutcome(0, "nothing stuck: no mail")
    assert woken == [] and [r.result for r in runs(database)] == ["nothing stuck: no mail"]
