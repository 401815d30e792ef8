"""The README stays true: two set-up commands, every setting documented, CI runs them."""

from __future__ import annotations

import re

from app.commands.show_config import settings_table
from tests.conftest import REPO


def readme() -> str:
    return (REPO / "README.md").read_text()


def test_settings_table_is_current() -> None:
    match = re.search(
        r"<!-- settings-table:start -->\n(.*?)\n<!-- settings-table:end -->", readme(), re.S
    )
    assert match, "settings table markers missing"
    assert match.group(1) == settings_table(), "run: python -m app config --markdown"


def test_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    quick_start = readme().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    first_block = quick_start.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make serve", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()
