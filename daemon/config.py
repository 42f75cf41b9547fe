"""Read and validate ``config.toml``.

Every problem in the file is collected and reported at once, each as one line naming the
file, the key, what is wrong and what would be right, so an operator fixes the whole file in
one go instead of meeting the errors one traceback at a time.  Secrets never live in the file:
only the *names* of environment variables that hold them.

The offline commands (``explain``, ``draft``, ``read-vendor-reply``) load the file with
``partial=True``: then only ``[company]``, ``[mailbox] address``, ``[staff] addresses`` and
``[database]`` are required.
"""

from __future__ import annotations

import os
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from warrantyd.daemon.drafters.base import TRADES
from warrantyd.storage import MAIN_DIVISION

if TYPE_CHECKING:
    from warrantyd.daemon.health import HealthThresholds
    from warrantyd.storage.queries import FollowupThresholds

SECURITY_CHOICES = ("tls", "starttls", "none")
AUTH_CHOICES = ("password", "xoauth2")


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class CompanyConfig:
    name: str
    timezone: str
    trades: tuple[str, ...] = TRADES


@dataclass(frozen=True)
class MailboxConfig:
    address: str
    imap_host: str = ""
    imap_port: int = 993
    imap_security: str = "tls"
    imap_user: str = ""
    imap_password_env: str = ""
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    failed_folder: str = "Failed"
    idle: bool = True
    poll_seconds: float = 60.0
    max_attempts: int = 3
    # XOAUTH2 login (Gmail, Microsoft 365): the access token comes from a command or a file.
    auth: str = "password"
    oauth_token_command: str = ""
    oauth_token_file: str = ""

    @property
    def local_part(self) -> str:
        return self.address.split("@", 1)[0]

    @property
    def domain(self) -> str:
        return self.address.split("@", 1)[1]

    def password(self) -> str:
        return os.environ.get(self.imap_password_env, "") if self.imap_password_env else ""


@dataclass(frozen=True)
class SmtpConfig:
    host: str = ""
    port: int = 465
    security: str = "tls"
    user: str = ""
    password_env: str = ""
    from_name: str = ""
    rate_per_recipient_per_hour: int = 20
    timeout_seconds: float = 30.0
    connections: int = 2
    """How many SMTP connections one daemon sends over at once."""
    # XOAUTH2 login, as for [mailbox].
    auth: str = "password"
    oauth_token_command: str = ""
    oauth_token_file: str = ""

    def password(self) -> str:
        return os.environ.get(self.password_env, "") if self.password_env else ""


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite:///warrantyd.sqlite3"


@dataclass(frozen=True)
class StorageConfig:
    data_dir: Path = Path("data")
    blobs: str = "files"
    """Where attachment bytes live: "files" under data_dir, or "database" (shared by every
    daemon on one PostgreSQL database, for daemons on machines that share no disk)."""


@dataclass(frozen=True)
class DrafterConfig:
    engine: str = "offline"
    model: str = ""
    api_key_env: str = "ANTHROPIC_API_KEY"
    base_url: str | None = None
    timeout_seconds: float = 60.0
    max_retries: int = 2
    daily_token_budget: int = 2_000_000
    per_request_token_budget: int = 60_000

    def api_key(self) -> str:
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""


@dataclass(frozen=True)
class StaffConfig:
    addresses: tuple[str, ...]
    digest: str = "immediate"
    require_authenticated_sender: bool = False
    trusted_authserv_id: str = ""
    token_days: int = 14


@dataclass(frozen=True)
class WebConfig:
    listen: str = "127.0.0.1:8025"
    base_url: str = "http://127.0.0.1:8025"
    secret_env: str = "WARRANTYD_SECRET"

    def secret(self) -> str:
        return os.environ.get(self.secret_env, "") if self.secret_env else ""


