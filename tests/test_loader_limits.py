"""The config and roster loaders refuse input that would exhaust them, with one line naming the
file and line: YAML anchors/aliases (a "billion laughs" expands 400 bytes to 9^9 values; an alias
inside its own anchor recurses without end), nesting past any config's shape, and roster values
past the csv module's field limit."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from sagelab.config import MAX_YAML_DEPTH, ConfigError, load_config
from sagelab.roster import parse_roster, read_roster


def laughs(levels: int) -> str:
    """`levels` anchors (a, b, c, ...), each a list of nine aliases of the one before: 9^levels
    strings once expanded."""
    names = "abcdefghi"[:levels]
    lines = [f"{names[0]}: &{names[0]} [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{name}: &{name} [{', '.join([f'*{before}'] * 9)}]" for before, name in itertools.pairwise(names)]
    return "\n".join(lines) + "\n"


ALIAS_ERROR = "YAML anchors and aliases (&name, *name) are not allowed in a SageLab config; write each value out (or use `defaults:`)"


@pytest.mark.parametrize("levels", [6, 9])
def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path: Path, levels: int) -> None:
    # 9 levels is the review's 74 s / 2 GB config; the refusal comes from the event stream, on the
    # first anchor, so it costs the parse of one line. (6 levels is what today's loader expands
    # in seconds before failing on something else: the case that shows this test would fail.)
    path = tmp_path / "bomb.yaml"
    path.write_text(laughs(levels))
    assert len(path.read_bytes()) < 400
    with pytest.raises(ConfigError) as raised:
        load_config({}, path)
    assert str(raised.value) == f"{path} line 1: {ALIAS_ERROR}"


def test_a_recursive_alias_is_refused_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "recursive.yaml"
    path.write_text("environments:\n  dev:\n    notebook: &loop\n      subnet_id: [*loop]\n")
    with pytest.raises(ConfigError) as raised:
        load_config({}, path)
    assert str(raised.value) == f"{path} line 3: {ALIAS_ERROR}"


def test_an_anchor_alone_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "anchor.yaml"
    path.write_text("environments:\n  dev: {}\n  prod: &p {}\n")
    with pytest.raises(ConfigError, match=rf"^{path} line 3: YAML anchors and aliases"):
        load_config({}, path)


def test_nesting_deeper_than_any_config_is_refused(tmp_path: Path) -> None:
    # PyYAML composes recursively: 5,000 nested lists overflowed Python's stack (RecursionError).
    path = tmp_path / "deep.yaml"
    path.write_text("environments:\n  dev:\n    notebook: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError) as raised:
        load_config({}, path)
    assert str(raised.value) == f"{path} line 3: nested more than {MAX_YAML_DEPTH} levels deep; a SageLab config nests at most a few"


def test_an_ordinary_config_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("defaults:\n  notebook: {security_group_ids: [sg-1]}\nenvironments:\n  dev: {notebook: {subnet_id: subnet-1}}\n")
    assert load_config({}, path).environments[0].notebook.security_group_ids == ("sg-1",)


def test_an_oversize_roster_value_is_refused_naming_its_line(tmp_path: Path) -> None:
    # The csv module raises csv.Error past 131,072 characters in one value.
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,email\nalice,alice@x.edu\nbob,b@x.edu\ncarol," + "c" * 140_000 + "@x.edu\n")
    with pytest.raises(ConfigError) as raised:
        read_roster(roster)
    assert str(raised.value) == (
        f"{roster} line 4: not a valid roster row: a value is longer than 131072 characters (expected a student id, an email, an account id and a region)"
    )


def test_an_oversize_header_is_refused_naming_line_1() -> None:
    with pytest.raises(ConfigError, match=r"^roster\.csv line 1: not a valid roster row: a value is longer than"):
        parse_roster("student_id," + "e" * 140_000 + "\nalice,a@x.edu\n")
