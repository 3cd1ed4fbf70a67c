"""docs/cli.md lists every command and every option the parser has, and nothing else;
every option has help text."""

from __future__ import annotations

import argparse
import pathlib
import re
from collections.abc import Iterator

import pytest

from roomsecrets.cli import _build_parser

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "cli.md"
#: Taken by every client command; the page lists them once, in their own section.
CLIENT_FLAGS = {"--server", "--token", "--room", "--allow-insecure-http"}
CLIENT_SECTION = "Client commands: `--server`, `--token`, `--room`, `--allow-insecure-http`"
CLIENT_GROUPS = {"oauth2", "participant", "secret", "prompts"}


def leaf_commands() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(``"oauth2 request"``, its parser) for every command that runs something."""

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> Iterator[tuple[str, argparse.ArgumentParser]]:
        groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not groups:
            yield " ".join(path), parser
        for group in groups:
            for name, child in group.choices.items():
                yield from walk(child, [*path, name])

    yield from walk(_build_parser(), [])


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {
        flag
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction)
        for flag in action.option_strings
    }


def sections() -> dict[str, str]:
    """Heading text -> the section's body."""
    parts = re.split(r"^## (.+)$", PAGE.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def table_flags(body: str) -> set[str]:
    return set(re.findall(r"^\| `(--[a-z-]+)", body, flags=re.MULTILINE))


COMMANDS = dict(leaf_commands())


def test_every_command_has_a_section_and_every_section_a_command() -> None:
    documented = {
        heading[len("`roomsecrets ") : -1]
        for heading in sections()
        if heading.startswith("`roomsecrets ")
    }
    assert documented == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_table_lists_exactly_the_command_s_options(command: str) -> None:
    parser = COMMANDS[command]
    expected = options(parser)
    if command.split()[0] in CLIENT_GROUPS:
        assert expected >= CLIENT_FLAGS, "a client command lost a common flag"
        expected -= CLIENT_FLAGS
    assert table_flags(sections()[f"`roomsecrets {command}`"]) == expected


def test_the_client_flags_are_documented_once_for_all() -> None:
    assert table_flags(sections()[CLIENT_SECTION]) == CLIENT_FLAGS


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_has_help_text(command: str) -> None:
    missing = [
        action.option_strings[0]
        for action in COMMANDS[command]._actions
        if action.option_strings and not action.help
    ]
    assert missing == []
