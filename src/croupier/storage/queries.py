"""Loads the named SQL queries from `queries.sql` once, at import."""

from __future__ import annotations

from pathlib import Path


def _load(path: Path) -> dict[str, str]:
    """Split a file of `-- name: x` sections into {name: sql}."""
    queries: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("-- name:"):
            if name:
                queries[name] = "\n".join(lines).strip()
            name, lines = line.split(":", 1)[1].strip(), []
        elif name is not None:
            lines.append(line)
    if name:
        queries[name] = "\n".join(lines).strip()
    return queries


Q: dict[str, str] = _load(Path(__file__).with_name("queries.sql"))
