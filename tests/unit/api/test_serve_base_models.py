"""Which base models `loragen serve` accepts: the listed ones plus, unless turned off, those of its generators and of
its bank's adapters; the flag, the variable and the help say so."""

from __future__ import annotations

import pytest

from loragen.api.cli import build_parser, main
from loragen.api.commands.serve import settings_from_args
from loragen.api.settings import Settings
from loragen.bank.base_model import PACKAGED
from loragen.bank.errors import ConfigError


def test_auto_base_models_from_flag_and_environment(monkeypatch, tiny_llama_dir):
    monkeypatch.delenv("LORAGEN_AUTO_BASE_MODELS", raising=False)
    assert Settings().auto_base_models is True
    for raw, value in (("0", False), ("false", False), ("yes", True), ("1", True)):
        assert Settings.from_env({"LORAGEN_AUTO_BASE_MODELS": raw}).auto_base_models is value
    with pytest.raises(ConfigError, match="LORAGEN_AUTO_BASE_MODELS='maybe' is not true or false"):
        Settings.from_env({"LORAGEN_AUTO_BASE_MODELS": "maybe"})
    args = build_parser().parse_args(["serve", "--no-auto-base-models", "--base-models", f"minilm,{tiny_llama_dir}"])
    settings = settings_from_args(args)
    assert settings.auto_base_models is False and settings.base_models == ("minilm", str(tiny_llama_dir))
    assert settings_from_args(build_parser().parse_args(["serve"])).auto_base_models is True


def test_serve_help_says_which_base_models_are_accepted(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--no-auto-base-models" in out and "LORAGEN_AUTO_BASE_MODELS=0" in out
    assert "base models of the loaded generators' checkpoints and of the bank's adapters" in out
    assert all(m.aliases[-1] in out and m.id in out for m in PACKAGED) and "local transformers directory" in out
