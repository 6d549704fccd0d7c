"""The model card of a run (``OUTPUT_DIR/README.md``): base model, families, held-out figures, recipe, rails.

Written with `huggingface_hub.ModelCard` (the API TRL's own cards use) whenever TRL saves a checkpoint, and
once more when training ends, so it shows the last held-out evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from huggingface_hub import ModelCard, ModelCardData

if TYPE_CHECKING:
    from flywheel.train.config import FlywheelConfig

TAGS = ["flywheel", "self-play", "absolute-zero", "trl", "grpo"]


def model_card(args: FlywheelConfig, global_step: int, eval_history: Sequence[Mapping[str, Any]]) -> ModelCard:
    """The card of a run trained for `global_step` steps; `eval_history` holds its held-out evaluations."""
    from flywheel.agents import TINY_MODEL
    from flywheel.train.evaluate import format_comparison
    from flywheel.train.metrics import fenced, recipe_yaml

    base = args.model_name_or_path
    hub_base = base if base != TINY_MODEL and not Path(base).is_dir() else None
    data = ModelCardData(
        base_model=hub_base, library_name="transformers", model_name=Path(args.output_dir).name, tags=TAGS
    )
    if eval_history:
        first, last = eval_history[0], eval_history[-1]
        held_out = (
            f"Accuracy on the held-out sets at step {first['step']} (after the warm start) and step "
            f"{last['step']}:\n\n{fenced(format_comparison(first, last))}"
        )
    else:
        held_out = "No held-out evaluation ran (set `heldout_per_family` or `eval_files`; see docs/evaluation.md)."
    rails = yaml.safe_dump(args.rails_config().to_dict(), sort_keys=True)
    body = f"""# {data.model_name}

`{base}` trained by Flywheel self-play (Absolute Zero style): the model proposes tasks,
sandboxed verifiers and a math checker validate them and grade its answers, and one GRPO update (TRL's
`GRPOTrainer`) trains both roles.

- **Base model:** `{base}`
- **Task families:** {", ".join(f"`{name}`" for name in args.families)}
- **Self-play steps:** {global_step} ({args.advantage_estimator} advantages, {args.num_generations} samples per prompt)

## Held-out evaluation

{held_out}

## Recipe

{fenced(recipe_yaml(args), "yaml")}

## Rails

{fenced(rails, "yaml")}
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
