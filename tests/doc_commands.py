"""The commands the documentation shows a user, read from where the user reads them: the fenced
shell blocks of README.md and docs/*.md, the `make demo` recipe, and every `Example:` paragraph
of every command's --help, found by walking the command tree (a new command is covered without
editing a list)."""

from __future__ import annotations

import inspect
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import typer

SHELL_FENCE = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.M | re.S)
ANY_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
# "Example: cxr serve MODEL   (then open http://...)": a remark after two spaces, not an argument
REMARK = re.compile(r"\s{2,}\(.*\)\s*$")
# `VAR=value` words before the program; the value may be `$(...)` or quoted, with spaces inside
ASSIGNMENTS = re.compile(r"""^(\s*[A-Za-z_]\w*=(\$\([^)]*\)|"[^"]*"|'[^']*'|\S+)\s+)+""")


@dataclass(frozen=True)
class DocCommand:
    where: str  # README.md:51, Makefile:demo, cxr evaluate --help
    text: str  # one logical command line as a shell runs it: continuations joined, no comment
    setup: str = ""  # the block's `export NAME=...` lines above it: the same shell ran them

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text)

    @property
    def words(self) -> list[str]:
        """The words from the program on: no `VAR=value` before it, no `nice -n N`, and
        `.venv/bin/cxr` or `python -m cxr` spelled `cxr`."""
        words = shlex.split(ASSIGNMENTS.sub("", self.text))
        if words[:1] == ["nice"]:
            words = words[3:] if words[1:2] == ["-n"] else words[1:]
        if Path(words[0]).name.startswith("python") and words[1:3] == ["-m", "cxr"]:
            return ["cxr", *words[3:]]
        if Path(words[0]).name == "cxr":
            return ["cxr", *words[1:]]
        return words

    @property
    def verb(self) -> str:
        """What runs: `cxr data inspect`, `cxr train`, `make demo`, `torchrun`."""
        words = self.words
        if words[0] == "make":
            return " ".join(words[:2])
        if words[0] != "cxr":
            return words[0]
        depth = 3 if len(words) > 2 and words[1] in command_groups() else 2
        return " ".join(words[:depth])

    @property
    def ident(self) -> str:
        """A test id that names the place and the command: `README.md:51 cxr evaluate`."""
        return f"{self.where} {self.verb}" if "--help" not in self.where else self.where


def strip_comment(line: str) -> str:
    """The line without a shell `#` comment (a `#` that starts a word, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _logical_lines(block: str, first_line: int, name: str) -> Iterator[DocCommand]:
    """A block is one shell session: an `export` holds for the commands after it."""
    pending, start, exports = "", first_line, []
    for number, line in enumerate(block.splitlines(), first_line):
        code = strip_comment(line)
        if not pending:
            start = number
        if code.endswith("\\"):
            pending += code[:-1].strip() + " "
            continue
        text = (pending + code.strip()).strip()
        pending = ""
        if text.startswith("export "):
            exports.append(text)
        elif text:
            yield DocCommand(f"{name}:{start}", text, "\n".join(exports))


def from_markdown(path: Path, root: Path) -> list[DocCommand]:
    """Every command of the file's shell blocks, numbered by the line it starts on."""
    text = path.read_text()
    name = str(path.relative_to(root))
    found: list[DocCommand] = []
    for block in SHELL_FENCE.finditer(text):
        found += _logical_lines(block.group(1), text.count("\n", 0, block.start(1)) + 1, name)
    return found


def unlabelled_blocks_running_cxr(path: Path) -> list[str]:
    """Fenced blocks that run cxr but are not marked as shell: the suite would miss them."""
    return [
        block.group(2)
        for block in ANY_FENCE.finditer(path.read_text())
        if block.group(1) not in {"bash", "sh", "shell", "console"}
        and re.search(r"(^|/)cxr ", block.group(2), re.M)
    ]


def from_make_recipe(makefile: Path, target: str) -> list[DocCommand]:
    """The commands a `make TARGET` runs, `$(VENV)` spelled as the README spells it (.venv)."""
    lines = makefile.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(DocCommand(f"Makefile:{target}", line.strip().replace("$(VENV)", ".venv")))
    return recipe


def command_groups() -> set[str]:
    from cxr.cli import app

    root = typer.main.get_command(app)
    return {name for name, c in root.commands.items() if hasattr(c, "commands")}


def _help_texts() -> Iterator[tuple[str, str]]:
    from cxr.cli import app

    def walk(command, path: list[str]) -> Iterator[tuple[str, str]]:
        yield " ".join(path), inspect.cleandoc(command.help or "")
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), ["cxr"])


def from_help() -> list[DocCommand]:
    """Every `Example:` of every --help. An example paragraph runs to the next blank line; a line
    starting `then:` is the next command of the same example."""
    found = []
    for name, text in _help_texts():
        commands: list[str] = []
        for paragraph in re.split(r"\n\s*\n", text):
            if not paragraph.startswith("Example:"):
                continue
            commands.append("")
            for line in paragraph.removeprefix("Example:").splitlines():
                line = line.strip()
                if line.startswith("then:"):
                    commands.append(line.removeprefix("then:"))
                else:
                    commands[-1] += " " + line
        for n, command in enumerate(commands, 1):
            where = f"{name} --help" + (f" ({n})" if len(commands) > 1 else "")
            found.append(DocCommand(where, REMARK.sub("", command).strip()))
    return found
