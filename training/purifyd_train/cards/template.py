"""Fills the cards' templates (templates/): the prose lives there, the code supplies values."""
from __future__ import annotations

import functools
import tomllib
from pathlib import Path
from string import Template

TEMPLATES = Path(__file__).with_name("templates")


def fill(template: str, /, **values: object) -> str:
    """templates/<template>.md with its $placeholders filled, without the file's final newline; KeyError names a
    placeholder left without a value."""
    return Template((TEMPLATES / f"{template}.md").read_text()).substitute(values).removesuffix("\n")


@functools.cache
def _phrases() -> dict[str, dict[str, str]]:
    return tomllib.loads((TEMPLATES / "phrases.toml").read_text())


def phrase(section: str, name: str, /, **values: object) -> str:
    """The phrase [section] name of templates/phrases.toml with its $placeholders filled."""
    return Template(_phrases()[section][name]).substitute(values)
