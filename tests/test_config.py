"""Configuration: the example is valid, every key DESIGN.md names exists, errors are readable."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from warrantyd.daemon.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.toml"


def test_example_config_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert config.mailbox.address == "warranty@acme-homes.example"
    assert config.staff.addresses == ("pat@acme-homes.example", "sam@acme-homes.example")
    assert config.vendors[0].trades == ("plumbing",)
    assert config.homes[0].closing_date is not None


def test_example_has_every_key_of_the_design(shared_dir: Path) -> None:
    """Every key DESIGN.md lists for config.example.toml is present (set or commented)."""
    design = (shared_dir / "DESIGN.md").read_text()
    block = design.split("```toml", 1)[1].split("```", 1)[0]
    text = EXAMPLE.read_text()
    for line in block.splitlines():
        match = re.match(r"\[\[?(\w+)\]?\]\s+(.*)", line.strip())
        if not match:
            continue
        table, rest = match.groups()
        assert re.search(rf"^\[\[?{table}\]?\]", text, re.M), f"table {table} missing"
        keys = re.sub(r"\([^)]*\)", "", rest.split("#")[0]).split(",")
        for key in (k.strip() for k in keys if k.strip()):
            assert re.search(rf"^#?\s*{key}\s*=", text, re.M), f"[{table}] {key} missing"


def _problems(data: dict, **kw: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, **kw)  # type: ignore[arg-type]
    return info.value.problems


def test_every_problem_is_reported_at_once() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    data["mailbox"]["imap_port"] = 99999
    data["mailbox"]["imap_security"] = "ssl"
    data["staff"]["addresses"] = ["not-an-address"]
    data["company"]["timezone"] = "Mars/Olympus"
    data["smtp"]["pasword_env"] = "X"
    data["drafter"]["api_key_env"] = "sk-ant-secret value"
    problems = _problems(data)
    joined = "\n".join(problems)
    assert "imap_port: must be a TCP port" in joined
    assert "imap_security: must be one of 'tls', 'starttls', 'none', not 'ssl'" in joined
    assert "'not-an-address' is not an email address" in joined
    assert "'Mars/Olympus' is not an IANA time zone" in joined
    assert "pasword_env: unknown key" in joined
    assert "NAME of an environment variable" in joined
    assert len(problems) == 6


def test_partial_config_is_enough_for_offline_commands() -> None:
    data = {"company": {"name": "Acme", "timezone": "America/Denver"},
            "mailbox": {"address": "warranty@acme-homes.example"},
            "staff": {"addresses": ["pat@acme-homes.example"]},
            "database": {"url": "sqlite:///x.sqlite3"}}
    config = parse_config(data, partial=True)
    assert config.partial
    problems = _problems(data)
    assert any("imap_host: is required" in p for p in problems)
    assert any("[smtp] table is required" in p for p in problems)


def test_bad_cron_digest_is_explained() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    data["staff"]["digest"] = "every morning"
    assert any("cron expression" in p for p in _problems(data))


def test_cli_bad_config_exits_2_with_readable_message(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text('[company]\nname = "Acme"\n[mailbox]\naddress = "nope"\n')
    proc = subprocess.run([sys.executable, "-m", "warrantyd.daemon.cli", "check", "--config",
                           str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "[mailbox].address: 'nope' is not an email address" in proc.stderr
    missing = subprocess.run([sys.executable, "-m", "warrantyd.daemon.cli", "check", "--config",
                              str(tmp_path / "none.toml")], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    garbage = tmp_path / "garbage.toml"
    garbage.write_text("[company\n")
    proc = subprocess.run([sys.executable, "-m", "warrantyd.daemon.cli", "run", "--config",
                           str(garbage)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not valid TOML" in proc.stderr
