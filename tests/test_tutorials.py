"""The tutorials run: every `cnnlab` line of their ```sh blocks, in order, in an empty folder.

A ```python block runs too, at its place among the commands (section 16's few lines that
save a test image to a file). The Korean tutorial may add `--lang ko` to a command: it then
pastes the Korean output, the English tutorial the same command's English output.

The ```text block right after an ```sh block is the pasted output of that block's
last command; each of its lines must appear, in order, in what the command
really prints (`…` stands for text left out; a line of `…` alone skips lines).
Spacing and the length of table rules are ignored. For commands whose output
depends on training (train, eval, plot, filters, featuremaps, anything on
runs/...), numbers are compared by place only, except shapes such as 32x28x28;
everything else (the seeds' worked examples, the model's shapes) must match
to the digit.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import missing_data_sets, require_data_sets

from cnnlab.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "docs" / "tutorial.md", ROOT / "docs" / "tutorial.ko.md"]
FENCE = re.compile(r"^```(\w*)\s*$")
RUN_COMMANDS = {"train", "eval", "plot", "filters", "featuremaps", "runs"}
KOREAN = " --lang ko"  # the one difference the Korean tutorial's commands may have
# Runs of one table-drawing character (rule lengths follow the column widths).
RULE = re.compile(r"([─━│┃┏┓┗┛┣┫┳┻╋┡┩╇├┤┼└┘┌┐┬┴])\1+")
SHAPE = re.compile(r"\d+(?: ?x ?\d+)+")
NUMBER = re.compile(r"(?<![A-Za-z0-9_.])\d+(?:[.,]\d+)*(?:e[-+]?\d+)?")
SKIP = "…"


@dataclass
class Step:
    """One command of a tutorial, and the output pasted after it (if any)."""

    command: str
    line: int  # 1-based line in the document
    expected: list[str] = field(default_factory=list)
    python: bool = False  # a ```python block: `command` is its code

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.command, comments=True)[1:]

    @property
    def in_english(self) -> str:
        """The command as the English tutorial writes it."""
        return self.command.replace(KOREAN, "")

    @property
    def korean(self) -> bool:
        return not self.python and KOREAN in self.command

    @property
    def depends_on_training(self) -> bool:
        argv = self.argv
        return argv[0] in RUN_COMMANDS or any(a.startswith("runs/") for a in argv)


def fenced_blocks(text: str) -> list[tuple[str, int, int, list[str]]]:
    """(info, first line, last line, lines) of every ``` block, in order."""
    blocks, current = [], None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if current is None and match:
            current = (match.group(1), number, [])
        elif current is not None and line.strip() == "```":
            info, start, lines = current
            blocks.append((info, start, number, lines))
            current = None
        elif current is not None:
            current[2].append(line)
    assert current is None, f"a ``` block opened on line {current[1]} is never closed"
    return blocks


