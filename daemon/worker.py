"""Stored mail is processed in a worker process of its own: the daemon's second core.

One interpreter runs one thread of Python at a time.  Processing a mail (parse, classify,
draft, write, compose the acknowledgement and the digest) is most of the daemon's work, and
while it ran, the IMAP reader, the SMTP sender and the web pages waited for the interpreter.
So, like Mailman's runners (a process per kind of work), ``warrantyd run`` starts one
processing worker that owns the :class:`~warrantyd.daemon.process.Processor`, and keeps the
conversations — IMAP, SMTP, HTTP, the scheduler — in the main process.

The two talk over a socket pair, one small message at a time:

* main → worker: the config, the log level and the daemon's name (once, first), then
  ``process`` (do every due row, then answer) or ``stop``;
* worker → main: ``working`` with each mail's id before it is processed, ``outbound`` (mail
  was queued: wake the sender), ``log`` with each log record (the daemon's logging
  writes it, wherever and however the daemon's own records go), then ``done`` with how
  many rows were handled, or ``failed`` with why the pass failed.

The database is the only state they share, as with several daemons: a row is done exactly
once however they interleave (the write phase re-reads the row under the write lock).  The
worker ignores SIGTERM and SIGINT: the main process decides when to stop and tells it,
after the mail in hand is finished.  If the main process dies, the worker's end of the pair
closes and it exits after the mail in hand, so a killed daemon leaves no orphan behind.  A
worker that dies is reported and started again at the next request; the rows it had not
finished are still ``new`` and are done then.  The mail it died on counts as one failed
attempt, like a mail whose processing raised: a mail that kills the worker every time
(a crash in a C library, memory exhausted) is quarantined after ``max_attempts``, and the
daemon goes on with the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from logging.handlers import QueueHandler
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # this module is light: ``warrantyd run`` imports it first of all
    from warrantyd.daemon.config import Config
    from warrantyd.storage.db import Database

log = logging.getLogger("warrantyd.worker")

PROCESS = "process"
STOP = "stop"
OUTBOUND = "outbound"
WORKING = "working"
DONE = "done"
FAILED = "failed"
LOG = "log"

STOP_SECONDS = 60.0
"""How long the main process waits for the worker to exit after ``stop`` before killing it
(it finishes the mail in hand first: an LLM call may take a while)."""


class WorkerLost(RuntimeError):
    """The processing worker exited while it was asked to process."""


class ProcessingWorker:
    """The main process's side: starts the worker, asks it to process, relays its wake-ups.

    :meth:`process_pending` has the signature of ``Processor.process_pending``, so the
    mailbox readers and the PostgreSQL poller call it as they would call the processor.
    """

    def __init__(self, config: Config, db: Database, *,
                 on_outbound: Callable[[], None], spawned: SpawnedWorker | None = None) -> None:
        self.config = config
        self.db = db
        self.on_outbound = on_outbound
        self._spawned = spawned
        """A worker process started before the config was read (see :func:`spawn_worker`),
        used by the first :meth:`start`."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._answer: asyncio.Future[int] | None = None
        self._working: int | None = None
        """The mail the worker said it is processing."""
        self._after_loss: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()
        self._starts = 0
        self._last_exit: str | None = None
        self._nudges: set[asyncio.Future[None]] = set()

    @property
    def pid(self) -> int | None:
        """The worker's PID while it runs."""
        return self._proc.pid if self._proc is not None and self._conn is not None else None

    @property
    def status(self) -> dict[str, Any]:
        """For ``/healthz`` and ``/metrics``: the worker's PID while it runs, how often it
        was started (more than once: it died), and why it last exited unasked."""
        return {"pid": self.pid, "starts": self._starts, "last_exit": self._last_exit}

    def start(self) -> None:
        """Start the worker, or hand its config to the one started earlier (it loads its
        code and drafter while the main process goes on connecting to the mailbox)."""
        from warrantyd.daemon.leader import worker_name

        spawned, self._spawned = self._spawned or spawn_worker(), None
        self._proc, self._conn = spawned.proc, spawned.conn
        asyncio.get_running_loop().add_reader(self._conn.fileno(), self._readable)
        self._starts += 1
        log.info("processing worker started (pid %d)", self._proc.pid)
        levels = (logging.getLogger().getEffectiveLevel(),
                  logging.getLogger("warrantyd").getEffectiveLevel())
        try:
            self._conn.send((self.config, levels, worker_name()))
        except OSError:
            self._lost()  # it died before its config came (its traceback is on stderr)

    def nudge(self) -> None:
        """Start a pass now unless one runs: mail stored a moment ago is processed while the
        reader fetches the rest of a backlog.  The reader's own :meth:`process_pending`
        afterwards waits for this pass and catches what it missed."""
        if self._lock.locked():
            return
        task = asyncio.ensure_future(self._nudged_pass())
        self._nudges.add(task)
        task.add_done_callback(self._nudges.discard)

    async def _nudged_pass(self) -> None:
        try:
            await self.process_pending()
        except Exception as exc:  # the reader's own request follows, and reports
            log.warning("early processing pass failed: %s", exc)

    async def process_pending(self) -> int:
        """Have the worker process every due row; return how many it handled."""
        async with self._lock:
            if self._after_loss is not None:
                await self._after_loss
            if self._conn is None:
                if self._starts:
                    log.warning("starting the processing worker again")
                self.start()
            if self._conn is None:  # it died before it could take its config
                raise WorkerLost(self._last_exit or "the processing worker did not start")
            self._answer = asyncio.get_running_loop().create_future()
            try:
                self._conn.send(PROCESS)
            except OSError:
                self._lost()
            try:
                return await self._answer
            finally:
                self._answer = None

    def _readable(self) -> None:
        """Every message the worker has sent so far (the loop calls this when it wrote)."""
        conn = self._conn
        while conn is not None:
            try:
                if not conn.poll():
                    return
                message = conn.recv()
            except (EOFError, OSError):
                self._lost()
                return
            if message == OUTBOUND:
                self.on_outbound()
                continue
            kind, value = message
            if kind == LOG:
                logging.getLogger(value.name).handle(value)
                continue
            if kind == WORKING:
                self._working = value
                continue
            self._working = None
            if self._answer is not None and not self._answer.done():
                if kind == DONE:
                    self._answer.set_result(value)
                else:
                    self._answer.set_exception(RuntimeError(f"the processing pass failed: "
                                                            f"{value}"))

    def _lost(self) -> None:
        """The worker's end closed: it exited (or was killed)."""
        if self._conn is None:
            return
        asyncio.get_running_loop().remove_reader(self._conn.fileno())
        self._conn.close()
        self._conn = None
        code = self._proc.poll() if self._proc is not None else None
        pid = self._proc.pid if self._proc is not None else None
        how = f"with code {code}" if code is not None else "unexpectedly"
        working, self._working = self._working, None
        problem = (f"the processing worker (pid {pid}) exited {how}; the mail it had not "
                   f"finished stays stored and is processed by a new worker")
        if working is not None:
            problem += (f" (inbound {working}, which it was processing, counts as one failed "
                        f"attempt)")
        log.error("%s", problem)
        self._last_exit = problem
        self._after_loss = asyncio.ensure_future(self._count_failed(working, how, problem))

    async def _count_failed(self, inbound_id: int | None, how: str, problem: str) -> None:
        """Count the attempt against the mail the worker died on, then fail the request."""
        try:
            if inbound_id is not None:
                from warrantyd.daemon.process import RETRY_SECONDS, record_failure
                from warrantyd.storage.models import utcnow

                await asyncio.to_thread(
                    record_failure, self.db, self.config, inbound_id,
                    f"WorkerLost: the processing worker exited {how} while processing this "
                    f"mail", now=utcnow(), retry_seconds=RETRY_SECONDS)
        except Exception:
            log.exception("could not count the failed attempt against inbound %s",
                          inbound_id)
        finally:
            self._after_loss = None
            if self._answer is not None and not self._answer.done():
                self._answer.set_exception(WorkerLost(problem))

    async def stop(self) -> None:
        """Ask the worker to exit and wait for it (the mail in hand is finished first)."""
        proc, conn = self._proc, self._conn
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(WorkerLost("the daemon is stopping"))
        if conn is not None:
            asyncio.get_running_loop().remove_reader(conn.fileno())
            with contextlib.suppress(OSError):
                conn.send(STOP)
            conn.close()
            self._conn = None
        if proc is None:
            return
        try:
            await asyncio.to_thread(proc.wait, STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.error("the processing worker (pid %d) did not stop within %g s; killed",
                      proc.pid, STOP_SECONDS)
            proc.kill()
            await asyncio.to_thread(proc.wait)


@dataclass
class SpawnedWorker:
    """A worker process and the main process's end of its socket pair."""

    proc: subprocess.Popen[bytes]
    conn: Connection

    def close(self) -> None:
        """The daemon will not start after all (bad config): the worker reads the end of
        the pair and exits."""
        self.conn.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(STOP_SECONDS)


def spawn_worker() -> SpawnedWorker:
    """Start a worker process; it imports the processing code at once and then waits for
    its config.  ``warrantyd run`` calls this before it reads its own config, so the two
    processes load their code side by side."""
    ours, theirs = socket.socketpair()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "warrantyd.daemon.worker", str(theirs.fileno())],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return SpawnedWorker(proc, Connection(ours.detach()))


