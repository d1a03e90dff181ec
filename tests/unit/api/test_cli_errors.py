"""Every user error is one line on stderr with a non-zero exit: 2 for the command line, 1 for input loragen refuses,
130 on Ctrl-C; a bug is one "internal error" line unless -v asks for the traceback."""

from __future__ import annotations

import json

import pytest
import torch

from loragen.api.cli import main
from loragen.bank.lora import save_peft
from tests.unit.bank._bank_util import minilm_adapter

SETTING_VARIABLES = ("LORAGEN_TOKEN", "LORAGEN_REINDEX_CRON", "LORAGEN_MAX_UPLOAD_BYTES", "LORAGEN_METHODS",
                     "LORAGEN_BASE_MODELS", "LORAGEN_GENERATION_WORKERS")


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    """A private LORAGEN_HOME and none of the service's variables from the caller's environment."""
    monkeypatch.setenv("LORAGEN_HOME", str(tmp_path / "home"))
    for name in SETTING_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _never_serve(monkeypatch):
    """Guard: `serve` must fail on its settings; should it get as far as binding a port, fail instead of hanging."""
    import uvicorn

    def refuse(*args, **kwargs):
        raise AssertionError("serve got past its settings checks")

    monkeypatch.setattr(uvicorn, "run", refuse)


def run(argv: list[str]) -> int:
    """`main(argv)`'s exit code, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)


def one_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["serve", "--workers", "0"], ["--workers", ">= 1", "got 0"]),
        (["train", "meta", "--beta", "-1"], ["--beta", ">= 0", "-1"]),
        (["train", "hypernet", "--max-steps", "0"], ["--max-steps", ">= 1"]),
        (["generate", "", "-o", "out"], ["description", "empty", "label 0"]),
        (["generate", "   ", "-o", "out"], ["description", "empty"]),
        (["generate", "x", "-o", "out", "--samples", "0"], ["--samples", ">= 1"]),
        (["generate", "x", "-o", "out", "--method", "magic"], ["--method", "retrieve"]),
        (["bank", "search", "", "--bank", "b.duckdb"], ["query", "empty"]),
        (["bank", "search", "volcano", "-k", "zero"], ["-k", "not an integer"]),
        (["merge", "a", "-o", "m", "--weights", "1,x"], ["--weights", "one number per adapter"]),
        (["merge", "a", "b", "-o", "m", "--weights", "1"], ["--weights", "1 values for 2 adapters"]),
        (["merge", "a", "-o", "m", "--density", "2"], ["--density", "(0, 1]"]),
        (["serve", "--methods", "magic"], ["--methods", "retrieve, cvae, abmll"]),
        (["serve", "--device", "gpu0"], ["--device", "cuda:N"]),
        (["serve", "--port", "70000"], ["--port", "0-65535"]),
        (["bank", "stats", "--no-such-flag"], ["unrecognized arguments", "--no-such-flag"]),
        ([], ["COMMAND"]),
    ],
)
def test_usage_errors_exit_2_with_one_line(argv, words, capsys):
    assert run(argv) == 2
    line = one_line(capsys)
    assert line.startswith("loragen") and "--help" in line  # where to look for the valid values
    for word in words:
        assert word in line


@pytest.mark.parametrize(
    ("env", "argv", "words"),
    [
        ({"LORAGEN_TOKEN": "short"}, ["serve"], ["LORAGEN_TOKEN", "5 characters", "at least 8"]),
        ({"LORAGEN_TOKEN": ""}, ["serve"], ["LORAGEN_TOKEN", "is empty", "unset LORAGEN_TOKEN", "disable auth"]),
        ({"LORAGEN_REINDEX_CRON": "61 * * *"}, ["serve"], ["LORAGEN_REINDEX_CRON", "5-field crontab", "0 3 * * *"]),
        ({"LORAGEN_MAX_UPLOAD_BYTES": "64MB"}, ["serve"], ["LORAGEN_MAX_UPLOAD_BYTES='64MB'", "whole number",
                                                           f"LORAGEN_MAX_UPLOAD_BYTES={64 << 20}"]),
        ({"LORAGEN_METHODS": "retrieve,magic"}, ["serve"], ["LORAGEN_METHODS", "'magic'", "retrieve, cvae, abmll"]),
        ({"LORAGEN_BASE_MODELS": "/no/such/model"}, ["serve"], ["LORAGEN_BASE_MODELS", "local transformers"]),
        ({"LORAGEN_GENERATION_WORKERS": "0"}, ["serve"], ["LORAGEN_GENERATION_WORKERS", ">= 1"]),
    ],
)
def test_bad_service_settings_exit_1_naming_the_variable(env, argv, words, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert run(argv) == 1
    line = one_line(capsys)
    assert line.startswith("loragen serve: error: invalid service settings")
    for word in words:
        assert word in line


def test_token_file_missing_or_empty(tmp_path, capsys):
    assert run(["serve", "--token-file", str(tmp_path / "nope")]) == 1
    assert "--token-file" in one_line(capsys)
    (tmp_path / "token").write_text("\n")
    assert run(["serve", "--token-file", str(tmp_path / "token")]) == 1
    assert "token (LORAGEN_TOKEN) is empty" in one_line(capsys)


def test_examples_file_missing_or_malformed(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert run(["generate", "label 0 if Polish, 1 if Czech", "-o", out, "--examples", str(tmp_path / "nope")]) == 1
    line = one_line(capsys)
    assert "--examples" in line and "no such file" in line and '"label"' in line
    examples = tmp_path / "ex.jsonl"
    examples.write_text(json.dumps({"text": "Dzień dobry", "label": 0}) + "\n" + '{"text": "Ahoj"}\n')
    assert run(["generate", "label 0 if Polish, 1 if Czech", "-o", out, "--examples", str(examples)]) == 1
    line = one_line(capsys)
    assert f"{examples}:2:" in line and "label" in line
    examples.write_text("not json\n")
    assert run(["generate", "label 0 if Polish, 1 if Czech", "-o", out, "--examples", str(examples)]) == 1
    assert f"{examples}:1:" in one_line(capsys)
    assert not (tmp_path / "out").exists()


def test_generation_request_errors_are_loragen_errors(tmp_path, capsys):
    """GenerationRequest's own checks (here: one label) reach the user as one line, exit 1."""
    assert run(["generate", "label 0 if Polish", "-o", str(tmp_path / "out"), "--labels", "Polish"]) == 1
    line = one_line(capsys)
    assert line.startswith("loragen generate: error: invalid generation request") and "two" in line


