"""Jinja2 rendering of every mail and page from ``templates/``.

Text templates are rendered without escaping; ``.html`` templates with autoescaping, so
nothing a homeowner wrote can inject markup into a staff or vendor mail.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

import warrantyd.templates

TEMPLATES_DIR = Path(warrantyd.templates.__file__).resolve().parent


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["ref_sr"] = lambda n: f"SR-{n}"
    env.filters["ref_wo"] = lambda n: f"WO-{n}"
    return env


def compile_mail_templates() -> None:
    """Compile every mail template now, not when its first mail is written (a tenth of a
    second for all of them; the environment keeps them)."""
    env = environment()
    for path in sorted((TEMPLATES_DIR / "email").iterdir()):
        env.get_template(f"email/{path.name}")


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def translation(template: str, language: str | None) -> str | None:
    """The language ``email/TEMPLATE`` goes out in for a reader of ``language``: its code when
    ``email/TEMPLATE.LANG.txt`` exists, else None (the English original).

    Anything else in that mail written in the reader's language (a visit's date) asks this
    too, so words and template cannot disagree.
    """
    lang = (language or "").lower()[:2]
    if lang.isalpha() and lang != "en" and (TEMPLATES_DIR / "email" /
                                            f"{template}.{lang}.txt").exists():
        return lang
    return None


def localized(template: str, language: str | None) -> str:
    """``email/TEMPLATE.LANG`` when that translation exists, else ``email/TEMPLATE``.

    Mail to homeowners is written in their language where we have a translation; staff and
    vendor mail stays in the company's language.
    """
    lang = translation(template, language)
    return f"{template}.{lang}" if lang else template


def render_mail(template: str, *, language: str | None = None,
                **context: Any) -> tuple[str, str]:
    """The text and HTML parts of ``email/TEMPLATE.txt`` and ``email/TEMPLATE.html``
    (or of their translation into ``language``)."""
    name = localized(template, language)
    return (render(f"email/{name}.txt", **context),
            render(f"email/{name}.html", **context))
