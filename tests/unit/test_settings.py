"""Settings are read from CROUPIER_* variables in one place and never leak secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from croupier.settings import Settings


def test_from_env_parses_types() -> None:
    """Each variable is converted to its field's type."""
    s = Settings.from_env(
        {
            "CROUPIER_DATABASE_URL": "postgresql://u:secret@h/db",
            "CROUPIER_PORT": "9000",
            "CROUPIER_OPTIMIZER_INTERVAL_S": "2.5",
            "CROUPIER_OPTIMIZER_ENABLED": "false",
            "CROUPIER_DATA_DIR": "/tmp/x",
        }
    )
    assert s.port == 9000 and s.optimizer_interval_s == 2.5 and s.optimizer_enabled is False
    assert s.data_dir == Path("/tmp/x")
    assert Settings.from_env(s.to_env()) == s


def test_bad_value_names_the_variable() -> None:
    """A malformed value raises an error naming the variable."""
    with pytest.raises(ValueError, match="CROUPIER_PORT"):
        Settings.from_env({"CROUPIER_PORT": "eighty"})


def test_repr_redacts_passwords() -> None:
    """repr() never shows a password from a URL."""
    s = Settings(database_url="postgresql://u:hunter2@h/db", redis_url="redis://:pw@h:6379/0")
    assert "hunter2" not in repr(s) and "pw@" not in repr(s)
