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


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def render_mail(template: str, **context: Any) -> tuple[str, str]:
    """The text and HTML parts of ``email/TEMPLATE.txt`` and ``email/TEMPLATE.html``."""
    return (render(f"email/{template}.txt", **context),
            render(f"email/{template}.html", **context))
