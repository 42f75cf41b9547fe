"""Reply and forward subject prefixes: one list for stripping and for reading the body."""

from __future__ import annotations

import pytest

from warrantyd.parsers.subjects import is_forward_subject, is_reply_subject, strip_subject_prefix


@pytest.mark.parametrize("subject", ["Fwd: leak", "FW: leak", "TR: fuite", "WG: Leck",
                                     "[Acme] Fwd: leak", "RV: gotera", "转发: 漏水"])
def test_forward_subjects(subject: str) -> None:
    assert is_forward_subject(subject)
    assert not is_reply_subject(subject)


@pytest.mark.parametrize("subject", ["Re: leak", "AW: Leck", "SV: läcka", "Re[2]: leak",
                                     "[Acme] RE: leak", "回复：漏水"])
def test_reply_subjects(subject: str) -> None:
    assert is_reply_subject(subject)
    assert not is_forward_subject(subject)


@pytest.mark.parametrize("subject", ["Leak in kitchen", "Recall notice", "Irrigation: zone 3",
                                     "Fwdable question", "[WO-12] toilet"])
def test_plain_subjects(subject: str) -> None:
    assert not is_reply_subject(subject)
    assert not is_forward_subject(subject)
    assert strip_subject_prefix(subject) == subject


def test_strip_removes_every_leading_prefix_and_keeps_tags() -> None:
    assert strip_subject_prefix("RE: Fwd: AW: TR: Leak in kitchen") == "Leak in kitchen"
    assert strip_subject_prefix("Re[2]: [WO-12] hi") == "[WO-12] hi"
