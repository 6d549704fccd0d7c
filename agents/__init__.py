"""The language-model agent that plays both proposer and solver.

`load_policy` loads a model and tokenizer (`TINY_MODEL` is a tiny model built locally, no network);
`Agent` renders family prompts and samples completions; `configure_threads` sets torch's CPU threads.
"""

from flywheel.agents.agent import INSTRUCTION, PLAIN_TEMPLATE, R1_TEMPLATE, TEMPLATES, Agent
from flywheel.agents.model import (
    TINY_MODEL,
    build_tiny_model,
    configure_threads,
    is_tiny_model_dir,
    load_policy,
    load_tokenizer,
)

__all__ = [
    "INSTRUCTION",
    "PLAIN_TEMPLATE",
    "R1_TEMPLATE",
    "TEMPLATES",
    "TINY_MODEL",
    "Agent",
    "build_tiny_model",
    "configure_threads",
    "is_tiny_model_dir",
    "load_policy",
    "load_tokenizer",
]
