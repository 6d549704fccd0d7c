"""Reading model outputs in the R1/AZR format: ``<think>…</think><answer>…</answer>``, with fenced
blocks (```python, ```input, ```output, ```message) inside the answer.

Forgiving where a human reader would be (whitespace, letter case of tags, a missing
``<think>``, a bare answer without a fence), strict where ambiguity could let a wrong answer
pass: two ``<answer>`` blocks, or two fenced blocks of the same kind, are format errors.
"""

from __future__ import annotations

import re

MAX_TEXT_CHARS = 200_000
"""Longer outputs are format errors: no real answer is this long, and regexes stay fast."""

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)```", re.DOTALL)
_ALIASES = {"py": "python", "python3": "python", "inputs": "input", "outputs": "output"}


class FormatError(ValueError):
    """The text does not follow the answer format; the message says how."""


def extract_answer(text: str) -> str:
    """The content of the single ``<answer>`` block, stripped."""
    if not isinstance(text, str):
        raise FormatError("output is not text")
    if len(text) > MAX_TEXT_CHARS:
        raise FormatError(f"output longer than {MAX_TEXT_CHARS} characters")
    if "\x00" in text:
        raise FormatError("output contains NUL bytes")
    blocks = _ANSWER.findall(text)
    if not blocks:
        raise FormatError("no <answer>…</answer> block")
    if len(blocks) > 1:
        raise FormatError("more than one <answer> block")
    answer = blocks[0]
    if re.search(r"</?answer>", answer, re.IGNORECASE):
        raise FormatError("nested <answer> tag")
    return answer.strip()


def fenced_blocks(answer: str) -> dict[str, list[str]]:
    """Fenced blocks by (normalised) language tag; untagged blocks are under ``""``."""
    blocks: dict[str, list[str]] = {}
    for tag, body in _FENCE.findall(answer):
        key = _ALIASES.get(tag.lower(), tag.lower())
        blocks.setdefault(key, []).append(body.strip("\r\n"))
    return blocks


def single_block(answer: str, tag: str, *, allow_bare: bool = False) -> str:
    """The one fenced block tagged `tag`. With `allow_bare`, an answer holding no fence at all
    is taken whole, and a single untagged fence is accepted."""
    blocks = fenced_blocks(answer)
    found = blocks.get(tag, [])
    if len(found) > 1:
        raise FormatError(f"more than one ```{tag} block")
    if found:
        return found[0]
    if allow_bare:
        untagged = blocks.get("", [])
        if not blocks:
            if "```" in answer:
                raise FormatError("unbalanced ``` fence")
            return answer.strip()
        if len(untagged) == 1 and len(blocks) == 1:
            return untagged[0]
    raise FormatError(f"no ```{tag} block")


def format_blocks(*blocks: tuple[str, str]) -> str:
    """Render ``(tag, content)`` pairs as fenced blocks, one after the other, the way `fenced_blocks` reads them."""
    return "\n".join(f"```{tag}\n{content}\n```" for tag, content in blocks)


def format_answer(*blocks: tuple[str, str], think: str = "") -> str:
    """Render an answer the way the parser reads it (reference answers, prompt examples)."""
    return f"<think>{think}</think>\n<answer>\n{format_blocks(*blocks)}\n</answer>"
