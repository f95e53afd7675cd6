"""The results database: real SQLite files, a real soak's run directory, migrations from older shapes, the CLI."""

from __future__ import annotations

import io
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from console.cli import main
from console.cli import results as results_cli
from runners.evidence.pareto import pareto_frontier
from runners.evidence.results import load_run_results
from runners.results_db import schema
from runners.results_db.schema import LATEST_VERSION, MIGRATIONS, V1_SQL, Migration, ResultsDBError, columns
from runners.results_db.store import ResultsDB, open_db
from tests.support.plans import write_plan
from tests.support.processes import run_headless

pytestmark = pytest.mark.xdist_group("results-db-soak-run")  # one worker makes its module run

TABLES = ("runs", "arms", "phase_metrics", "gates")


@pytest.fixture(scope="module")
def soak_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished two-arm soak against the embedded engine (a few seconds)."""
    base = tmp_path_factory.mktemp("soak")
    proc = run_headless(write_plan(base, requests=4, concurrency=2, max_tokens=8), base / "run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return base / "run"


def cli(*argv: str) -> int:
    """`gb10-console results ...` in this process, its tables printed nowhere (JSON and errors: stdout, stderr)."""
    return main(["results", *argv], Console(file=io.StringIO(), width=200))


def counts(path: Path) -> dict[str, int]:
    """Rows per table of the database at `path`."""
    with sqlite3.connect(path) as conn:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}


def snapshot(path: Path) -> tuple:
    """Everything that would show a change: versions, the schema's SQL, every row of the tables it has."""
    conn = sqlite3.connect(path)
    try:
        versions = [conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("user_version", "schema_version")]
        schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        rows = {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TABLES if columns(conn, t)}
    finally:
        conn.close()
    return versions, schema, rows


def insert(conn: sqlite3.Connection, table: str, **row: object) -> None:
    """One row by hand, in whatever shape `table` has."""
    conn.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))


def phase_row(conn: sqlite3.Connection, run_id: str, arm: str, phase: str, **metrics: object) -> None:
    """A phase_metrics row with the v1 core columns filled and `metrics` on top."""
    core = {"kind": "sharegpt", "mode": "primary", "reps_done": 1, "reps_total": 1, "requests": 4, "ok": 4}
    insert(conn, "phase_metrics", run_id=run_id, arm=arm, phase=phase, failed=0, **{**core, **metrics})


# --- a real run ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_ingest_a_real_run_and_read_it_back(soak_run: Path, tmp_path: Path) -> None:
    results = load_run_results(soak_run)
    with open_db(tmp_path / "deep" / "results.db") as db:
        summary = db.ingest_dir(soak_run)
        assert (summary.run_id, summary.arms, summary.phases, summary.replaced) == (results.run_id, 2, 2, False)
        assert summary.gates >= 8  # quality, correctness, mechanism, coherence per arm, plus the candidate verdict

        [run] = db.list_runs()
        assert (run.run_id, run.plan, run.status, run.arms, run.phases) == (results.run_id, "mini", "finished", 2, 2)
        assert run.host == results.provenance["host"]["hostname"]
        assert run.run_dir == str(soak_run.resolve())
        assert run.started_at is not None and run.ended_at is not None and run.ingested_at >= run.ended_at

        rows = db.query("output_tok_s", ["arm"])
        assert [r.group for r in rows] == [{"arm": "split1"}, {"arm": "split8"}]
        for row in rows:
            want = results.arm(row.group["arm"]).phases["replay"].stats.output_tok_s
            assert row.count == 1 and row.mean == row.min == row.max == pytest.approx(want)
        [verdict] = db.query("ok", ["arm", "verdict"], [("arm", "split1")])
        assert verdict.group == {"arm": "split1", "verdict": "baseline"} and verdict.mean == 4

        points = db.pareto("replay")
        assert {(p.arm, p.phase) for p in points} == {("split1", "replay"), ("split8", "replay")}
        assert [p.on_frontier for p in points] == pareto_frontier([(p.output_tok_s, p.ttft_p99_ms) for p in points])
        assert any(p.on_frontier for p in points)
        split8 = results.arm("split8").phases["replay"]
        assert next(p for p in points if p.arm == "split8").ttft_p99_ms == pytest.approx(split8.ttft_p99_ms)
        assert db.pareto("no-such-phase") == []