@dataclass(frozen=True)
class FollowupConfig:
    """``[followup]``: when something counts as stuck, and when staff and vendors hear of it.

    The hour and minute thresholds feed the follow-up rules (``wo list --needs-followup``,
    the follow-up digest); the cron expressions (company time zone, "" turns a job off)
    drive the scheduled jobs.
    """

    draft_hours: float = 24.0
    vendor_reply_hours: float = 48.0
    proposed_times_hours: float = 24.0
    overdue_hours: float = 0.0
    emergency_ack_minutes: float = 30.0
    digest_cron: str = "0 7 * * *"
    nudge_after_hours: float = 24.0
    nudge_cron: str = "0 9 * * mon-fri"
    nudge_max: int = 3
    escalation_cron: str = "*/5 * * * *"
    """How often to look for emergencies still unhandled after ``emergency_ack_minutes``
    (each is escalated to its division's staff once)."""
    catch_up_hours: float = 6.0
    """A scheduled run missed while no daemon was up still happens at start within this."""

    THRESHOLD_KEYS = ("draft_hours", "vendor_reply_hours", "proposed_times_hours",
                      "overdue_hours", "emergency_ack_minutes")

    def threshold_table(self) -> dict[str, float]:
        """The rule thresholds as ``FollowupThresholds.from_mapping`` takes them."""
        return {key: float(getattr(self, key)) for key in self.THRESHOLD_KEYS}

    @property
    def thresholds(self) -> FollowupThresholds:
        """The :class:`~warrantyd.storage.queries.FollowupThresholds` of these settings."""
        from warrantyd.storage.queries import FollowupThresholds

        return FollowupThresholds(**self.threshold_table())


@dataclass(frozen=True)
class HealthConfig:
    """``[health]``: how long trouble may last before ``/healthz`` answers 503 (minutes)."""

    intake_disconnected_minutes: float = 10.0
    """No connection to a mailbox (and no pass) for this long; short outages reconnect."""
    intake_silent_minutes: float = 30.0
    """Connected, but no pass over a mailbox for this long: the connection hangs."""
    outbox_stuck_minutes: float = 30.0
    """The oldest mail still queued was written this long ago: mail is not going out."""

    KEYS = ("intake_disconnected_minutes", "intake_silent_minutes", "outbox_stuck_minutes")

    @property
    def thresholds(self) -> HealthThresholds:
        """The :class:`~warrantyd.daemon.health.HealthThresholds` of these settings."""
        from warrantyd.daemon.health import HealthThresholds

        return HealthThresholds(
            intake_disconnected_seconds=self.intake_disconnected_minutes * 60,
            intake_silent_seconds=self.intake_silent_minutes * 60,
            outbox_stuck_seconds=self.outbox_stuck_minutes * 60)


@dataclass(frozen=True)
class VendorConfig:
    name: str
    email: str
    trades: tuple[str, ...] = ()
    communities: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class HomeownerConfig:
    name: str
    email: str


@dataclass(frozen=True)
class HomeConfig:
    address: str
    community: str = ""
    closing_date: date | None = None
    homeowners: tuple[HomeownerConfig, ...] = ()


@dataclass(frozen=True)
class DivisionConfig:
    """One mailbox with its own staff, vendors and homes (a region, a builder division).

    Divisions share the company, the database, SMTP, the drafter and the web server; what
    arrives in one division's mailbox is handled by its staff, sent to its vendors and
    answered from its address, and its staff cannot see or command another division's
    work unless they are listed in both.
    """

    name: str
    mailbox: MailboxConfig
    staff: StaffConfig
    vendors: tuple[VendorConfig, ...] = ()
    homes: tuple[HomeConfig, ...] = ()
    from_name: str = ""

    def is_staff(self, address: str | None) -> bool:
        return bool(address) and address.lower() in self.staff.addresses


