"""The results database: ingest runs, list them, aggregate a metric across runs, and the throughput/TTFT frontier.

One SQLite file (WAL mode, a busy timeout, so a reader and an ingest can share it). A run is keyed by
its run id: ingesting it again replaces all of its rows in one transaction, so ingest is idempotent.
User text never becomes SQL: metric and column names are checked against allow-lists, values are bound.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runners.evidence.pareto import pareto_frontier
from runners.evidence.results import PhaseResult, RunResults, load_run_results
from runners.gates.evaluate import GateReport, evaluate_gates, registry_for
from runners.results_db.schema import METRIC_COLUMNS, ResultsDBError, migrate, transaction

BUSY_TIMEOUT_S = 10.0

# The columns `query` may group and filter by, and where each lives (m: phase_metrics, a: arms, r: runs).
GROUP_COLUMNS = {
    "plan": "r.plan",
    "run_id": "m.run_id",
    "arm": "m.arm",
    "mechanism": "a.mechanism",
    "variant": "a.variant",
    "phase": "m.phase",
    "kind": "m.kind",
    "mode": "m.mode",
    "verdict": "a.verdict",
}
_JOIN = "FROM phase_metrics m JOIN arms a ON a.run_id = m.run_id AND a.arm = m.arm JOIN runs r ON r.run_id = m.run_id"


@dataclass(frozen=True)
class IngestSummary:
    """What one ingest wrote; `replaced` is True when the run was in the database before."""

    run_id: str
    arms: int
    phases: int
    gates: int
    replaced: bool


@dataclass(frozen=True)
class RunRow:
    """One ingested run, with how many arms and phase rows it has."""

    run_id: str
    plan: str
    status: str
    host: str | None
    git_sha: str | None
    started_at: float | None
    ended_at: float | None
    run_dir: str
    ingested_at: float
    arms: int
    phases: int


@dataclass(frozen=True)
class QueryRow:
    """One group of `query`: its column values, and count (non-NULL values), mean, min, max of the metric."""

    group: dict[str, str | None]
    count: int
    mean: float | None
    min: float | None
    max: float | None


@dataclass(frozen=True)
class ParetoPoint:
    """One arm's phase in one run: output tokens/s against TTFT p99, and whether it is on the frontier."""

    run_id: str
    arm: str
    phase: str
    mechanism: str | None
    variant: str | None
    output_tok_s: float
    ttft_p99_ms: float
    on_frontier: bool


def _num(value: float | None) -> float | None:
    """A finite float, or None (SQLite has no NaN; a missing number is NULL)."""
    return float(value) if value is not None and math.isfinite(value) else None


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def run_record(results: RunResults, ingested_at: float) -> dict:
    """The runs row of `results`."""
    host = results.provenance.get("host")
    project = results.provenance.get("project")
    return {
        "run_id": results.run_id,
        "plan": results.plan.name,
        "status": results.status,
        "host": host.get("hostname") if isinstance(host, dict) else None,
        "git_sha": project.get("sha") if isinstance(project, dict) else None,
        "started_at": results.started_at,
        "ended_at": results.ended_at,
        "run_dir": str(results.root),
        "ingested_at": ingested_at,
    }


def arm_records(results: RunResults, report: GateReport) -> list[dict]:
    """The arms rows of `results`, with each arm's verdict from `report`."""
    return [
        {
            "run_id": results.run_id,
            "arm": arm.name,
            "env_json": _json(arm.env),
            "env_status": arm.env_status,
            "verdict": report.verdicts.get(arm.name),
            "mechanism": arm.declared.mechanism,
            "variant": arm.declared.variant,
            "support": arm.declared.support,
            "quality_eval": arm.declared.quality_eval,
            "quality_eval_status": arm.declared.quality_eval_status,
            "draft_model_id": arm.declared.draft_model_id,
            "acceptance_rate": _num(arm.acceptance_rate),
        }
        for arm in results.arms
    ]


