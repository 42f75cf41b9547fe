"""The processing worker (daemon/worker.py) and the SQLite writer turn it shares with the
daemon's main process (storage/db.py).

Stored mail is processed in a process of its own; these tests hold it to the promises the
in-process processor made: every row done once, the sender woken, nothing lost when the
worker dies (even in the middle of a mail), and no worker left behind by a killed daemon.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import DaemonProcess, homeowner_mail, wait_for, write_config
from dovecot import Dovecot
from smtp_sink import SmtpSink
from sqlalchemy import select
from vendor_jobs import inbound_status, make_config

from warrantyd.daemon.config import Config
from warrantyd.daemon.worker import ProcessingWorker, WorkerLost, spawn_worker
from warrantyd.storage.db import Database, SqliteWriterTurn
from warrantyd.storage.inbound import store_inbound
from warrantyd.storage.models import InboundMessage, OutboundMessage, Setting, WorkOrder

pytest_plugins = ("e2e_fixtures",)


def _store(database: Database, config: Config, n: int) -> int:
    with database.session() as s:
        row, _ = store_inbound(s, mailbox=f"{config.mailbox.address}/INBOX", uidvalidity=1,
                               uid=n, raw=homeowner_mail(n))
        return row.id


async def _until_lost(worker: ProcessingWorker) -> None:
    """Until the main side has noticed its worker's end close."""
    for _ in range(200):
        if worker.pid is None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the main process never noticed that its worker died")


async def test_the_worker_processes_stored_mail_wakes_the_sender_and_comes_back_when_killed(
        tmp_path: Path, database: Database) -> None:
    config = make_config(tmp_path, database)
    first_mail = _store(database, config, 1)
    woken: list[int] = []
    worker = ProcessingWorker(config, database, on_outbound=lambda: woken.append(1))
    worker.start()
    try:
        assert await worker.process_pending() == 1
        assert inbound_status(database, first_mail) == "done"
        assert woken, "queued mail must wake the sender of the main process"
        with database.session() as s:
            kinds = sorted(s.scalars(select(OutboundMessage.kind)))
            trades = sorted(s.scalars(select(WorkOrder.trade)))
        assert kinds == ["ack", "digest"]
        assert trades == ["drywall", "plumbing"], "drafted by the offline drafter, in line"

        first_pid = worker.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        await _until_lost(worker)
        second_mail = _store(database, config, 2)
        assert await worker.process_pending() == 1, "a new worker takes the next request"
        assert worker.pid not in (None, first_pid)
        assert worker.status["starts"] == 2 and "exited" in worker.status["last_exit"]
        assert inbound_status(database, second_mail) == "done"

        # A nudge starts a pass by itself (the reader's, after each stored batch).
        third_mail = _store(database, config, 3)
        worker.nudge()
        for _ in range(200):
            if inbound_status(database, third_mail) == "done":
                break
            await asyncio.sleep(0.05)
        assert inbound_status(database, third_mail) == "done"
    finally:
        await worker.stop()
    assert worker.pid is None


async def test_a_worker_started_early_that_died_before_its_config_is_replaced(
        tmp_path: Path, database: Database) -> None:
    # `warrantyd run` starts the worker before reading the config; if it is gone by the
    # time the config is handed over, the daemon says so and the next request starts one.
    config = make_config(tmp_path, database)
    mail = _store(database, config, 1)
    early = spawn_worker()
    early.proc.kill()
    early.proc.wait(timeout=30)
    worker = ProcessingWorker(config, database, on_outbound=lambda: None, spawned=early)
    worker.start()
    try:
        assert worker.pid is None and "exited" in worker.status["last_exit"]
        assert await worker.process_pending() == 1
        assert worker.pid not in (None, early.proc.pid)
        assert inbound_status(database, mail) == "done"
    finally:
        await worker.stop()


