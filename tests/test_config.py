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


@pytest.mark.parametrize("table, key", [
    ("smtp", "connections"), ("smtp", "rate_per_recipient_per_hour"),
    ("mailbox", "max_attempts"), ("staff", "token_days"), ("drafter", "daily_token_budget"),
    ("drafter", "per_request_token_budget")])
@pytest.mark.parametrize("value", [0, -2, 1.5, True, "3"])
def test_counts_must_be_whole_numbers_of_at_least_one(table: str, key: str,
                                                      value: object) -> None:
    """A count of 0.5 used to become 0 (``token_days = 0.5``: every reply token expired)."""
    data = tomllib.loads(EXAMPLE.read_text())
    data.setdefault(table, {})[key] = value
    assert any(f"[{table}].{key}: must be" in p for p in _problems(data)), value


def test_smtp_connections_default_and_set() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    assert parse_config(data).smtp.connections == 2
    data["smtp"]["connections"] = 4
    assert parse_config(data).smtp.connections == 4


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


# --- [[divisions]] --------------------------------------------------------------------------

NORTH = {"name": "north", "from_name": "Acme Homes North Warranty",
         "mailbox": {"address": "north@acme-homes.example",
                     "imap_user": "north@acme-homes.example"},
         "staff": {"addresses": ["Nora@acme-homes.example", "pat@acme-homes.example"]},
         "vendors": [{"name": "North Plumbing", "email": "np@north-plumbing.example",
                      "trades": ["plumbing"]},
                     # The same company as the main division's: a vendor of both is in both.
                     {"name": "Front Range Plumbing",
                      "email": "dispatch@frontrange-plumbing.example.net",
                      "trades": ["plumbing"]}],
         "homes": [{"address": "9 Pine Ct, Fort Collins CO", "community": "Pines",
                    "homeowners": [{"name": "Ola", "email": "ola@example.com"}]}]}


def _with_divisions(*divisions: dict) -> dict:
    data = tomllib.loads(EXAMPLE.read_text())
    data["divisions"] = [dict(d) for d in divisions]
    return data


def test_a_config_without_divisions_is_the_main_division_alone() -> None:
    config = load_config(EXAMPLE)
    (main,) = config.divisions
    assert main.name == "main" and main.mailbox == config.mailbox
    assert main.staff == config.staff and main.vendors == config.vendors
    assert main.from_name == config.smtp.from_name
    assert config.our_addresses == ("warranty@acme-homes.example",)
    assert config.division("anything") is not None and config.division("x").name == "main"


def test_a_division_has_its_own_mailbox_staff_vendors_and_homes() -> None:
    config = parse_config(_with_divisions(NORTH))
    assert [d.name for d in config.divisions] == ["main", "north"]
    north = config.division("north")
    assert north.mailbox.address == "north@acme-homes.example"
    assert north.from_name == "Acme Homes North Warranty"
    assert north.staff.addresses == ("nora@acme-homes.example", "pat@acme-homes.example")
    assert [v.name for v in north.vendors] == ["North Plumbing", "Front Range Plumbing"]
    assert north.homes[0].homeowners[0].email == "ola@example.com"
    # The top-level tables stay the main division's, unchanged.
    assert config.mailbox.address == "warranty@acme-homes.example"
    assert config.staff.addresses == ("pat@acme-homes.example", "sam@acme-homes.example")
    assert "North Plumbing" not in [v.name for v in config.vendors]
    # Who is staff where: pat manages both, nora only north, sam only main.
    assert config.staff_divisions("PAT@acme-homes.example") == ("main", "north")
    assert config.staff_divisions("nora@acme-homes.example") == ("north",)
    assert config.is_staff("nora@acme-homes.example")
    assert not config.is_staff("nora@acme-homes.example", "main")
    assert not config.is_staff("sam@acme-homes.example", "north")
    assert config.all_staff_addresses == ("pat@acme-homes.example", "sam@acme-homes.example",
                                          "nora@acme-homes.example")
    assert config.our_addresses == ("warranty@acme-homes.example", "north@acme-homes.example")
    assert config.division_of_mailbox("North+tok3n@acme-homes.example") is north
    assert config.division_of_mailbox("someone@acme-homes.example") is None


def test_unset_mailbox_and_staff_keys_inherit_the_top_level_ones() -> None:
    data = _with_divisions(NORTH)
    data["mailbox"].update({"imap_port": 1993, "poll_seconds": 30, "folder": "Warranty"})
    data["staff"].update({"digest": "0 8 * * mon-fri", "token_days": 7})
    data["divisions"][0]["staff"] = {"addresses": ["nora@acme-homes.example"],
                                     "token_days": 3}
    data["divisions"][0]["mailbox"] = {**NORTH["mailbox"], "folder": "North"}
    del data["divisions"][0]["from_name"]
    north = parse_config(data).division("north")
    assert north.mailbox.imap_host == "imap.acme-homes.example"
    assert north.mailbox.imap_port == 1993 and north.mailbox.poll_seconds == 30
    assert north.mailbox.imap_password_env == "WARRANTYD_IMAP_PASSWORD"
    assert north.mailbox.folder == "North"  # set: its own
    assert north.mailbox.processed_folder == "Processed"
    assert north.staff.digest == "0 8 * * mon-fri" and north.staff.token_days == 3
    assert north.staff.addresses == ("nora@acme-homes.example",)  # never inherited
    assert north.from_name == "Acme Homes Warranty"  # [smtp] from_name


