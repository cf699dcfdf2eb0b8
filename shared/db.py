"""Postgres: the connection pool, the database itself, and migrations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
from aiohttp import web

POOL = web.AppKey("postgres_pool", asyncpg.Pool)
# What a query raises when Postgres is down: `shared.errors.transient`; callers
# turn it into `DatabaseUnavailable` with `shared.errors.down_as`.
MIGRATIONS = Path(__file__).with_name("migrations")

log = logging.getLogger(__name__)


async def _init_connection(connection: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects, through the fast codec.
    await connection.set_type_codec(
        "jsonb",
        encoder=lambda value: orjson.dumps(value).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )


@contextlib.asynccontextmanager
async def create_pool(dsn: str, size: int = 10) -> AsyncIterator[asyncpg.Pool]:
    """A pool that (re)connects lazily: start-up does not need Postgres up."""
    pool = asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=size,
        init=_init_connection,
        command_timeout=30,
        max_inactive_connection_lifetime=60,
    )
    await pool
    try:
        yield pool
    finally:
        await pool.close()


def database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/") or "postgres"


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def ensure_database(dsn: str) -> None:
    """Create the DSN's database when it does not exist yet."""
    name = database_name(dsn)
    connection = await asyncpg.connect(with_database(dsn, "postgres"), timeout=10)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            quoted = '"' + name.replace('"', '""') + '"'
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await connection.execute(f"CREATE DATABASE {quoted}")
            log.info("database_created", extra={"database": name})
    finally:
        await connection.close()


def apply_migrations(dsn: str) -> int:
    """Apply pending yoyo migrations (synchronous driver); returns how many ran."""
    from yoyo import get_backend, read_migrations

    scheme, rest = dsn.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        scheme = "postgresql+psycopg"
    backend = get_backend(f"{scheme}://{rest}")
    migrations = read_migrations(str(MIGRATIONS))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return len(pending)


async def migrate(dsn: str) -> int:
    """Create the database if needed and bring its schema up to date."""
    await ensure_database(dsn)
    return await asyncio.to_thread(apply_migrations, dsn)
