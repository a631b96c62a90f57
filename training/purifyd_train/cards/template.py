"""Fills the cards' Markdown templates (templates/): the prose lives there, the code supplies values."""
from __future__ import annotations

from pathlib import Path
from string import Template

TEMPLATES = Path(__file__).with_name("templates")


def fill(template: str, /, **values: object) -> str:
    """templates/<template>.md with its $placeholders filled, without the file's final newline; KeyError names a
    placeholder left without a value."""
    return Template((TEMPLATES / f"{template}.md").read_text()).substitute(values).removesuffix("\n")
