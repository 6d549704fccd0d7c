"""Model text in TensorBoard's text panels stays inert text: rendered through TensorBoard's own Markdown and
sanitiser, a hostile completion yields no image, link, heading or table."""

from __future__ import annotations

import re

import pytest
from flywheel.envs.base import Prompt, Rejection, Task, Verdict
from flywheel.envs.scoring import Answer, Proposal
from flywheel.train.metrics import StepRecord, fenced
from tensorboard.plugin_util import markdown_to_safe_html

HOSTILE = [
    "```\n</code></pre><img src=http://attacker.example/x.png>\n```\n# Heading\n| a | b |\n|---|---|\n| 1 | 2 |",
    '`````` six backticks ``````\n~~~\n<img src="http://attacker.example/y.png">\n~~~\n## Another heading',
    "[click](http://attacker.example) ![pixel](http://attacker.example/p.png) <a href='http://x'>x</a>",
    "ends with backticks ```",
    "\r```\r<img src=http://attacker.example/z.png>\r# Heading after a carriage return",
    "````python\n<script>alert(1)</script>\n````\n### h3\n\x02wzxhzdk:0\x03",
]
ACTIVE = re.compile(r"<(img|a|h[1-6]|table|script)\b", re.IGNORECASE)


@pytest.mark.parametrize("text", HOSTILE)
def test_fenced_model_text_renders_as_one_inert_code_block(text: str) -> None:
    html = markdown_to_safe_html(fenced(text))
    assert not ACTIVE.search(html), html
    assert html.count("<pre>") == 1 and html.startswith("<pre><code>"), html


def test_the_sample_panel_shows_hostile_proposals_and_answers_as_text() -> None:
    prompt = Prompt("propose a task")
    task = Task("code_deduction", {"program": "def f(x):\n    return x", "input": "1"}, "t1")
    record = StepRecord(
        step=1,
        families=["code_deduction"],
        proposals=[Proposal("code_deduction", prompt, text, Rejection("parse_error")) for text in HOSTILE],
        answers=[Answer("code_deduction", task, prompt, text, Verdict("wrong"), -0.5) for text in HOSTILE],
    )
    html = markdown_to_safe_html(record.samples_markdown())
    headings = re.findall(r"<h([1-6])>", html)
    assert headings == ["3", "4"], "only the panel's own step and family headings"
    assert not re.search(r"<(img|a|table|script)\b", html, re.IGNORECASE), html
    shown = 2 * min(len(HOSTILE), 4)  # TEXT_SAMPLES proposals and answers per family
    assert html.count("<pre>") == shown
