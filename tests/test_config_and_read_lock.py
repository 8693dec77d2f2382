"""Start-up refuses a bad configuration file in plain Chinese; on SQLite, reading takes no write lock."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pipeline.db import session_scope
from pipeline.models import Project
from tests.cli_helpers import clean_env, pipeline
from tests.conftest import make_runtime

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config"
BAD = {
    ("recipients.yaml", "office: [oops\n"): "第 2 行第 1 列有 YAML 语法错误",
    ("recipients.yaml", "office:\n  name: 投资科\n  emali: a@b.cn\n"): "未知的配置项 office.emali",
    ("recipients.yaml", "leaders:\n  王建国:\n    webhooks:\n      - {url: 'https://x', format: qq}\n"):
        "配置项 leaders.王建国.webhooks.0.format 的值无效",
    ("recipients.yaml", "- just\n- a list\n"): "应为 YAML 映射",
    ("reviews.yaml", "months: [2, 4\n"): "无法读取评审日历配置文件",
    ("reviews.yaml", "months: [2, 4, 13]\n"): "配置项 months 无效",
}


@pytest.mark.parametrize("command", [["scheduler", "--tick", "1"], ["run", "--no-demo", "--no-web"], ["worker"]])
@pytest.mark.parametrize(("fault", "words"), list(BAD.items()), ids=[f"{n}:{i}" for i, (n, _) in enumerate(BAD)])
def test_a_bad_config_file_stops_start_up_naming_the_file(tmp_path: Path, command: list[str],
                                                          fault: tuple[str, str], words: str) -> None:
    name, content = fault
    config = tmp_path / "config"
    shutil.copytree(REPO_CONFIG, config)
    (config / name).write_text(content, encoding="utf-8")
    env = clean_env(tmp_path / "data", PIPELINE_CONFIG_DIR=str(config))
    done = pipeline(env, *command, timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr
    said = "".join(done.stderr.split())  # the terminal may wrap the message anywhere
    assert "配置错误" in said and name in said and "".join(words.split()) in said, done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_reading_on_sqlite_takes_no_write_lock(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path)
    path = rt.settings.data_dir / "pipeline.sqlite3"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a long import holds the write lock
    try:
        with session_scope(rt.read_session_factory) as session:
            assert session.scalar(select(func.count()).select_from(Project)) == 0
        env = clean_env(rt.settings.data_dir)
        for args in (["flags", "--json"], ["rates", "--as-of", "2024-12-31"]):
            done = pipeline(env, *args, timeout=120)
            assert done.returncode == 0, done.stdout + done.stderr
    finally:
        writer.rollback()
        writer.close()
        rt.dispose()


def test_a_forked_worker_process_keeps_the_configuration_checked_at_start_up(tmp_path: Path) -> None:
    from pipeline.runtime import get_runtime, set_runtime
    from workers.celery_app import _fresh_runtime_after_fork

    config = tmp_path / "config"
    shutil.copytree(REPO_CONFIG, config)
    rt = make_runtime(tmp_path, config_dir=config)
    rt.check_config()
    (config / "recipients.yaml").write_text("office: [oops\n", encoding="utf-8")  # edited after start-up
    try:
        _fresh_runtime_after_fork()
        child = get_runtime()
        assert child is not rt and "engine" not in child.__dict__  # no connection of the parent's
        assert child.recipients is rt.recipients and child.scheme is rt.scheme
        assert child.review_calendar is rt.review_calendar and child.reference is rt.reference
    finally:
        get_runtime().dispose()
        set_runtime(None)
