"""`python -m app config`: print the effective settings, passwords hidden, or the README table."""

from __future__ import annotations

import argparse

from app.config import Settings


def settings_table() -> str:
    """The Markdown table of every setting, as the README shows it."""
    rows = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "(unset)" if default is None or default == "" else f"`{default}`"
        if name == "models_dir":  # an absolute path that differs between checkouts
            shown = "the repository's `models/` (`/app/models` in Docker)"
        rows.append(f"| `{name}` | `FACE_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows)


def show_config(args: argparse.Namespace, settings: Settings) -> int:
    if args.markdown:
        print(settings_table())
        return 0
    for name, value in settings.model_dump().items():
        hidden = name == "api_keys" and value
        shown = "<hidden>" if hidden else "" if value is None else value  # unset: empty
        if name == "database_url" and value:
            shown = _without_password(value)
        print(f"FACE_{name.upper()}={shown}")
    return 0


def _without_password(url: str) -> str:
    from app.gallery.db import shown_url

    try:
        return shown_url(url)
    except Exception:  # not a URL at all: it might still hold a password
        return "<hidden: not a valid database URL>"