@pytest.mark.slow
def test_ingesting_a_run_twice_replaces_its_rows(soak_run: Path, tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    with open_db(path) as db:
        db.ingest_dir(soak_run)
    first = counts(path)
    with open_db(path) as db:
        again = db.ingest_dir(soak_run)
    assert again.replaced
    assert counts(path) == first
    assert first["runs"] == 1 and first["arms"] == 2 and first["phase_metrics"] == 2 and first["gates"] == again.gates


@pytest.mark.slow
def test_cli_ingest_list_query_pareto(soak_run: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    db = tmp_path / "cli.db"
    monkeypatch.setenv(results_cli.DB_ENV, str(db))
    assert cli("ingest", str(soak_run), str(soak_run)) == 0
    assert counts(db)["runs"] == 1
    capsys.readouterr()

    assert cli("list", "--json") == 0
    [run] = json.loads(capsys.readouterr().out)
    assert run["plan"] == "mini" and run["arms"] == 2

    assert cli("query", "--metric", "ttft_p99_ms", "--group-by", "arm,phase", "--where", "arm=split8", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["group"] for r in out["rows"]] == [{"arm": "split8", "phase": "replay"}]

    assert cli("pareto", "--phase", "replay", "--json") == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert cli("query", "--metric", "req_s", "--group-by", "mechanism", "--phase", "replay") == 0
    assert cli("pareto") == 0

    other = tmp_path / "other.db"
    assert cli("ingest", "--db", str(other), str(tmp_path), str(soak_run)) == 2  # one bad directory of two
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and f"{tmp_path} is not a run directory" in err
    assert counts(other)["runs"] == 1


# --- migrations ---------------------------------------------------------------------------------


def legacy_db(path: Path, version: int) -> None:
    """A database in the shape of schema `version` (0: the v1 tables made by hand, user_version never set)."""
    conn = sqlite3.connect(path, isolation_level=None)
    if version == 0:
        conn.executescript(V1_SQL)
    else:
        for step in MIGRATIONS[:version]:
            step.apply(conn)
        conn.execute(f"PRAGMA user_version = {version}")
    insert(conn, "runs", run_id="old", plan="p", status="finished", run_dir="/runs/old", ingested_at=1.0)
    insert(conn, "arms", run_id="old", arm="a", env_json="{}", env_status="verified", verdict="baseline")
    phase_row(conn, "old", "a", "replay", output_tok_s=100.0, ttft_p95_ms=40.0)
    conn.close()


@pytest.mark.parametrize("version", range(LATEST_VERSION))
def test_an_older_database_upgrades_in_place_once(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.db"
    legacy_db(path, version)
    with open_db(path) as db:
        assert db.found_version == version
        assert db.conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert {"mechanism", "acceptance_rate"} <= columns(db.conn, "arms")
        assert {"ttft_p99_ms", "tpot_mean_ms", "wall_std_s"} <= columns(db.conn, "phase_metrics")
        assert columns(db.conn, "gates")
        [run] = db.list_runs()
        assert (run.run_id, run.arms, run.phases) == ("old", 1, 1)
        [row] = db.query("output_tok_s", ["arm", "mechanism"])
        assert row.group == {"arm": "a", "mechanism": None} and row.mean == 100.0
        assert db.pareto() == []  # no TTFT p99 before v3
    upgraded = snapshot(path)
    for _ in range(2):
        with open_db(path) as db:
            assert db.found_version == LATEST_VERSION
        assert snapshot(path) == upgraded  # schema_version included: no statement changed the schema


def test_a_failing_upgrade_leaves_the_database_as_it_was(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "old.db"
    legacy_db(path, 1)
    before = snapshot(path)

    def v3_then_fail(conn: sqlite3.Connection) -> None:
        MIGRATIONS[-1].apply(conn)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(schema, "MIGRATIONS", (*MIGRATIONS[:-1], Migration(LATEST_VERSION, "fails", v3_then_fail)))
    with pytest.raises(RuntimeError, match="disk on fire"):
        open_db(path)
    assert snapshot(path) == before  # v2 and v3 columns rolled back with the version


def test_cli_says_when_it_upgraded_a_database(tmp_path: Path, capsys) -> None:
    path = tmp_path / "old.db"
    legacy_db(path, 1)
    assert cli("list", "--db", str(path)) == 0
    assert capsys.readouterr().err == f"upgraded {path} from schema v1 to v{LATEST_VERSION}\n"
    assert cli("list", "--db", str(path)) == 0
    assert capsys.readouterr().err == ""


def test_migrations_are_ordered_and_idempotent(tmp_path: Path) -> None:
    versions = [m.version for m in MIGRATIONS]
    assert versions == sorted(set(versions)) and versions[0] == 1 and versions[-1] == LATEST_VERSION
    conn = sqlite3.connect(tmp_path / "twice.db", isolation_level=None)
    for step in (*MIGRATIONS, *MIGRATIONS):
        step.apply(conn)
    conn.close()
    open_db(tmp_path / "twice.db").close()


def test_a_database_from_a_newer_version_is_refused_clearly(tmp_path: Path, capsys) -> None:
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.close()
    with pytest.raises(
        ResultsDBError, match=r"written by a newer gb10-console \(.*\); upgrade or use another --db"
    ) as info:
        open_db(path)
    assert str(path) in str(info.value)
    assert cli("list", "--db", str(path)) == 2
    assert cli("ingest", "--db", str(path), str(tmp_path)) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") and "newer gb10-console" in line for line in err)
    assert snapshot_version(path) == LATEST_VERSION + 1


def snapshot_version(path: Path) -> int:
    """The user_version of the database at `path`."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def test_a_file_that_is_not_sqlite_is_refused_clearly(tmp_path: Path, capsys) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are not the results you are looking for\n" * 20)
    with pytest.raises(ResultsDBError, match="is not an SQLite database") as info:
        open_db(path)
    assert str(path) in str(info.value)
    assert cli("query", "--db", str(path), "--metric", "ok", "--group-by", "arm") == 2
    assert capsys.readouterr().err.startswith(f"error: {path} is not an SQLite database")
    assert path.read_text().startswith("these are not")


def test_reading_commands_do_not_create_a_database(tmp_path: Path, capsys) -> None:
    path = tmp_path / "typo.db"
    assert cli("list", "--db", str(path)) == 2
    assert "no results database at" in capsys.readouterr().err
    assert not path.exists()


# --- queries on rows made by hand -----------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Iterator[ResultsDB]:
    """A database with two runs of two arms (mechanisms baseline and kv_quant) over two phases."""
    path = tmp_path / "hand.db"
    open_db(path).close()
    conn = sqlite3.connect(path)
    for n, run_id in enumerate(("r1", "r2")):
        insert(conn, "runs", run_id=run_id, plan="p", status="finished", run_dir=f"/runs/{run_id}", ingested_at=n)
        for arm, mechanism in (("base", "baseline"), ("fp8", "kv_quant")):
            verdict = "baseline" if arm == "base" else "keep opt-in"
            insert(conn, "arms", run_id=run_id, arm=arm, env_json="{}", env_status="verified", verdict=verdict,
                   mechanism=mechanism, variant=arm)  # fmt: skip
            for phase, tok_s in (("short", 100.0), ("long", 50.0)):
                speed = tok_s * (2 if arm == "fp8" else 1) + n * 10
                phase_row(conn, run_id, arm, phase, output_tok_s=speed, ttft_p99_ms=speed / 2)
    conn.commit()
    conn.close()
    with open_db(path) as opened:
        yield opened


def test_query_groups_and_filters(db: ResultsDB) -> None:
    rows = db.query("output_tok_s", ["mechanism", "phase"], [("run_id", "r1"), ("run_id", "r2")])
    by_group = {tuple(r.group.values()): (r.count, r.mean, r.min, r.max) for r in rows}
    assert by_group == {
        ("baseline", "long"): (2, 55.0, 50.0, 60.0),
        ("baseline", "short"): (2, 105.0, 100.0, 110.0),
        ("kv_quant", "long"): (2, 105.0, 100.0, 110.0),
        ("kv_quant", "short"): (2, 205.0, 200.0, 210.0),
    }
    [one] = db.query("output_tok_s", ["verdict"], [("verdict", "keep opt-in"), ("phase", "short"), ("run_id", "r2")])
    assert (one.group, one.count, one.mean) == ({"verdict": "keep opt-in"}, 1, 210.0)
    [total] = db.query("ttft_p99_ms", [])
    assert total.count == 8 and total.group == {}
    assert db.query("output_tok_s", ["arm"], [("plan", "no-such-plan")]) == []


@pytest.mark.parametrize(
    ("metric", "group_by", "where", "bad"),
    [
        ("output_tok_s; DROP TABLE runs", ["arm"], [], "metric"),
        ("output_tok_s", ["arm", "env_json"], [], "column 'env_json'"),
        ("output_tok_s", ["arm"], [("1=1 OR arm", "x")], "column '1=1 OR arm'"),
    ],
)
def test_query_names_are_checked_against_allow_lists(db: ResultsDB, metric, group_by, where, bad) -> None:
    with pytest.raises(ResultsDBError, match=f"{re.escape(bad)}.* is not one of"):
        db.query(metric, group_by, where)
    assert db.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2


@pytest.mark.parametrize(
    "argv",
    [
        ("--metric", "ok", "--group-by", "arm,secret"),
        ("--metric", "ok", "--group-by", "arm", "--where", "env_json={}"),
        ("--metric", "ok", "--group-by", "arm", "--where", "arm"),
        ("--metric", "drop", "--group-by", "arm"),
        ("--metric", "ok", "--group-by", ","),
    ],
)
def test_cli_bad_query_is_one_error_line_and_exit_2(db: ResultsDB, capsys, argv) -> None:
    assert cli("query", "--db", str(db.path), *argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and captured.err.count("\n") == 1


def test_cli_ingest_of_a_broken_run_directory(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text(json.dumps({"run_id": "broken", "plan": "p"}))
    (broken / "plan.toml").write_text("name = [unterminated\n")
    assert cli("ingest", "--db", str(tmp_path / "r.db"), str(broken)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "plan.toml" in err and "Traceback" not in err
    assert counts(tmp_path / "r.db")["runs"] == 0


def test_pareto_flags_from_the_database(db: ResultsDB) -> None:
    points = db.pareto("short")
    assert [(p.run_id, p.arm) for p in points] == [("r2", "fp8"), ("r1", "fp8"), ("r2", "base"), ("r1", "base")]
    # throughput and TTFT rise together here, so nothing dominates anything else
    assert all(p.on_frontier for p in points)
    assert len(db.pareto()) == 8


# --- the frontier as a pure function --------------------------------------------------------------


def dominated(p: tuple[float, float], q: tuple[float, float]) -> bool:
    """The definition: q has throughput >= and latency <= p's, and is strictly better in one."""
    return q[0] >= p[0] and q[1] <= p[1] and q != p


def test_pareto_frontier_by_hand_with_ties() -> None:
    points = [(100, 50), (100, 50), (90, 40), (100, 60), (80, 40), (120, 80), (90, 45), (50, 10)]
    # (100, 50) twice: equal points do not dominate each other; (100, 60) loses to (100, 50) on latency alone;
    # (80, 40) loses to (90, 40) on throughput alone; (90, 45) loses to (90, 40).
    assert pareto_frontier(points) == [True, True, True, False, False, True, False, True]
    assert pareto_frontier([]) == []
    assert pareto_frontier([(1.0, 1.0)]) == [True]
    assert pareto_frontier([(5, 5), (5, 5), (5, 5)]) == [True, True, True]


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=30))
def test_pareto_frontier_matches_the_definition(points: list[tuple[int, int]]) -> None:
    expected = [not any(dominated(p, q) for q in points) for p in points]
    assert pareto_frontier(points) == expected