def test_division_mistakes_are_all_reported_at_once_naming_the_division() -> None:
    data = _with_divisions(
        # reuses the main mailbox (and so its IMAP folder); no staff addresses
        {"name": "north", "mailbox": {"address": "warranty@acme-homes.example",
                                      "imap_user": "warranty@acme-homes.example"},
         "staff": {}},
        # the same name again; no mailbox address
        {"name": "north", "mailbox": {"imap_user": "n2@acme-homes.example"},
         "staff": {"addresses": ["x@acme-homes.example"]}},
        # a bad name; no mailbox table; a vendor listed twice; an unknown key
        {"name": "so uth", "staff": {"addresses": ["s@acme-homes.example"]},
         "vendors": [{"name": "A", "email": "a@b.example"},
                     {"name": "A again", "email": "A@b.example"}],
         "colour": "blue"},
        # no name, no staff table
        {"mailbox": {"address": "west@acme-homes.example",
                     "imap_user": "west@acme-homes.example"}},
    )
    problems = _problems(data)
    joined = "\n".join(problems)
    assert ("[[divisions]] 'north' mailbox.address: warranty@acme-homes.example is another "
            "division's mailbox") in joined
    assert "'north' mailbox: reads the same IMAP folder as division 'main'" in joined
    assert "[[divisions]] 'north' staff.addresses: is required" in joined
    assert "[[divisions]] #2.name: 'north' is used twice" in joined
    assert "[[divisions]] 'north' mailbox.address: is required" in joined
    assert "[[divisions]] #3.name: 'so uth' may hold only letters, digits, - and _" in joined
    assert "[[divisions]] #3.mailbox: a [divisions.mailbox] table is required" in joined
    assert "'so uth' [[vendors]] #2.email: a@b.example is listed twice" in joined
    assert "[[divisions]] #3.colour: unknown key" in joined
    assert "[[divisions]] #4.name: is required" in joined
    assert "[[divisions]] #4.staff: a [divisions.staff] table is required" in joined


def test_two_divisions_may_not_read_one_imap_folder() -> None:
    south = {**NORTH, "name": "south",
             "mailbox": {"address": "south@acme-homes.example",
                         "imap_user": "north@acme-homes.example"}}
    problems = _problems(_with_divisions(NORTH, south))
    assert any("[[divisions]] 'south' mailbox: reads the same IMAP folder as division 'north'"
               in p and "give it its own imap_user or folder" in p for p in problems)
    # Another folder of the same login is fine.
    south["mailbox"] = {**south["mailbox"], "folder": "South"}
    assert parse_config(_with_divisions(NORTH, south)).division("south").mailbox.folder == "South"


def test_main_is_a_reserved_division_name() -> None:
    problems = _problems(_with_divisions({**NORTH, "name": "Main"}))
    assert any("'main' is used twice" in p for p in problems)


def test_partial_config_with_divisions_is_enough_for_offline_commands() -> None:
    data = {"company": {"name": "Acme", "timezone": "America/Denver"},
            "mailbox": {"address": "warranty@acme-homes.example"},
            "staff": {"addresses": ["pat@acme-homes.example"]},
            "database": {"url": "sqlite:///x.sqlite3"},
            "divisions": [{"name": "north", "mailbox": {"address": "north@acme-homes.example"},
                           "staff": {"addresses": ["nora@acme-homes.example"]}}]}
    config = parse_config(data, partial=True)
    assert config.division("north").mailbox.address == "north@acme-homes.example"
    assert config.staff_divisions("nora@acme-homes.example") == ("north",)
    problems = _problems(data)
    assert any("[[divisions]] 'north' mailbox.imap_user: is required" in p for p in problems)


def test_a_missing_imap_user_is_one_problem_not_also_a_folder_clash() -> None:
    data = _with_divisions(
        {**NORTH, "mailbox": {"address": "north@acme-homes.example"}},
        {**NORTH, "name": "south", "mailbox": {"address": "south@acme-homes.example"}})
    problems = _problems(data)
    assert not any("reads the same IMAP folder" in p for p in problems), problems


def test_example_config_documents_divisions() -> None:
    """The commented-out [[divisions]] example is valid once uncommented."""
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("# [[divisions]]")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line[2:])
    data = tomllib.loads(EXAMPLE.read_text())
    data.update(tomllib.loads("\n".join(block)))
    north = parse_config(data).division("north")
    assert north.mailbox.address == "north@acme-homes.example"
    assert north.mailbox.imap_host == "imap.acme-homes.example"  # inherited
    assert north.staff.addresses and north.vendors and north.homes


def test_a_division_mailbox_may_be_a_plus_address_of_another() -> None:
    """One account, a folder per division (``warranty+north@`` beside ``warranty@``): mail
    and reply tokens of each are told apart by the longest matching mailbox."""
    north = {**NORTH, "mailbox": {"address": "warranty+north@acme-homes.example",
                                  "imap_user": "warranty@acme-homes.example",
                                  "folder": "North"}}
    config = parse_config(_with_divisions(north))
    of = config.division_of_mailbox
    assert of("warranty+north@acme-homes.example").name == "north"  # type: ignore[union-attr]
    assert of("Warranty+North+tok123@acme-homes.example").name == "north"  # type: ignore[union-attr]
    assert of("warranty+tok123@acme-homes.example").name == "main"  # type: ignore[union-attr]
    assert of("warranty@acme-homes.example").name == "main"  # type: ignore[union-attr]
    assert of("warranty@elsewhere.example") is None
    assert config.division_of_inbound("warranty+north@acme-homes.example/North").name == "north"
    assert config.division_of_inbound("").name == "main"


def test_two_divisions_reading_one_folder_are_refused_whatever_the_case() -> None:
    north = {**NORTH, "mailbox": {"address": "north@acme-homes.example",
                                  "imap_user": "WARRANTY@acme-homes.example"}}
    data = _with_divisions(north)
    data["mailbox"]["imap_user"] = "warranty@acme-homes.example"
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert any("same IMAP folder" in p for p in caught.value.problems)
