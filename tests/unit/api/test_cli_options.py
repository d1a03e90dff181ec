"""Shared options are declared once (api/commands/_options.py), the training commands take the same flags, and the
method table and the base models each come from one module."""

from __future__ import annotations

import argparse
import re
import typing
from importlib.metadata import version
from pathlib import Path

import pytest

from loragen.api import generators, schemas, settings
from loragen.api.cli import build_parser, main
from loragen.bank import paths
from loragen.bank.base_model import PACKAGED

COMMANDS_DIR = Path(generators.__file__).parent / "commands"
SHARED = ("--bank", "--base-model", "--device", "--checkpoint", "--threads", "--seed", "--no-progress",
          "--no-progress-bar", "--accelerator", "--devices", "--strategy", "--max-epochs", "--precision", "-v")


def _parsers(parser: argparse.ArgumentParser, prog: str = "loragen"):
    """Every (sub)parser of the CLI with its full command, e.g. ("loragen bank stats", parser)."""
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{prog} {name}")


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


def _parser(*words: str) -> argparse.ArgumentParser:
    return dict(_parsers(build_parser()))[" ".join(("loragen", *words))]


def test_shared_options_are_declared_only_in_options_module():
    offenders = []
    for path in sorted(COMMANDS_DIR.glob("*.py")):
        if path.name == "_options.py":
            continue
        for flag in SHARED:
            if re.search(rf"add_argument\(\s*\"{re.escape(flag)}\"", path.read_text()):
                offenders.append(f"{path.name}: {flag}")
    assert not offenders, "declare these with api/commands/_options.py: " + ", ".join(offenders)


def test_each_shared_option_has_one_help_text_everywhere():
    helps: dict[str, set[str]] = {}
    for _, parser in _parsers(build_parser()):
        for flag in ("--bank", "--device", "--no-progress-bar", "--verbose"):
            action = _options(parser).get(flag)
            if action is not None:
                text = action.help() if callable(action.help) else action.help
                helps.setdefault(flag, set()).add(re.sub(r"default: \w+", "default", text))
    assert set(helps) == {"--bank", "--device", "--no-progress-bar", "--verbose"}
    assert {flag: len(texts) for flag, texts in helps.items()} == dict.fromkeys(helps, 1)
    bank_commands = [prog for prog, p in _parsers(build_parser()) if "--bank" in _options(p)]
    assert len(bank_commands) >= 12  # bank add/import/export/search/reindex/stats/build, eval, generate, serve, train x2


def test_train_hypernet_and_meta_take_the_same_core_flags_with_the_same_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAGEN_HOME", str(tmp_path))
    hypernet, meta = _parser("train", "hypernet"), _parser("train", "meta")
    core = {"--bank", "-o", "--output", "--config", "--seed", "--lr", "--max-steps", "--threads", "--no-progress-bar",
            "--no-progress", "-v"}
    h, m = _options(hypernet), _options(meta)
    assert core <= set(h) and core <= set(m)
    for flag in core:
        assert (h[flag].default, h[flag].type, h[flag].dest) == (m[flag].default, m[flag].type, m[flag].dest), flag
        if flag not in ("-o", "--output", "--config"):  # these name the target's checkpoint folder / config class
            assert h[flag].help == m[flag].help, flag
    from loragen.api.commands._options import train_output

    for target, parser in (("hypernet", hypernet), ("meta", meta)):
        args = parser.parse_args([])  # -o is optional for both
        assert train_output(args, target) == paths.checkpoint_dir(target) == tmp_path / target
    # flags for one target only say why in their group's title/description
    for parser, only in ((hypernet, "--accelerator"), (meta, "--beta")):
        group = next(g for g in parser._action_groups if any(only in a.option_strings for a in g._group_actions))
        assert "only" in f"{group.title} {group.description}"


def test_train_meta_flags_override_its_config():
    from loragen.api.commands import train_meta

    args = _parser("train", "meta").parse_args(["--max-steps", "7", "--beta", "0.01", "--seed", "3", "--lr", "0.1"])
    config = train_meta.load_config(args)
    assert (config.train.steps, config.train.beta, config.train.seed, config.train.lr) == (7, 0.01, 3, 0.1)
    assert train_meta.load_config(_parser("train", "meta").parse_args(["--steps", "5"])).train.steps == 5  # old name


def test_lightning_flags_pass_through():
    from loragen.api.commands._options import trainer_kwargs

    args = _parser("train", "hypernet").parse_args(["--devices", "2", "--strategy", "ddp", "--max-steps", "4",
                                                    "--no-progress"])
    kwargs = trainer_kwargs(args)
    assert kwargs["devices"] == 2 and kwargs["strategy"] == "ddp" and kwargs["max_steps"] == 4
    assert kwargs["enable_progress_bar"] is False and "max_epochs" not in kwargs


def test_one_method_table():
    assert generators.METHODS == tuple(generators.REGISTRY)
    assert settings.METHODS is generators.METHODS and settings.Settings().methods == generators.METHODS
    assert typing.get_args(schemas.Method) == generators.METHODS
    assert tuple(_options(_parser("generate"))["--method"].choices) == generators.METHODS
    source = "\n".join(p.read_text() for p in COMMANDS_DIR.glob("*.py"))
    assert '"retrieve", "cvae"' not in source and '"cvae", "abmll"' not in source


def test_serve_help_lists_methods_and_packaged_base_models(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for model in PACKAGED:
        assert model.id in out and model.aliases[-1] in out
    assert "retrieve, cvae, abmll" in out


def test_base_model_help_lists_packaged_models(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert all(m.aliases[-1] in out for m in PACKAGED) and "local transformers directory" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    lines = capsys.readouterr().out.strip().splitlines()  # the version, then the shipped generators (none here)
    assert exit_.value.code == 0 and lines[0] == f"loragen {version('loragen')}"
    assert lines[1:] == ["shipped generators: none (train your own: `loragen train hypernet`, or `loragen demo`)"]


def test_verbose_works_before_and_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["bank", "stats"]).verbose == 0
    assert parser.parse_args(["-v", "bank", "stats"]).verbose == 1
    assert parser.parse_args(["bank", "stats", "-vv"]).verbose == 2
