"""Who may give commands: a staff address, on its own digest thread, authenticated.

A From header is trivially forged, so a staff address alone never authorises anything: the
mail must also have come to the reply token issued to that staff member for that digest (or
name that digest's Message-ID, for clients that drop the plus-address), and — when
``require_authenticated_sender`` is on — our receiving server must have seen DMARC or aligned
DKIM pass.  Homeowners and vendors never get command rights, whatever they write.

With several divisions the address must be staff of the division the digest belongs to, and
that division's ``[staff]`` settings apply: a staff member of another division (a digest
forwarded to them, a token issued while they were still listed there) is refused like any
other sender that is not staff there.
"""

from __future__ import annotations

from datetime import timedelta

from warrantyd.daemon.config import Config
from warrantyd.parsers.authres import authentication_verdict
from warrantyd.parsers.classify import STAFF_REPLY, Classification
from warrantyd.parsers.message import ParsedMessage
from warrantyd.storage.models import utcnow


def authorize_staff_reply(msg: ParsedMessage, verdict: Classification, config: Config,
                          division: str | None = None) -> tuple[bool, str]:
    """(authorised, why) for a mail that would carry staff commands on a digest of
    ``division`` (its ``Digest.division``).

    ``division`` None is for callers that do not know the digest (a dry run): staff of any
    division pass this step, with the settings of the first division they are staff of.
    """
    sender = msg.from_addr
    if not sender or not config.is_staff(sender):
        return False, f"sender {sender or '(none)'} is not a staff address"
    if division is None:
        division = config.staff_divisions(sender)[0]
    elif not config.is_staff(sender, division):
        return False, (f"sender {sender} is not a staff address of division "
                       f"{config.division(division).name}")
    staff = config.division(division).staff
    if verdict.kind != STAFF_REPLY or verdict.thread is None:
        return False, "not a reply to a digest of ours (no reply token or digest Message-ID)"
    thread = verdict.thread
    if thread.kind != "digest":
        return False, f"reply on a {thread.kind} thread, not on a digest"
    if thread.evidence == "token":
        if thread.token_address != sender:
            return False, (f"reply token was issued to {thread.token_address}, "
                           f"but the mail is from {sender}")
        how = "reply token issued to the sender"
    elif thread.evidence == "message-id":
        # For clients that drop the plus-address: the digest named must have been sent to
        # this very staff member, and no longer ago than a token would live.
        if thread.token_address != sender:
            return False, (f"the digest named in In-Reply-To/References was sent to "
                           f"{thread.token_address}, but the mail is from {sender}")
        age_limit = timedelta(days=staff.token_days)
        if thread.issued_at is None or utcnow() - thread.issued_at > age_limit:
            return False, (f"the digest named in In-Reply-To/References is older than "
                           f"{staff.token_days} days ([staff] token_days)")
        how = "In-Reply-To/References names our digest to the sender"
    else:
        return False, f"only a subject tag ties it to a digest ({thread.evidence})"
    if staff.require_authenticated_sender:
        auth = authentication_verdict(msg, staff.trusted_authserv_id)
        if not auth.passed:
            return False, auth.reason
        how += f"; {auth.reason}"
    return True, how
