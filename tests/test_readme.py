"""The README's test command is the one CI runs."""

import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]


def readme_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    return [line.strip() for line in blocks[0].splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command():
    test_command = [c for c in readme_commands() if "pytest" in c]
    assert len(test_command) == 1
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command[0] in [line.strip() for line in ci]


def test_the_readme_opens_with_the_demo_then_the_tests_and_ci_runs_both():
    commands = readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("roomsecrets demo")
    assert "pytest" in commands[1]
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert commands[0] in ci