def _phase_record(run_id: str, arm: str, p: PhaseResult) -> dict:
    s = p.stats
    return {
        "run_id": run_id,
        "arm": arm,
        "phase": p.phase,
        "kind": p.kind,
        "mode": p.mode,
        "reps_done": p.reps_done,
        "reps_total": p.reps_total,
        "requests": s.requests,
        "ok": s.ok,
        "failed": s.failed,
        "wall_mean_s": _num(p.wall_mean_s),
        "wall_std_s": _num(p.wall_std_s),
        "output_tok_s": _num(s.output_tok_s),
        "req_s": _num(s.req_s),
        "ttft_p50_ms": _num(s.ttft_p50_ms),
        "ttft_p95_ms": _num(s.ttft_p95_ms),
        "ttft_p99_ms": _num(p.ttft_p99_ms),
        "tpot_p50_ms": _num(s.tpot_p50_ms),
        "tpot_p95_ms": _num(s.tpot_p95_ms),
        "tpot_mean_ms": _num(p.tpot_mean_ms),
        "itl_p50_ms": _num(s.itl_p50_ms),
        "itl_p95_ms": _num(s.itl_p95_ms),
        "e2el_p50_ms": _num(s.e2el_p50_ms),
        "e2el_p95_ms": _num(s.e2el_p95_ms),
        "gsm8k_strict": p.gsm8k.strict if p.gsm8k else None,
        "gsm8k_flexible": p.gsm8k.flexible if p.gsm8k else None,
        "gsm8k_questions": p.gsm8k.n if p.gsm8k else None,
    }


def phase_records(results: RunResults) -> list[dict]:
    """The phase_metrics rows of `results`: one per arm and phase with at least one done repetition."""
    return [
        _phase_record(results.run_id, arm.name, phase)
        for arm in results.arms
        for phase in arm.phases.values()
        if phase.reps_done
    ]


def gate_records(results: RunResults, report: GateReport) -> list[dict]:
    """The gates rows of `report` (arm None for a gate about the whole run)."""
    return [
        {
            "run_id": results.run_id,
            "arm": g.arm,
            "gate": g.name,
            "status": g.status,
            "verdict": g.verdict,
            "severity": g.severity,
            "failed_criteria_json": _json(list(g.failed_criteria)),
            "numbers_json": _json(g.numbers),
        }
        for g in report.gates
    ]


def _insert(conn: sqlite3.Connection, table: str, rows: list[dict]) -> None:
    """INSERT `rows` (dicts with the same keys, all our own column names) into `table`."""
    if not rows:
        return
    names = list(rows[0])
    sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"
    conn.executemany(sql, rows)


def _checked(name: str, allowed: Sequence[str], what: str) -> str:
    if name not in allowed:
        raise ResultsDBError(f"{what} {name!r} is not one of: {', '.join(allowed)}")
    return name


