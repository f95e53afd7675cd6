"""The results database's schema as an ordered history of additive, idempotent migrations.

The schema version lives in `PRAGMA user_version`. Opening a database applies, in one transaction,
every step newer than its version, then sets the version to the newest. Every step may run twice
without harm (CREATE ... IF NOT EXISTS; a column is added only when `PRAGMA table_info` lacks it),
so a database created by hand from an older shape upgrades in place too. Steps never drop or rename:
rows written by an older gb10-console stay readable, with NULL in the columns added after them.

History:
- v1: runs, arms (env, env status, verdict), phase_metrics (throughput, TTFT/TPOT/ITL/E2EL p50/p95, GSM8K).
- v2: the arm's mechanism fields (mechanism, variant, support, quality eval, draft model, acceptance
  rate) and the gates table (every gate's status, verdict, failed criteria and numbers).
- v3: TTFT p99, TPOT mean and wall-time spread on phase_metrics; indexes for the common filters.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

V1_SQL = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    plan TEXT NOT NULL,
    status TEXT NOT NULL,
    host TEXT,
    git_sha TEXT,
    started_at REAL,
    ended_at REAL,
    run_dir TEXT NOT NULL,
    ingested_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS arms (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    arm TEXT NOT NULL,
    env_json TEXT NOT NULL,
    env_status TEXT NOT NULL,
    verdict TEXT,
    PRIMARY KEY (run_id, arm)
);
CREATE TABLE IF NOT EXISTS phase_metrics (
    run_id TEXT NOT NULL,
    arm TEXT NOT NULL,
    phase TEXT NOT NULL,
    kind TEXT NOT NULL,
    mode TEXT NOT NULL,
    reps_done INTEGER NOT NULL,
    reps_total INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    wall_mean_s REAL,
    output_tok_s REAL,
    req_s REAL,
    ttft_p50_ms REAL,
    ttft_p95_ms REAL,
    tpot_p50_ms REAL,
    tpot_p95_ms REAL,
    itl_p50_ms REAL,
    itl_p95_ms REAL,
    e2el_p50_ms REAL,
    e2el_p95_ms REAL,
    gsm8k_strict REAL,
    gsm8k_flexible REAL,
    gsm8k_questions INTEGER,
    PRIMARY KEY (run_id, arm, phase),
    FOREIGN KEY (run_id, arm) REFERENCES arms (run_id, arm)
);
"""

V2_ARM_COLUMNS = (
    ("mechanism", "TEXT"),
    ("variant", "TEXT"),
    ("support", "TEXT"),
    ("quality_eval", "TEXT"),
    ("quality_eval_status", "TEXT"),
    ("draft_model_id", "TEXT"),
    ("acceptance_rate", "REAL"),
)

V2_GATES_SQL = """
CREATE TABLE IF NOT EXISTS gates (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    arm TEXT,
    gate TEXT NOT NULL,
    status TEXT NOT NULL,
    verdict TEXT,
    severity TEXT NOT NULL,
    failed_criteria_json TEXT NOT NULL,
    numbers_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gates_by_run ON gates (run_id, arm);
"""

V3_METRIC_COLUMNS = (("ttft_p99_ms", "REAL"), ("tpot_mean_ms", "REAL"), ("wall_std_s", "REAL"))

V3_INDEX_SQL = """
CREATE INDEX IF NOT EXISTS runs_by_plan ON runs (plan);
CREATE INDEX IF NOT EXISTS phase_metrics_by_phase ON phase_metrics (phase, arm);
"""

# The numeric columns of phase_metrics that `query` may aggregate (the newest schema's).
METRIC_COLUMNS = (
    "reps_done", "reps_total", "requests", "ok", "failed", "wall_mean_s", "wall_std_s", "output_tok_s", "req_s",
    "ttft_p50_ms", "ttft_p95_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p95_ms", "tpot_mean_ms", "itl_p50_ms",
    "itl_p95_ms", "e2el_p50_ms", "e2el_p95_ms", "gsm8k_strict", "gsm8k_flexible", "gsm8k_questions",
)  # fmt: skip


@dataclass(frozen=True)
class Migration:
    """One step of the schema's history: applied to every database whose user_version is below `version`."""

    version: int
    description: str
    apply: Callable[[sqlite3.Connection], None]


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    """The column names `table` has now (empty when it does not exist)."""
    return {row[1] for row in conn.execute("SELECT * FROM pragma_table_info(?)", (table,))}


def add_columns(conn: sqlite3.Connection, table: str, wanted: tuple[tuple[str, str], ...]) -> None:
    """ALTER TABLE ADD COLUMN for each (name, type) in `wanted` that `table` lacks."""
    present = columns(conn, table)
    for name, sql_type in wanted:
        if name not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")  # our constants, never user text


def run_script(sql: str) -> Callable[[sqlite3.Connection], None]:
    """A step that runs `sql`, statement by statement, inside the caller's transaction."""

    def apply(conn: sqlite3.Connection) -> None:
        for statement in sql.split(";"):
            if statement.strip():
                conn.execute(statement)

    return apply


def _v2(conn: sqlite3.Connection) -> None:
    add_columns(conn, "arms", V2_ARM_COLUMNS)
    run_script(V2_GATES_SQL)(conn)


def _v3(conn: sqlite3.Connection) -> None:
    add_columns(conn, "phase_metrics", V3_METRIC_COLUMNS)
    run_script(V3_INDEX_SQL)(conn)


MIGRATIONS = (
    Migration(1, "runs, arms and phase_metrics with the core metrics", run_script(V1_SQL)),
    Migration(2, "mechanism columns on arms; the gates table", _v2),
    Migration(3, "TTFT p99, TPOT mean, wall std on phase_metrics; filter indexes", _v3),
)
LATEST_VERSION = MIGRATIONS[-1].version


class ResultsDBError(Exception):
    """A database this code cannot use, or a request it cannot answer; the message says what to do."""


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE (the write lock, waiting up to the busy timeout) ... COMMIT, or ROLLBACK on any error.

    `conn` must be in autocommit mode (isolation_level=None) so this is the only transaction.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def user_version(conn: sqlite3.Connection) -> int:
    """The database's schema version (0 for a new file)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def check_version(version: int, where: str) -> None:
    """Raise ResultsDBError when `version` is newer than this code knows."""
    if version > LATEST_VERSION:
        raise ResultsDBError(
            f"{where} was written by a newer gb10-console (schema version {version}; this one knows up to "
            f"{LATEST_VERSION}); upgrade or use another --db"
        )


def migrate(conn: sqlite3.Connection, where: str) -> int:
    """Bring the database up to LATEST_VERSION in one transaction; returns the version it had (0: new).

    Raises ResultsDBError, naming `where`, when the database is newer than this code.
    """
    version = user_version(conn)
    check_version(version, where)
    if version == LATEST_VERSION:
        return version
    with transaction(conn):
        version = user_version(conn)  # again, under the write lock: another process may have migrated
        check_version(version, where)
        for step in MIGRATIONS:
            if step.version > version:
                step.apply(conn)
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION}")  # an int constant
    return version