class SilentModelServer:
    """Accepts connections and never answers: a drafting call hangs there.  ``called`` is
    set when the first connection arrives."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.called = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        self._held.append(conn)
        self.called.set()

    def close(self) -> None:
        for conn in self._held:
            conn.close()
        self.server.close()


async def test_the_workers_log_records_go_through_the_daemons_logging(
        tmp_path: Path, database: Database, caplog: pytest.LogCaptureFixture) -> None:
    """Wherever the daemon logs (stderr under systemd, the demo's log file), the worker's
    lines go too, with their own logger names, levels and PID."""
    caplog.set_level(logging.INFO)
    config = make_config(tmp_path, database)
    with database.session() as s:
        store_inbound(s, mailbox=f"{config.mailbox.address}/INBOX", uidvalidity=1, uid=7,
                      raw=b"To: x@example.com\r\nSubject: from nobody\r\n\r\nHello.\r\n")
    worker = ProcessingWorker(config, database, on_outbound=lambda: None)
    worker.start()
    try:
        assert await worker.process_pending() == 1
        worker_pid = worker.pid
    finally:
        await worker.stop()
    ignored = [r for r in caplog.records if "ignored" in r.getMessage()]
    assert ignored, [r.getMessage() for r in caplog.records]
    assert ignored[0].name == "warrantyd.actions" and ignored[0].levelno == logging.INFO
    assert ignored[0].process == worker_pid != os.getpid()


@pytest.fixture
def silent_model_server() -> Iterator[SilentModelServer]:
    server = SilentModelServer()
    yield server
    server.close()


async def test_a_worker_killed_in_the_middle_of_a_mail_loses_nothing(
        tmp_path: Path, database: Database, silent_model_server: SilentModelServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_TEST_KEY", "sk-test")
    hanging = make_config(tmp_path, database, engine="anthropic", api_key_env="WORKER_TEST_KEY",
                          base_url=silent_model_server.url, timeout_seconds=120,
                          max_retries=0)
    inbound_id = _store(database, hanging, 1)
    worker = ProcessingWorker(hanging, database, on_outbound=lambda: None)
    worker.start()
    try:
        asking = asyncio.ensure_future(worker.process_pending())
        # The worker is waiting for the model, in the middle of the mail: kill it there.
        assert await asyncio.to_thread(silent_model_server.called.wait, 60)
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(WorkerLost, match="stays stored"):
            await asyncio.wait_for(asking, 30)
    finally:
        await worker.stop()
    assert inbound_status(database, inbound_id) == "new", "the mail waits for the next worker"
    with database.session() as s:
        assert s.scalars(select(OutboundMessage)).all() == []
        row = s.get(InboundMessage, inbound_id)
        assert row is not None
        # It counts as a failed attempt, like a mail whose processing raised: a mail that
        # kills the worker every time ends in quarantine instead of killing it forever.
        assert row.attempts == 1 and "WorkerLost" in (row.last_error or "")
        assert row.next_attempt_at is not None
        row.next_attempt_at = None  # its retry is due

    # The next worker (here: the offline drafter) does the mail, once.
    config = make_config(tmp_path, database)
    worker = ProcessingWorker(config, database, on_outbound=lambda: None)
    worker.start()
    try:
        assert await worker.process_pending() == 1
    finally:
        await worker.stop()
    assert inbound_status(database, inbound_id) == "done"


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_no_worker_outlives_its_daemon(how: str, tmp_path: Path, dovecot: Dovecot,
                                       sink: SmtpSink, mailbox_user: str) -> None:
    config = write_config(tmp_path, dovecot=dovecot, smtp_port=sink.port,
                          db_url=f"sqlite:///{tmp_path / 'w.sqlite3'}", imap_user=mailbox_user)
    with DaemonProcess(config) as daemon:
        daemon.wait_ready()
        assert daemon.proc is not None
        wait_for(lambda: _children(daemon.proc.pid), 30, "the processing worker", daemon)
        (worker_pid,) = _children(daemon.proc.pid)
        dovecot.append(mailbox_user, homeowner_mail(1, sender="dana@example.com"))
        wait_for(lambda: sink.received_by("dana@example.com"), 30, "the acknowledgement",
                 daemon)
        if how == "sigterm":
            assert daemon.terminate() == 0
        else:
            daemon.kill()
        wait_for(lambda: _gone(worker_pid), 30, "the worker to exit with its daemon", daemon)
        assert "Traceback" not in daemon.log()


def test_a_bad_config_stops_the_worker_started_before_it_was_read(tmp_path: Path) -> None:
    # `warrantyd run` starts its worker before it reads the config, so that the two load
    # their code side by side; a config that does not load must not leave it behind.
    bad = tmp_path / "config.toml"
    bad.write_text('[company]\nname = "Acme"\n[mailbox]\naddress = "nope"\n')
    proc = subprocess.Popen([sys.executable, "-m", "warrantyd.daemon.cli", "run", "--config",
                             str(bad)], stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "[mailbox].address: 'nope' is not an email address" in err
    assert "Traceback" not in err
    with pytest.raises(ProcessLookupError):  # nothing is left in the daemon's session
        os.killpg(proc.pid, 0)


# --- the SQLite writer turn --------------------------------------------------------------

_HOLDER = """
import sys
from warrantyd.storage.db import Database
from warrantyd.storage.models import Setting
db = Database(sys.argv[1])
with db.session() as s:
    s.add(Setting(key="holder", value="1"))
    s.flush()
    print("holding", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'turn.sqlite3'}")
    db.upgrade()
    yield db
    db.dispose()


@pytest.fixture
def holder(sqlite_db: Database) -> Iterator[subprocess.Popen[str]]:
    """Another process in the middle of a write transaction until a line is written to it."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, sqlite_db.url], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "holding"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_a_writer_waits_for_another_process_and_goes_on_when_it_is_done(
        sqlite_db: Database, holder: subprocess.Popen[str]) -> None:
    done = threading.Event()

    def write() -> None:
        with sqlite_db.session() as s:
            s.add(Setting(key="mine", value="2"))
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    assert not done.wait(0.5), "wrote while another process was in a write transaction"
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "released"
    writer.join(30)
    assert done.is_set()
    with sqlite_db.reading() as s:
        assert sorted(s.scalars(select(Setting.key).where(
            Setting.key.in_(["holder", "mine"])))) == ["holder", "mine"]


def test_reading_does_not_wait_for_a_writer(sqlite_db: Database,
                                            holder: subprocess.Popen[str]) -> None:
    read: list[object] = []
    reader = threading.Thread(target=lambda: read.append(_read_setting(sqlite_db)))
    reader.start()
    reader.join(10)
    assert read == [None], "a reading session waited for (or saw) another's write"
    assert holder.poll() is None, "the writer was still in its transaction"


def _read_setting(db: Database) -> object:
    with db.reading() as s:
        return s.get(Setting, "holder")


def test_a_turn_held_too_long_fails_with_what_to_check(sqlite_db: Database,
                                                       holder: subprocess.Popen[str]) -> None:
    path = sqlite_db.engine.url.database
    assert path is not None
    turn = SqliteWriterTurn(str(Path(path).resolve()))
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"locked by another process for 0\.3 s"), turn(0.3):
        pass
    assert time.monotonic() - started < 10
    turn.close()


def _lock_files_open(db: Database) -> int:
    """How many descriptors this process has open on ``db``'s lock file."""
    path = f"{Path(str(db.engine.url.database)).resolve()}-writer"
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == path
        except OSError:
            continue
    return count


def test_the_lock_file_closes_with_its_database_and_opens_again(sqlite_db: Database) -> None:
    with sqlite_db.session() as s:
        s.add(Setting(key="first", value="1"))
    assert _lock_files_open(sqlite_db) == 1
    sqlite_db.dispose()
    assert _lock_files_open(sqlite_db) == 0, "a disposed database keeps no lock file open"
    with sqlite_db.session() as s:
        s.add(Setting(key="second", value="2"))
    with sqlite_db.reading() as s:
        assert s.get(Setting, "second") is not None
