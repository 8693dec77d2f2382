"""The README's first command: `pipeline run --once` on embedded defaults, from an empty folder."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, text

from tests.cli_helpers import clean_env, pipeline


def test_run_once_loads_flags_and_summarises_the_demo_reserve(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "data")
    done = pipeline(env, "run", "--once", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for words in ("红牌", "黄牌", "绿牌", "开工率", "竣工率", "入统率", "全市", "2024-12-31"):
        assert words in out
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'pipeline.sqlite3'}")
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM projects")) == 1463
        assert conn.scalar(text("SELECT count(*) FROM project_flags")) == 1463
        assert conn.scalar(text("SELECT count(*) FROM import_batches WHERE status = 'applied'")) == 12
        colours = dict(conn.execute(text("SELECT effective_color, count(*) FROM project_flags GROUP BY 1")).all())
    engine.dispose()
    assert set(colours) == {"red", "yellow", "green"}
    # A second run finds everything in place and adds nothing.
    again = pipeline(env, "run", "--once", timeout=300)
    assert again.returncode == 0, again.stderr
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'pipeline.sqlite3'}")
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM import_batches")) == 12
        updates = conn.scalar(text("SELECT count(*) FROM status_updates"))
        assert updates == conn.scalar(text("SELECT sum(accepted_rows) FROM import_batches"))
    engine.dispose()
