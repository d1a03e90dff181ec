"""The CLI's command table and its parser stay in sync; every command has help a newcomer can follow."""

from __future__ import annotations

from loragen.api.cli import COMMANDS, build_parser


def test_every_command_in_the_table_is_registered_with_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)
    for name, subparser in sub.choices.items():
        assert subparser.description or subparser.format_help(), name
        assert "usage:" in subparser.format_help()
