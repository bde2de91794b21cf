"""The migrations and the ORM models describe the same schema: Alembic's autogenerate finds
nothing to add after `upgrade head` (on SQLite and PostgreSQL), and the offline mode prints the
SQL a DBA can review, through the repository's alembic.ini as a developer runs it."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _alembic(*args: str, db: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "CXR_DB": db}, timeout=120,
    )  # fmt: skip


def test_autogenerate_finds_the_migrations_complete(db_url):
    upgraded = _alembic("upgrade", "head", db=db_url)
    assert upgraded.returncode == 0, upgraded.stderr
    checked = _alembic("check", db=db_url)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "No new upgrade operations detected" in checked.stdout + checked.stderr


def test_offline_mode_prints_the_sql(tmp_path):
    offline = _alembic("upgrade", "head", "--sql", db=f"sqlite:///{tmp_path / 'b.db'}")
    assert offline.returncode == 0, offline.stderr
    assert "CREATE TABLE instances" in offline.stdout and "CREATE TABLE audit" in offline.stdout
    assert not (tmp_path / "b.db").exists()  # offline: nothing was connected to
