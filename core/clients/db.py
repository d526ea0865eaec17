"""Database access: connection pools and the migration runner (yoyo, plain SQL files).

Nothing connects at import time; pools are created closed and opened by the owner
(lifespan of the API, startup of a worker).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Final

from psycopg_pool import AsyncConnectionPool

MIGRATIONS_DIR: Final = Path(__file__).resolve().parents[1] / "migrations"


def create_pool(url: str, min_size: int = 1, max_size: int = 8, name: str = "rpm") -> AsyncConnectionPool:
    """A closed async pool; open it with `await pool.open(wait=True)` in the owner's startup.

    Every connection is checked (a round trip) before it is lent: after a database restart the
    idle connections are dead, and without the check each of them would fail one request.
    """
    return AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        name=name,
        check=AsyncConnectionPool.check_connection,
    )


def apply_migrations(url: str) -> list[str]:
    """Apply pending migrations under yoyo's lock; returns the ids applied."""
    from yoyo import get_backend, read_migrations

    yoyo_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    backend = get_backend(yoyo_url)
    try:
        migrations = read_migrations(str(MIGRATIONS_DIR))
        # yoyo prints the result of SELECT statements in migrations; keep stdout ours.
        with backend.lock(), contextlib.redirect_stdout(io.StringIO()):
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
    finally:
        backend.connection.close()
    return [m.id for m in pending]
