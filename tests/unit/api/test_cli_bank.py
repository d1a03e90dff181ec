"""`loragen bank ...` end to end through the real CLI entry point, on a real bank file."""

from __future__ import annotations

import json

import pytest

from loragen.api.cli import build_parser, main
from loragen.bank.lora import load_peft, save_peft
from tests.unit.bank._bank_util import minilm_adapter


@pytest.fixture
def adapters(tmp_path):
    root = tmp_path / "adapters"
    for i in range(3):
        save_peft(minilm_adapter(seed=i, r=2, layers=(0,)).with_metadata(description=f"sentences about topic {i}"),
                  root / f"a{i}")
    return root


def test_bank_commands_round_trip(tmp_path, adapters, capsys, monkeypatch):
    monkeypatch.setenv("LORAGEN_HOME", str(tmp_path / "home"))
    assert main(["bank", "add", str(adapters / "a0"), "--description", "detect volcano news"]) == 0
    first = capsys.readouterr().out.strip()
    assert (tmp_path / "home" / "bank.duckdb").is_file()  # default path from LORAGEN_HOME
    assert main(["bank", "import", str(adapters), "--skip-duplicates"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].split("\t")[0] == first  # a0 was already there: its id comes back
    assert main(["bank", "search", "volcano", "-k", "2", "--json"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert hits[0]["id"] == first and len(hits) == 2
    assert main(["bank", "search", "--adapter", str(adapters / "a2"), "-k", "1"]) == 0
    assert capsys.readouterr().out.split("\t")[1] == lines[2].split("\t")[0]
    assert main(["bank", "export", first, str(tmp_path / "out")]) == 0
    capsys.readouterr()
    exported, original = load_peft(tmp_path / "out"), load_peft(adapters / "a0")
    m = original.modules[0]
    assert (exported.delta_weight(m) - original.delta_weight(m)).abs().max() < 1e-5
    assert main(["bank", "reindex"]) == 0
    assert json.loads(capsys.readouterr().out)["text"]["version"] == 1
    assert main(["bank", "stats", "--bank", str(tmp_path / "home" / "bank.duckdb")]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["adapters"] == 3 and stats["indexes"]["weight"]["indexed"] == 3


def test_bank_errors_exit_1_with_the_reason(tmp_path, adapters, capsys):
    bank = str(tmp_path / "b.duckdb")
    assert main(["bank", "add", str(adapters / "a1"), "--bank", bank]) == 0
    existing = capsys.readouterr().out.strip()
    assert main(["bank", "add", str(adapters / "a1"), "--bank", bank]) == 1
    assert existing in capsys.readouterr().err
    assert main(["bank", "export", "no-such-id", str(tmp_path / "x"), "--bank", bank]) == 1
    assert "no adapter 'no-such-id'" in capsys.readouterr().err


def test_bank_parser_lists_every_subcommand():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["bank"]
    bank_sub = next(a for a in sub._actions if a.dest == "bank_command")
    assert {"add", "import", "export", "search", "reindex", "stats"} <= set(bank_sub.choices)


def test_bank_search_needs_exactly_one_of_query_or_adapter(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bank", "search", "--bank", str(tmp_path / "b.duckdb")])
    assert exc.value.code == 2 and "either a QUERY or --adapter" in capsys.readouterr().err
