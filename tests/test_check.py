"""``warrantyd check`` reaches every server and says what is wrong when one is not right."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from daemon_harness import write_config
from dovecot import PASSWORD, Dovecot
from fake_anthropic import FakeAnthropic
from smtp_sink import SmtpSink


def _check(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "warrantyd.daemon.cli", "check", "--config",
                           str(config)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_check_reaches_imap_smtp_database_and_llm(tmp_path: Path) -> None:
    with Dovecot() as dovecot, SmtpSink() as sink, FakeAnthropic() as fake:
        dovecot.add_user("warranty@acme-homes.example")
        config = write_config(tmp_path, dovecot=dovecot, smtp_port=sink.port,
                              db_url=f"sqlite:///{tmp_path / 'db.sqlite3'}")
        text = config.read_text().replace(
            'engine = "offline"', f'engine = "anthropic"\nbase_url = "{fake.base_url}"\n'
                                  'api_key_env = "TEST_ANTHROPIC_KEY"')
        config.write_text(text)
        good = _check(config, TEST_IMAP_PASSWORD=PASSWORD,
                      TEST_ANTHROPIC_KEY=fake.api_key or "x")
        assert good.returncode == 0, good.stdout + good.stderr
        for name in ("config", "database", "imap", "smtp", "llm"):
            assert f"ok   {name}:" in good.stdout
        assert sink.messages == [], "check sends nothing"

        bad = _check(config, TEST_IMAP_PASSWORD="wrong", TEST_ANTHROPIC_KEY="")
        assert bad.returncode == 1
        assert "FAIL imap:" in bad.stdout and "TEST_IMAP_PASSWORD" in bad.stdout
        assert "FAIL llm:" in bad.stdout and "TEST_ANTHROPIC_KEY is empty" in bad.stdout
        assert "Traceback" not in bad.stderr