# --- the worker process ------------------------------------------------------------------

class _PipeSender:
    """The worker's one way of writing to the main process (log records come from any
    thread a library may start)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    def __call__(self, message: object) -> None:
        with self._lock:
            self.conn.send(message)

    def put_nowait(self, record: logging.LogRecord) -> None:
        """The queue of a :class:`QueueHandler`: records go to the main process's logging."""
        with contextlib.suppress(OSError):  # the main process is gone: nobody to tell
            self((LOG, record))


def serve(conn: Connection) -> None:
    """The worker's life: receive the config, then process when asked, until told to stop
    or until the main process is gone."""
    # Imported before the config arrives: the main process is reading it meanwhile.
    import warrantyd.daemon.process  # noqa: F401

    try:
        config, (root_level, level), daemon = conn.recv()
    except (EOFError, OSError):
        return  # the daemon did not start (its config was bad): nothing to do
    send = _PipeSender(conn)
    root = logging.getLogger()
    root.handlers[:] = [QueueHandler(send)]  # type: ignore[arg-type]
    root.setLevel(root_level)
    logging.getLogger("warrantyd").setLevel(level)
    # The main process stops the worker itself, after the mail in hand (a terminal's Ctrl-C
    # or a service manager's SIGTERM reaches the whole process group).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_serve(config, conn, send, daemon))
    finally:
        loop.close()