class ResultsDB:
    """An open results database (see open_db); close it, or use it as a context manager.

    `found_version` is the schema version the file had when opened (0: new; below LATEST_VERSION: upgraded).
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, found_version: int) -> None:
        self.conn = conn
        self.path = path
        self.found_version = found_version

    def __enter__(self) -> ResultsDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def ingest(self, results: RunResults, report: GateReport) -> IngestSummary:
        """Write one run (replacing every row it had before) in one transaction."""
        runs, arms = [run_record(results, time.time())], arm_records(results, report)
        phases, gates = phase_records(results), gate_records(results, report)
        key = (results.run_id,)
        try:
            with transaction(self.conn):
                replaced = self.conn.execute("SELECT 1 FROM runs WHERE run_id = ?", key).fetchone() is not None
                for table in ("gates", "phase_metrics", "arms", "runs"):  # children first: foreign keys are on
                    self.conn.execute(f"DELETE FROM {table} WHERE run_id = ?", key)
                for table, rows in (("runs", runs), ("arms", arms), ("phase_metrics", phases), ("gates", gates)):
                    _insert(self.conn, table, rows)
        except sqlite3.OperationalError as exc:  # e.g. locked by another writer past the busy timeout
            raise ResultsDBError(f"{self.path}: cannot write run {results.run_id} ({exc}); try again") from None
        return IngestSummary(results.run_id, len(arms), len(phases), len(gates), replaced)

    def ingest_dir(self, root: Path) -> IngestSummary:
        """Read the run directory at `root`, evaluate its gates (without reproduction), and ingest it.

        Raises RunDirError when `root` is not a run directory, ConfigFileError when its plan copy is invalid.
        """
        results = load_run_results(root)
        return self.ingest(results, evaluate_gates(results, registry_for(results)))

    def list_runs(self) -> list[RunRow]:
        """Every ingested run, oldest first."""
        rows = self.conn.execute(
            "SELECT r.run_id, r.plan, r.status, r.host, r.git_sha, r.started_at, r.ended_at, r.run_dir, r.ingested_at,"
            " (SELECT COUNT(*) FROM arms a WHERE a.run_id = r.run_id),"
            " (SELECT COUNT(*) FROM phase_metrics m WHERE m.run_id = r.run_id)"
            " FROM runs r ORDER BY COALESCE(r.started_at, r.ingested_at), r.run_id"
        )
        return [RunRow(*row) for row in rows]

    def query(self, metric: str, group_by: Sequence[str], where: Sequence[tuple[str, str]] = ()) -> list[QueryRow]:
        """count/mean/min/max of the phase_metrics column `metric`, grouped by `group_by` columns.

        `where` holds (column, value) filters; several values for one column match any of them.
        Every name must be in METRIC_COLUMNS / GROUP_COLUMNS, else ResultsDBError.
        """
        _checked(metric, METRIC_COLUMNS, "metric")
        groups = list(dict.fromkeys(_checked(c, list(GROUP_COLUMNS), "column") for c in group_by))
        filters: dict[str, list[str]] = {}
        for column, value in where:
            filters.setdefault(_checked(column, list(GROUP_COLUMNS), "column"), []).append(value)
        selected = [f"{GROUP_COLUMNS[c]} AS {c}" for c in groups]
        value = f"m.{metric}"
        sql = f"SELECT {', '.join([*selected, f'COUNT({value})', f'AVG({value})', f'MIN({value})', f'MAX({value})'])}"
        sql += f" {_JOIN}"
        params: list[str] = []
        if filters:
            clauses = [f"{GROUP_COLUMNS[c]} IN ({', '.join('?' * len(vs))})" for c, vs in filters.items()]
            sql += " WHERE " + " AND ".join(clauses)
            params = [v for vs in filters.values() for v in vs]
        if groups:
            keys = ", ".join(GROUP_COLUMNS[c] for c in groups)
            sql += f" GROUP BY {keys} ORDER BY {keys}"
        rows = self.conn.execute(sql, params).fetchall()
        n = len(groups)
        return [
            QueryRow(dict(zip(groups, row[:n], strict=True)), row[n], row[n + 1], row[n + 2], row[n + 3])
            for row in rows
        ]

    def pareto(self, phase: str | None = None) -> list[ParetoPoint]:
        """Every run/arm/phase (only `phase` when given) with both output tok/s and TTFT p99, frontier flagged.

        Sorted by throughput, highest first. Rows ingested before schema v3 have no TTFT p99 and are left out.
        """
        sql = (
            f"SELECT m.run_id, m.arm, m.phase, a.mechanism, a.variant, m.output_tok_s, m.ttft_p99_ms {_JOIN}"
            " WHERE m.output_tok_s IS NOT NULL AND m.ttft_p99_ms IS NOT NULL"
        )
        params: tuple[str, ...] = ()
        if phase is not None:
            sql += " AND m.phase = ?"
            params = (phase,)
        rows = self.conn.execute(sql + " ORDER BY m.output_tok_s DESC, m.ttft_p99_ms, m.run_id, m.arm", params)
        rows = rows.fetchall()
        flags = pareto_frontier([(row[5], row[6]) for row in rows])
        return [ParetoPoint(*row, on_frontier=flag) for row, flag in zip(rows, flags, strict=True)]


def _connect(path: Path) -> sqlite3.Connection:
    try:
        return sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise ResultsDBError(f"{path}: cannot open ({exc}); give another --db") from None


def open_db(path: Path, create: bool = True) -> ResultsDB:
    """Open the results database at `path` (creating it and its directory with `create`), migrated to the newest schema.

    Raises ResultsDBError, naming `path`, for a file that is not SQLite, a database written by a
    newer gb10-console, or one that does not exist when `create` is False.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ResultsDBError(f"{path} is a directory; give a file for --db")
    if not create and not path.exists():
        raise ResultsDBError(f"no results database at {path}; ingest a run first: gb10-console results ingest RUN_DIR")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsDBError(f"cannot create the directory {path.parent}: {exc.strerror}") from None
    conn = _connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        found = migrate(conn, str(path))
    except sqlite3.DatabaseError as exc:
        conn.close()
        if "not a database" in str(exc):
            raise ResultsDBError(f"{path} is not an SQLite database; give another --db") from None
        raise ResultsDBError(f"{path}: {exc}") from None
    except BaseException:
        conn.close()
        raise
    return ResultsDB(conn, path, found)