@dataclass(frozen=True)
class Config:
    path: Path | None
    company: CompanyConfig
    mailbox: MailboxConfig
    smtp: SmtpConfig
    database: DatabaseConfig
    storage: StorageConfig
    drafter: DrafterConfig
    staff: StaffConfig
    web: WebConfig
    vendors: tuple[VendorConfig, ...] = ()
    homes: tuple[HomeConfig, ...] = ()
    partial: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    """``extra["followup"]``: the ``[followup]`` rule thresholds, validated (see ``followup``)."""
    followup: FollowupConfig = field(default_factory=FollowupConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    other_divisions: tuple[DivisionConfig, ...] = ()
    """The ``[[divisions]]`` tables; the top-level tables are :data:`MAIN_DIVISION`."""

    @property
    def divisions(self) -> tuple[DivisionConfig, ...]:
        """Every division, the main one (the top-level tables) first."""
        main = DivisionConfig(name=MAIN_DIVISION, mailbox=self.mailbox, staff=self.staff,
                              vendors=self.vendors, homes=self.homes,
                              from_name=self.smtp.from_name)
        return (main, *self.other_divisions)

    @property
    def division_names(self) -> tuple[str, ...]:
        """The configured divisions' names, the main one first."""
        return tuple(d.name for d in self.divisions)

    def division(self, name: str | None) -> DivisionConfig:
        """The division called ``name``; rows of a division no longer configured (renamed or
        removed from the file) fall back to the main one, whose staff then see them."""
        for division in self.divisions:
            if division.name == name:
                return division
        return self.divisions[0]

    def division_of_mailbox(self, address: str | None) -> DivisionConfig | None:
        """The division whose mailbox is ``address``, or None.

        A plus-address of a mailbox (a reply token) counts as that mailbox; when a
        division's mailbox is itself a plus-address of another's (``warranty+north@`` beside
        ``warranty@``, one account with a folder per division), the longest match wins.
        """
        if not address:
            return None
        address = address.lower()
        local, _, domain = address.partition("@")

        def matches(division: DivisionConfig) -> bool:
            own_local, _, own_domain = division.mailbox.address.partition("@")
            return own_domain == domain and (local == own_local
                                             or local.startswith(f"{own_local}+"))

        found = [d for d in self.divisions if matches(d)]
        return max(found, key=lambda d: len(d.mailbox.address), default=None)

    def division_of_inbound(self, mailbox: str | None) -> DivisionConfig:
        """The division a stored inbound mail came to, from its ``mailbox`` column
        (``address/folder``; a renamed folder is still known by its address).  A mail given
        as a file (``""``) or from a mailbox no longer configured is the main division's."""
        address = (mailbox or "").partition("/")[0]
        return self.division_of_mailbox(address) or self.divisions[0]

    def staff_divisions(self, address: str | None) -> tuple[str, ...]:
        """The names of the divisions ``address`` is staff of (several for a manager)."""
        return tuple(d.name for d in self.divisions if d.is_staff(address))

    def is_staff(self, address: str | None, division: str | None = None) -> bool:
        """Staff of ``division``, or of any division when it is None."""
        if division is None:
            return bool(self.staff_divisions(address))
        return self.division(division).is_staff(address)

    @property
    def all_staff_addresses(self) -> tuple[str, ...]:
        """Every staff address of every division, each once."""
        return tuple(dict.fromkeys(a for d in self.divisions for a in d.staff.addresses))

    @property
    def our_addresses(self) -> tuple[str, ...]:
        """Addresses that are us: mail from them is our own (loop protection)."""
        return tuple(d.mailbox.address for d in self.divisions)


def load_config(path: str | Path, *, partial: bool = False) -> Config:
    """Load and validate ``path``; raise :class:`ConfigError` listing every problem."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file; copy config.example.toml and edit it"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    return parse_config(data, path=path, partial=partial)


class _Reader:
    """Typed access to one TOML table that records problems instead of raising."""

    def __init__(self, where: str, table: object, problems: list[str]) -> None:
        self.where = where
        self.problems = problems
        if table is None:
            table = {}
        if not isinstance(table, dict):
            problems.append(f"{where}: must be a table")
            table = {}
        self.table: dict[str, Any] = table
        self.used: set[str] = set()

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.where}.{key}: {message}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any, *,
            required: bool = False, hint: str = "") -> Any:
        self.used.add(key)
        if key not in self.table:
            if required:
                self.problem(key, f"is required{': ' + hint if hint else ''}")
            return default
        value = self.table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            names = " or ".join(_type_name(k) for k in kinds)
            self.problem(key, f"must be {names}, not {value!r}{'; ' + hint if hint else ''}")
            return default
        return value

    def text(self, key: str, default: str = "", *, required: bool = False, hint: str = "") -> str:
        return str(self.get(key, str, default, required=required, hint=hint))

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.text(key, default)
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            self.problem(key, f"must be one of {allowed}, not {value!r}")
            return default
        return value

    def strings(self, key: str, *, required: bool = False, hint: str = "") -> tuple[str, ...]:
        value = self.get(key, list, [], required=required, hint=hint)
        if not all(isinstance(v, str) for v in value):
            self.problem(key, f"must be a list of strings, not {value!r}")
            return ()
        return tuple(value)

    def port(self, key: str, default: int) -> int:
        value = self.get(key, int, default)
        if not 0 < value < 65536:
            self.problem(key, f"must be a TCP port between 1 and 65535, not {value}")
            return default
        return int(value)

    def count(self, key: str, default: int) -> int:
        """A whole number of at least 1."""
        value = self.get(key, int, default)
        if isinstance(value, bool) or value < 1:
            self.problem(key, f"must be a whole number of at least 1, not {value}")
            return default
        return value

    def positive(self, key: str, default: float) -> float:
        value = self.get(key, (int, float), default)
        if value <= 0:
            self.problem(key, f"must be a positive number, not {value}")
            return default
        return value

    def address(self, key: str, *, required: bool = False) -> str:
        value = self.text(key, required=required, hint="an email address like warranty@example.com")
        if value and not _looks_like_address(value):
            self.problem(key, f"{value!r} is not an email address (expected name@domain)")
        return value.lower()

    def env_name(self, key: str, default: str = "") -> str:
        value = self.text(key, default)
        if value and not value.replace("_", "").isalnum():
            self.problem(key, f"must be the NAME of an environment variable (secrets never go in "
                              f"the file), not {value!r}")
        return value

    def unknown_keys(self) -> None:
        for key in self.table:
            if key not in self.used:
                self.problem(key, "unknown key (check the spelling against config.example.toml)")


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "a list", dict: "a table"}.get(kind, kind.__name__)


def _looks_like_address(value: str) -> bool:
    local, sep, domain = value.partition("@")
    return bool(sep and local and "." in domain and " " not in value and "@" not in domain)


def _oauth_settings(reader: _Reader, base_dir: Path) -> dict[str, str]:
    """``auth`` and the XOAUTH2 token source of [mailbox] or [smtp], checked together."""
    auth = reader.choice("auth", AUTH_CHOICES, "password")
    command = reader.text("oauth_token_command", "")
    file = reader.text("oauth_token_file", "")
    if file and not Path(file).is_absolute():
        file = str((base_dir / file).resolve())
    if auth == "xoauth2" and bool(command) == bool(file):
        reader.problem("auth", "\"xoauth2\" needs exactly one of oauth_token_command (a command "
                               "that prints an access token) and oauth_token_file")
    return {"auth": auth, "oauth_token_command": command, "oauth_token_file": file}


def parse_config(data: dict[str, Any], *, path: Path | None = None,
                 partial: bool = False) -> Config:
    """Validate an already-parsed TOML document (see :func:`load_config`)."""
    problems: list[str] = []
    where = str(path) if path else "config"
    base_dir = path.parent if path else Path.cwd()
    known = {"company", "mailbox", "smtp", "database", "storage", "drafter", "staff", "web",
             "vendors", "homes", "followup", "divisions", "health"}
    for key in data:
        if key not in known:
            problems.append(f"{where}: unknown table [{key}] (known: {', '.join(sorted(known))})")

    company = _Reader(f"{where}: [company]", data.get("company"), problems)
    if "company" not in data:
        problems.append(f"{where}: [company] table is required (name, timezone)")
    company_name = company.text("name", required="company" in data)
    timezone = company.text("timezone", "UTC")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        company.problem("timezone", f"{timezone!r} is not an IANA time zone (e.g. America/Denver)")
        timezone = "UTC"
    trades = company.strings("trades") or TRADES
    company.unknown_keys()

    mb = _Reader(f"{where}: [mailbox]", data.get("mailbox"), problems)
    if "mailbox" not in data:
        problems.append(f"{where}: [mailbox] table is required (at least address)")
    need_mail = not partial
    mailbox = _mailbox_config(mb, base_dir, need_mail=need_mail)

    sm = _Reader(f"{where}: [smtp]", data.get("smtp"), problems)
    if "smtp" not in data and need_mail:
        problems.append(f"{where}: [smtp] table is required (host, port, security)")
    smtp = SmtpConfig(
        host=sm.text("host", required=need_mail and "smtp" in data, hint="the SMTP server"),
        port=sm.port("port", 465),
        security=sm.choice("security", SECURITY_CHOICES, "tls"),
        user=sm.text("user", ""),
        password_env=sm.env_name("password_env", ""),
        from_name=sm.text("from_name", company_name),
        rate_per_recipient_per_hour=sm.count("rate_per_recipient_per_hour", 20),
        timeout_seconds=sm.positive("timeout_seconds", 30.0),
        connections=sm.count("connections", 2),
        **_oauth_settings(sm, base_dir),
    )
    sm.unknown_keys()

    db = _Reader(f"{where}: [database]", data.get("database"), problems)
    if "database" not in data:
        problems.append(f"{where}: [database] table is required (url = \"sqlite:///...\")")
    url = db.text("url", required="database" in data,
                  hint='e.g. "sqlite:///warrantyd.sqlite3" or "postgresql+psycopg://..."')
    if url and not url.startswith(("sqlite", "postgresql")):
        db.problem("url", f"{url!r} is not supported; use sqlite:///PATH or postgresql+psycopg://...")
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
        url = "sqlite:///" + str((base_dir / url[len("sqlite:///"):]).resolve())
    db.unknown_keys()

    st = _Reader(f"{where}: [storage]", data.get("storage"), problems)
    data_dir = Path(st.text("data_dir", "data"))
    if not data_dir.is_absolute():
        data_dir = (base_dir / data_dir).resolve()
    blobs = st.choice("blobs", ("files", "database"), "files")
    st.unknown_keys()

    dr = _Reader(f"{where}: [drafter]", data.get("drafter"), problems)
    drafter = DrafterConfig(
        engine=dr.choice("engine", ("anthropic", "offline"), "offline"),
        model=dr.text("model", ""),
        api_key_env=dr.env_name("api_key_env", "ANTHROPIC_API_KEY"),
        base_url=dr.text("base_url", "") or None,
        timeout_seconds=dr.positive("timeout_seconds", 60.0),
        max_retries=int(dr.get("max_retries", int, 2)),
        daily_token_budget=dr.count("daily_token_budget", 2_000_000),
        per_request_token_budget=dr.count("per_request_token_budget", 60_000),
    )
    dr.unknown_keys()

    sf = _Reader(f"{where}: [staff]", data.get("staff"), problems)
    if "staff" not in data:
        problems.append(f"{where}: [staff] table is required (addresses = [...])")
    staff = _staff_config(sf, timezone, required="staff" in data)

    wb = _Reader(f"{where}: [web]", data.get("web"), problems)
    listen = wb.text("listen", "127.0.0.1:8025")
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        wb.problem("listen", f"must be \"host:port\", not {listen!r}")
    web = WebConfig(listen=listen, base_url=wb.text("base_url", f"http://{listen}").rstrip("/"),
                    secret_env=wb.env_name("secret_env", "WARRANTYD_SECRET"))
    wb.unknown_keys()

    vendors = _vendor_configs(data.get("vendors", []), f"{where}: ", trades, problems)
    homes = _home_configs(data.get("homes", []), f"{where}: ", problems)
    divisions = _division_configs(data.get("divisions", []), where, problems, base_dir,
                                  need_mail=need_mail, timezone=timezone, trades=trades,
                                  main_mailbox=mailbox, main_staff=staff,
                                  from_name=smtp.from_name)

    followup = _followup_config(_Reader(f"{where}: [followup]", data.get("followup"), problems),
                                timezone)
    hl = _Reader(f"{where}: [health]", data.get("health"), problems)
    health = HealthConfig(**{key: hl.positive(key, getattr(HealthConfig, key))
                             for key in HealthConfig.KEYS})
    hl.unknown_keys()

    if problems:
        raise ConfigError(problems)
    return Config(
        path=path,
        company=CompanyConfig(name=company_name, timezone=timezone, trades=trades),
        mailbox=mailbox, smtp=smtp, database=DatabaseConfig(url=url),
        storage=StorageConfig(data_dir=data_dir, blobs=blobs),
        drafter=drafter, staff=staff, web=web,
        vendors=vendors, homes=homes, partial=partial,
        extra={"followup": followup.threshold_table()}, followup=followup, health=health,
        other_divisions=divisions,
    )


def _mailbox_config(mb: _Reader, base_dir: Path, *, need_mail: bool,
                    inherit: MailboxConfig | None = None) -> MailboxConfig:
    """``[mailbox]``, or a division's ``[divisions.mailbox]``, whose unset keys then come
    from the top-level ``[mailbox]`` (same server, usually another login)."""
    base = inherit or MailboxConfig(address="")
    need_server = need_mail and inherit is None
    oauth = _oauth_settings(mb, base_dir)
    if inherit is not None and not any(k in mb.table for k in ("auth", "oauth_token_command",
                                                               "oauth_token_file")):
        oauth = {"auth": base.auth, "oauth_token_command": base.oauth_token_command,
                 "oauth_token_file": base.oauth_token_file}
    mailbox = MailboxConfig(
        address=mb.address("address", required=True),
        imap_host=mb.text("imap_host", base.imap_host, required=need_server,
                          hint="the IMAP server's host name"),
        imap_port=mb.port("imap_port", base.imap_port),
        imap_security=mb.choice("imap_security", SECURITY_CHOICES, base.imap_security),
        imap_user=mb.text("imap_user", required=need_mail, hint="the IMAP login name"),
        imap_password_env=mb.env_name("imap_password_env", base.imap_password_env),
        folder=mb.text("folder", base.folder),
        processed_folder=mb.text("processed_folder", base.processed_folder),
        failed_folder=mb.text("failed_folder", base.failed_folder),
        idle=bool(mb.get("idle", bool, base.idle)),
        poll_seconds=mb.positive("poll_seconds", base.poll_seconds),
        max_attempts=mb.count("max_attempts", base.max_attempts),
        **oauth,
    )
    if mailbox.processed_folder == mailbox.folder or mailbox.failed_folder == mailbox.folder:
        mb.problem("processed_folder", "processed_folder and failed_folder must differ from folder")
    mb.unknown_keys()
    return mailbox


def _staff_config(sf: _Reader, timezone: str, *, required: bool,
                  inherit: StaffConfig | None = None) -> StaffConfig:
    """``[staff]``, or a division's ``[divisions.staff]``, whose unset keys then come from
    the top-level ``[staff]`` (the addresses never do)."""
    base = inherit or StaffConfig(addresses=())
    # Once each: a staff member listed twice gets one digest, not two.
    addresses = tuple(dict.fromkeys(a.strip().lower() for a in sf.strings(
        "addresses", required=required, hint='a list like ["pat@acme-homes.example"]')))
    for addr in addresses:
        if not _looks_like_address(addr):
            sf.problem("addresses", f"{addr!r} is not an email address")
    if required and not addresses and "addresses" in sf.table:
        sf.problem("addresses", "must list at least one staff address")
    digest = sf.text("digest", base.digest)
    if digest != "immediate":
        try:
            from apscheduler.triggers.cron import CronTrigger

            CronTrigger.from_crontab(digest, timezone=timezone)
        except ValueError as exc:
            sf.problem("digest", f"must be \"immediate\" or a cron expression like "
                                 f"\"0 8,13 * * mon-fri\": {exc}")
    staff = StaffConfig(
        addresses=addresses,
        digest=digest,
        require_authenticated_sender=bool(sf.get("require_authenticated_sender", bool,
                                                 base.require_authenticated_sender)),
        trusted_authserv_id=sf.text("trusted_authserv_id", base.trusted_authserv_id),
        token_days=sf.count("token_days", base.token_days),
    )
    if staff.require_authenticated_sender and not staff.trusted_authserv_id:
        sf.problem("trusted_authserv_id", "is required when require_authenticated_sender is true "
                                          "(the authserv-id your receiving server writes in "
                                          "Authentication-Results, e.g. mx.example.com)")
    sf.unknown_keys()
    return staff


def _vendor_configs(raw_vendors: object, where: str, trades: tuple[str, ...],
                    problems: list[str]) -> tuple[VendorConfig, ...]:
    """``[[vendors]]`` (``where`` names the enclosing division, if any)."""
    vendors: list[VendorConfig] = []
    if not isinstance(raw_vendors, list):
        problems.append(f"{where}vendors must be written as [[vendors]] tables")
        raw_vendors = []
    seen: set[str] = set()
    for i, item in enumerate(raw_vendors, 1):
        vr = _Reader(f"{where}[[vendors]] #{i}", item, problems)
        name = vr.text("name", required=True)
        vemail = vr.address("email", required=True)
        if vemail and vemail in seen:
            vr.problem("email", f"{vemail} is listed twice; one [[vendors]] table per vendor")
        seen.add(vemail)
        vtrades = vr.strings("trades")
        for t in vtrades:
            if t not in trades:
                vr.problem("trades", f"unknown trade {t!r} (known: {', '.join(trades)})")
        vendors.append(VendorConfig(name=name, email=vemail, trades=vtrades,
                                    communities=vr.strings("communities"),
                                    aliases=vr.strings("aliases")))
        vr.unknown_keys()
    return tuple(vendors)


def _home_configs(raw_homes: object, where: str, problems: list[str]) -> tuple[HomeConfig, ...]:
    """``[[homes]]`` (``where`` names the enclosing division, if any)."""
    homes: list[HomeConfig] = []
    if not isinstance(raw_homes, list):
        problems.append(f"{where}homes must be written as [[homes]] tables")
        raw_homes = []
    for i, item in enumerate(raw_homes, 1):
        hr = _Reader(f"{where}[[homes]] #{i}", item, problems)
        closing = hr.get("closing_date", (date, str), None)
        if isinstance(closing, str):
            try:
                closing = date.fromisoformat(closing)
            except ValueError:
                hr.problem("closing_date", f"must be a date like 2025-03-14, not {closing!r}")
                closing = None
        owners: list[HomeownerConfig] = []
        for j, owner in enumerate(hr.get("homeowners", list, []), 1):
            orr = _Reader(f"{where}[[homes]] #{i} homeowners #{j}", owner, problems)
            owners.append(HomeownerConfig(name=orr.text("name"), email=orr.address("email",
                                                                                   required=True)))
            orr.unknown_keys()
        homes.append(HomeConfig(address=hr.text("address", required=True),
                                community=hr.text("community", ""), closing_date=closing,
                                homeowners=tuple(owners)))
        hr.unknown_keys()
    return tuple(homes)


DIVISION_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


def _division_configs(raw: object, where: str, problems: list[str], base_dir: Path, *,
                      need_mail: bool, timezone: str, trades: tuple[str, ...],
                      main_mailbox: MailboxConfig, main_staff: StaffConfig,
                      from_name: str) -> tuple[DivisionConfig, ...]:
    """``[[divisions]]``: each a name, a mailbox, staff, vendors and homes of its own.

    Unset mailbox and staff settings come from the top-level tables, so a division on the
    same IMAP server needs only its address, login and staff.  Two divisions reading one
    IMAP folder would import every mail twice, so that is refused here.
    """
    if not isinstance(raw, list):
        problems.append(f"{where}: divisions must be written as [[divisions]] tables")
        return ()
    divisions: list[DivisionConfig] = []
    names = {MAIN_DIVISION}
    addresses = {main_mailbox.address}
    # A mailbox without imap_user is reported as such; it cannot also be a folder clash.
    folders = ({(main_mailbox.imap_host.lower(), main_mailbox.imap_user.lower(),
                 main_mailbox.folder):
                MAIN_DIVISION} if main_mailbox.imap_user else {})
    for i, item in enumerate(raw, 1):
        dv = _Reader(f"{where}: [[divisions]] #{i}", item, problems)
        name = dv.text("name", required=True, hint='a short name like "north"').strip().lower()
        label = f"{where}: [[divisions]] {name!r}" if name else dv.where
        if name and not set(name) <= DIVISION_NAME_CHARS:
            dv.problem("name", f"{name!r} may hold only letters, digits, - and _ (it is kept "
                               f"on every request and used in `--division`)")
        elif name in names:
            dv.problem("name", f"{name!r} is used twice (\"{MAIN_DIVISION}\" is the top-level "
                               f"[mailbox] and [staff])")
        names.add(name)
        division_from = dv.text("from_name", from_name)
        if "mailbox" not in dv.table:
            dv.problem("mailbox", "a [divisions.mailbox] table is required (address, imap_user)")
        mailbox = _mailbox_config(_Reader(f"{label} mailbox", dv.get("mailbox", dict, {}),
                                          problems),
                                  base_dir, need_mail=need_mail, inherit=main_mailbox)
        if mailbox.address and mailbox.address in addresses:
            problems.append(f"{label} mailbox.address: {mailbox.address} is another "
                            f"division's mailbox; each division needs its own address")
        addresses.add(mailbox.address)
        folder_key = (mailbox.imap_host.lower(), mailbox.imap_user.lower(), mailbox.folder)
        if need_mail and mailbox.imap_user and folder_key in folders:
            problems.append(f"{label} mailbox: reads the same IMAP folder as division "
                            f"{folders[folder_key]!r} ({mailbox.imap_user} on "
                            f"{mailbox.imap_host}, {mailbox.folder}); give it its own imap_user "
                            f"or folder")
        if mailbox.imap_user:
            folders[folder_key] = name
        if "staff" not in dv.table:
            dv.problem("staff", "a [divisions.staff] table is required (addresses = [...])")
        staff = _staff_config(_Reader(f"{label} staff", dv.get("staff", dict, {}), problems),
                              timezone, required=True, inherit=main_staff)
        vendors = _vendor_configs(dv.get("vendors", list, []), f"{label} ", trades, problems)
        homes = _home_configs(dv.get("homes", list, []), f"{label} ", problems)
        dv.unknown_keys()
        divisions.append(DivisionConfig(name=name, mailbox=mailbox, staff=staff,
                                        vendors=vendors, homes=homes, from_name=division_from))
    return tuple(divisions)


def _followup_config(fu: _Reader, timezone: str) -> FollowupConfig:
    """``[followup]``: non-negative hours and minutes, valid cron expressions ("" = off)."""
    default = FollowupConfig()

    def amount(key: str) -> float:
        unit = "minutes" if key.endswith("_minutes") else "hours"
        value = fu.get(key, float, getattr(default, key),
                       hint=f"a number of {unit}, e.g. {getattr(default, key):g}")
        if value < 0:
            fu.problem(key, f"must be a number of {unit} ≥ 0, not {value}")
            return float(getattr(default, key))
        return float(value)

    def cron(key: str) -> str:
        value = fu.text(key, getattr(default, key)).strip()
        if value.lower() in ("", "off", "never"):
            return ""
        try:
            from apscheduler.triggers.cron import CronTrigger

            CronTrigger.from_crontab(value, timezone=timezone)
        except ValueError as exc:
            fu.problem(key, f"must be a cron expression like \"0 7 * * mon-fri\" (minute hour "
                            f"day month weekday, company time) or \"\" to turn it off: {exc}")
            return getattr(default, key)
        return value

    values: dict[str, Any] = {key: amount(key) for key in FollowupConfig.THRESHOLD_KEYS}
    values["nudge_after_hours"] = amount("nudge_after_hours")
    values["catch_up_hours"] = amount("catch_up_hours")
    values["digest_cron"] = cron("digest_cron")
    values["nudge_cron"] = cron("nudge_cron")
    values["escalation_cron"] = cron("escalation_cron")
    nudge_max = fu.get("nudge_max", int, default.nudge_max,
                       hint="how many reminders one vendor gets for one job, e.g. 3")
    if nudge_max < 1:
        fu.problem("nudge_max", f"must be 1 or more, not {nudge_max} (to stop reminders, set "
                                f"nudge_cron = \"\")")
        nudge_max = default.nudge_max
    values["nudge_max"] = int(nudge_max)
    fu.unknown_keys()
    return FollowupConfig(**values)
