"""docs/operators.md: every code block says which test runs it or why it cannot run here, the tests
it names exist, and every `deeplens` command in it parses with the real CLI (options and arguments)."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import click

from deeplens.cli import main

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "operators.md"
BLOCK = re.compile(r"^```[a-z]*\n(.*?)^```$", re.S | re.M)
TEST_REFERENCE = re.compile(r"(tests/[\w/]+\.py)(?:::(\w+))?|::(\w+)")


def blocks() -> list[str]:
    found = BLOCK.findall(GUIDE.read_text())
    assert found, "no code blocks found in docs/operators.md"
    return found


def test_every_block_is_run_by_a_test_or_says_why_not():
    for block in blocks():
        first = block.splitlines()[0]
        assert first.startswith(("# run by: tests/", "# not runnable here: ")), first
        current = None
        for path, name, same_file_name in TEST_REFERENCE.findall(first):
            current = path or current
            assert (ROOT / current).is_file(), current
            name = name or same_file_name
            if name:
                defined = {node.name for node in ast.walk(ast.parse((ROOT / current).read_text()))
                           if isinstance(node, ast.FunctionDef)}
                assert name in defined, f"{current} has no test {name}"


def test_every_deeplens_command_in_the_guide_parses():
    commands = [line.rstrip(" &") for block in blocks() for line in block.splitlines() if line.startswith("deeplens ")]
    assert len(commands) >= 10
    for command in commands:
        words = shlex.split(command)[1:]
        context = click.Context(main, info_name="deeplens")
        command_object = main
        while isinstance(command_object, click.Group):  # the guide gives no group options
            name, words = words[0], words[1:]
            command_object = command_object.get_command(context, name)
            assert command_object is not None, f"no command {name!r}: {command}"
            context = click.Context(command_object, info_name=name, parent=context)
        command_object.make_context(context.info_name, words, parent=context.parent)  # raises on a bad option