def test_config_files_missing_malformed_or_out_of_range(tmp_path, capsys):
    assert run(["train", "hypernet", "--config", str(tmp_path / "nope.yaml")]) == 1
    assert "no such config file" in one_line(capsys)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("train: [beta\n")
    assert run(["train", "meta", "--config", str(bad_yaml)]) == 1
    assert "not valid YAML" in one_line(capsys)
    bad_value = tmp_path / "beta.json"
    bad_value.write_text(json.dumps({"train": {"beta": -1.0, "lr": "fast"}}))
    assert run(["train", "meta", "--config", str(bad_value)]) == 1
    line = one_line(capsys)
    assert "MetaConfig.train" in line  # the section with the wrong type is named
    bad_value.write_text(json.dumps({"train": {"beta": -1.0, "gamma": -2.0}}))
    assert run(["train", "meta", "--config", str(bad_value)]) == 1
    line = one_line(capsys)
    assert "beta must be >= 0" in line and "gamma must be >= 0" in line  # every problem at once


def test_missing_oracles_directory(tmp_path, capsys):
    assert run(["train", "meta", "--oracles", str(tmp_path / "nope")]) == 1
    assert "--oracles" in one_line(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(tmp_path, capsys):
    adapter = save_peft(minilm_adapter(seed=1), tmp_path / "adapter")
    assert run(["merge", str(adapter), "-o", str(tmp_path / "merged"), "--device", "cuda"]) == 1
    line = one_line(capsys)
    assert "CUDA is not available" in line and "'cpu'" in line
    assert not (tmp_path / "merged").exists()


def test_os_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert run(["demo", "--home", str(tmp_path / "file" / "demo")]) == 1
    line = one_line(capsys)
    assert str(tmp_path / "file") in line and "check the path" in line


def _broken_stats(exc: BaseException):
    def stats(args):
        raise exc

    return stats


def test_a_bug_is_one_line_unless_verbose(tmp_path, monkeypatch, capsys):
    from loragen.api.commands import bank as bank_command

    monkeypatch.setattr(bank_command, "_run_stats", _broken_stats(RuntimeError("boom\nsecond line")))
    argv = ["bank", "stats", "--bank", str(tmp_path / "b.duckdb")]
    assert run(argv) == 1
    assert one_line(capsys) == ("loragen bank stats: internal error: RuntimeError: boom second line "
                                "(rerun with -v for the traceback)")
    assert run([*argv, "-v"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err


def test_ctrl_c_exits_130(tmp_path, monkeypatch, capsys):
    from loragen.api.commands import bank as bank_command

    monkeypatch.setattr(bank_command, "_run_stats", _broken_stats(KeyboardInterrupt()))
    assert run(["bank", "stats", "--bank", str(tmp_path / "b.duckdb")]) == 130
    assert one_line(capsys) == "loragen bank stats: interrupted"