async def _serve(config: Config, conn: Connection, send: Callable[[object], None],
                 daemon: str) -> None:
    from warrantyd.daemon.drafting import make_drafter
    from warrantyd.daemon.process import Processor
    from warrantyd.storage.db import Database

    db = Database(config.database.url)
    processor = Processor(config, db, make_drafter(config, in_line=True),
                          on_outbound=lambda: send(OUTBOUND), in_thread=False)
    # While the daemon upgrades the schema and connects: the first mail would wait for this.
    processor.warm_up()
    processor.worker = daemon  # rows name the daemon that did them, as before the worker
    processor.on_mail = lambda inbound_id: send((WORKING, inbound_id))
    # The main process sends nothing while a pass runs: anything to read now is its end
    # closing (it died), so the pass ends after the mail in hand.
    processor.keep_going = lambda: not conn.poll()
    try:
        while True:
            request = _next_request(conn)  # nothing else runs here meanwhile
            if request != PROCESS:
                return
            answer: tuple[str, Any]
            try:
                answer = (DONE, await processor.process_pending())
            except Exception as exc:
                log.exception("processing stored mail failed; the rows stay new")
                answer = (FAILED, f"{type(exc).__name__}: {exc}")
            send(answer)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the daemon is gone (and with it the log this would go to): exit
    finally:
        db.dispose()


def _next_request(conn: Connection) -> str:
    """The next request, or ``stop`` when the main process has closed its end."""
    try:
        request: str = conn.recv()
    except (EOFError, OSError):
        return STOP
    return request


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        sys.exit("usage: python -m warrantyd.daemon.worker FD  (started by `warrantyd run`)")
    serve(Connection(int(args[0])))


if __name__ == "__main__":
    main()
