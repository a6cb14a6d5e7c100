"""Every INSERT names its columns: a migration that adds or reorders a column cannot silently shift values."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POSITIONAL = re.compile(r"insert\s+(or\s+replace\s+)?into\s+\w+\s+(values|select)\b", re.IGNORECASE)


def test_no_insert_without_a_column_list():
    found = [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}"
        for folder in ("taskonomy_db", "cli", "models")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for text in [path.read_text()]
        for match in POSITIONAL.finditer(text)
    ]
    assert found == []
    # the pattern does catch one
    assert POSITIONAL.search('con.execute("insert into losses values (?, ?, ?)")')
