"""The docs a user reads: every setting is documented, links resolve, and they stay short and free of
how the work was organised."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from labelaudit.config import ScanConfig
from labelaudit.robust import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("settings_cls", [ScanConfig, TrainConfig])
def test_every_setting_is_in_the_advanced_settings_table(settings_cls):
    table = (ROOT / "docs" / "cli.md").read_text()
    missing = [name for name in settings_cls.__dataclass_fields__ if f"| `{name}` |" not in table]
    assert not missing, f"docs/cli.md lacks {missing}: regenerate its tables from `labelaudit settings`"


def test_links_between_pages_resolve():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", page.read_text()):
            if not (page.parent / target).is_file():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken


def test_docs_are_short_and_say_nothing_of_how_they_were_made():
    lines = sum(len(p.read_text().splitlines()) for p in PAGES)
    assert lines < 1200, f"README.md and docs/ hold {lines} lines"
    for page in PAGES:
        text = page.read_text().lower()
        for word in ("session", "scratch script", " i was ", " i ran ", " we "):
            assert word not in text, f"{page.relative_to(ROOT)} says {word.strip()!r}"