def tutorial_steps(path: Path) -> list[Step]:
    """The commands of a tutorial, each with the output pasted after it."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    steps: list[Step] = []
    previous = None  # (info, last line) of the block before
    for info, start, end, body in fenced_blocks(text):
        if info == "sh":
            for offset, line in enumerate(body, 1):
                if line.strip().startswith("cnnlab"):
                    steps.append(Step(line.strip(), start + offset))
        elif info == "text" and previous and previous[0] == "sh":
            between = lines[previous[1] : start - 1]
            if not any(s.strip() for s in between):  # nothing but blank lines: it is the output
                steps[-1].expected = body
        elif info == "python":
            steps.append(Step("\n".join(body), start, python=True))
        previous = (info, end)
    return steps


def normalize(line: str, mask: bool) -> str:
    line = " ".join(RULE.sub(r"\1", line).split())
    if not mask:
        return line
    shapes = SHAPE.findall(line)
    parts = [NUMBER.sub("#", part) for part in SHAPE.split(line)]
    return "".join(p + (shapes[i] if i < len(shapes) else "") for i, p in enumerate(parts))


def check_output(step: Step, output: str) -> None:
    """Every pasted line appears, in order, in the real output."""
    mask = step.depends_on_training
    real = [normalize(line, mask) for line in output.splitlines()]
    position = 0
    for pasted in step.expected:
        wanted = normalize(pasted, mask)
        if not wanted or wanted == SKIP:
            continue
        parts = [p.strip() for p in wanted.split(SKIP)]
        for index in range(position, len(real)):
            if _contains_in_order(real[index], parts):
                position = index + 1
                break
        else:
            raise AssertionError(
                f"line {step.line}: `{step.command}` printed no line like\n  {pasted!r}\n"
                f"(compared as {wanted!r}) after line {position} of its output:\n{output}"
            )


def _contains_in_order(line: str, parts: list[str]) -> bool:
    start = 0
    for part in parts:
        found = line.find(part, start)
        if found < 0:
            return False
        start = found + len(part)
    return True


# --- the checks -----------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_command_parses(doc):
    """Quick: each command is one the CLI knows, with options it accepts."""
    steps = tutorial_steps(doc)
    assert len(steps) >= 15
    parser = build_parser()
    for step in (s for s in steps if not s.python):
        try:
            parser.parse_args(step.argv)
        except SystemExit:
            pytest.fail(f"{doc.name} line {step.line}: `{step.command}` does not parse")


def test_both_languages_run_the_same_commands_and_show_the_same_output():
    english, korean = (tutorial_steps(doc) for doc in DOCS)
    assert [s.command for s in english] == [s.in_english for s in korean]
    assert not any(s.korean for s in english)
    for mine, theirs in zip(english, korean, strict=True):
        if theirs.korean:  # Korean output pasted: as many lines, the same numbers where shown
            assert len(mine.expected) == len(theirs.expected), f"line {theirs.line}"
        else:
            assert mine.expected == theirs.expected, f"line {theirs.line}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_key_numbers_are_in_the_pasted_output(doc):
    """What the tutorial teaches with numbers is pasted, so the run below checks it."""
    pasted = "\n".join(line for step in tutorial_steps(doc) for line in step.expected)
    for key in (
        "output: [[4,3,4],[2,4,3],[2,3,4]]",  # seed 001's 5x5 image and 3x3 kernel
        "output: [[4,4],[2,4]]",  # the same at stride 2
        "= 14",  # seed 001: 28x28, F=4, S=2, P=1 -> 14x14x64
        "= 4",  # seed 004: L_in = 6, kernel 3 -> 4
        "max: [[4,5],[3,4]]",
        "64*7*7 = 3136",  # seed 000's flatten
        "32x28x28",
        "64x7x7",
    ):
        assert key in pasted, f"{doc.name} no longer shows {key!r}"


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        (DOCS[0], ("max pooling", "activation relu", "plus the bias", "agrees with torch")),
        (DOCS[1], ("최대 풀링", "활성화 함수 relu", "편향 더하기", "torch와 일치")),
    ],
    ids=lambda v: v.name if isinstance(v, Path) else "",
)
def test_the_cell_walk_pastes_each_layer_and_torchs_verdict(doc, words):
    """Section 16 follows one number down: pool, relu, conv (windows, kernel, bias), pixel,
    each checked against torch, in the tutorial's language."""
    steps = [s for s in tutorial_steps(doc) if not s.python and s.argv[:2] == ["explain", "cell"]]
    layers = [s.argv[s.argv.index("--layer") + 1] for s in steps]
    assert layers[:3] == ["maxpool2", "relu2", "conv2"], layers
    assert "input" in layers
    pasted = "\n".join(line for step in steps for line in step.expected)
    for word in words:
        assert word in pasted, f"{doc.name}: section 16 no longer shows {word!r}"
    assert pasted.count(words[-1]) >= len(steps)  # every step's total checked against torch


def test_output_check_catches_a_wrong_number():
    """The checker itself: a changed digit fails, a trimmed line and masked numbers pass."""
    step = Step("cnnlab explain conv", 1, ["output (3x3)", " 4  3  4", "…", "output: [[4,3,9]…"])
    real = "x\noutput (3x3)\n 4  3  4    \n 2  4  3\noutput: [[4,3,4],[2,4,3],[2,3,4]]\n"
    with pytest.raises(AssertionError, match="printed no line like"):
        check_output(step, real)
    step.expected[-1] = "output: [[4,3,4]…"
    check_output(step, real)
    trained = Step("cnnlab eval runs/tut", 1, ["accuracy 88.20% (441/500)", "│ conv1 │ 32x28x28 │"])
    check_output(trained, "accuracy 91.00% (455/500), loss 0.3\n│ conv1   │ 32x28x28 │\n")
    with pytest.raises(AssertionError):
        check_output(trained, "accuracy 91.00% (455/500)\n│ conv1 │ 32x14x14 │\n")


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_tutorial_runs_and_prints_what_it_shows(doc, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    steps = tutorial_steps(doc)
    for step in steps:  # later steps use the runs of earlier ones: all or nothing
        if not step.python:
            require_data_sets(missing_data_sets(step.argv), f"{doc.name} line {step.line}")
    for step in steps:
        if step.python:
            exec(compile(step.command, f"{doc.name} line {step.line}", "exec"), {})
            continue
        code = main(step.argv)
        captured = capsys.readouterr()
        assert code == 0, f"{doc.name} line {step.line}: `{step.command}` failed:\n{captured.err}"
        check_output(step, captured.out)
    # what the commands say they wrote is there
    made_files = ("runs/tut/model.json", "runs/tut/curves.png", "runs/tut/eval/confusion.png")
    for made in (*made_files, "runs/seed000/model.json", "circle.png"):
        assert (tmp_path / made).is_file(), made
