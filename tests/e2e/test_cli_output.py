"""The real `loragen` process: quiet by default (faiss's loader chatter included), -v/-vv for logs, and user errors
as one line with the documented exit code."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from tests.e2e._cli import run_cli


@pytest.fixture
def env(tmp_path):
    return {"LORAGEN_HOME": str(tmp_path / "home")}


def test_simple_command_prints_nothing_on_stderr(tmp_path, env):
    result = run_cli("bank", "stats", "--bank", tmp_path / "b.duckdb", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert '"adapters": 0' in result.stdout


def test_verbose_levels(tmp_path, env):
    info = run_cli("-v", "bank", "stats", "--bank", tmp_path / "b1.duckdb", env=env)
    assert info.returncode == 0 and "INFO loragen.bank.store.schema" in info.stderr
    assert "faiss" not in info.stderr  # the loader's chatter needs -vv
    debug = run_cli("bank", "stats", "--bank", tmp_path / "b2.duckdb", "-vv", env=env)
    assert debug.returncode == 0 and "faiss.loader" in debug.stderr


@pytest.mark.parametrize(
    ("argv", "extra_env", "code", "words"),
    [
        (["serve", "--workers", "0"], {}, 2, ["--workers", ">= 1"]),
        (["serve"], {"LORAGEN_TOKEN": "short"}, 1, ["LORAGEN_TOKEN", "at least 8"]),
        (["serve"], {"LORAGEN_TOKEN": ""}, 1, ["LORAGEN_TOKEN", "is empty", "unset"]),
        (["generate", "", "-o", "out"], {}, 2, ["description", "empty"]),
        (["train", "meta", "--beta", "-1"], {}, 2, ["--beta", ">= 0"]),
    ],
)
def test_user_errors_in_a_real_process(argv, extra_env, code, words, env):
    result = run_cli(*argv, env={**env, **extra_env}, timeout=120)
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert result.stdout == ""


def test_version(env):
    result = run_cli("--version", env=env)
    lines = result.stdout.strip().splitlines()  # the version, then the shipped generators (none in tests)
    assert result.returncode == 0 and lines[0] == f"loragen {version('loragen')}"
    assert lines[1:] == ["shipped generators: none (train your own: `loragen train hypernet`, or `loragen demo`)"]
