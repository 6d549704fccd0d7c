"""How often a real pretrained model's proposals and answers parse, under the R1 template and the chat template.

    .venv/bin/python benchmarks/real_model_parse.py [--model flywheel/smollm2] [--prompts 8] [--out samples.jsonl]

For every family, `--prompts` proposer prompts (K references from a pool of seed tasks and the family's
validated synthetic proposals) and `--prompts` solver prompts over that pool, each rendered under both
templates and completed once (greedy by default; `--temperature` samples). Printed per family, role and
template: the share that parses (a proposal not rejected as `parse_error`, an answer not a `format_error`)
and the share that is valid / correct, plus generation tokens per second. `--out` writes every completion
with its verdict, to read what the parsers refuse. Needs the converted model (docs/real_model.md).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flywheel/smollm2")
    parser.add_argument(
        "--families",
        nargs="+",
        default=["code_deduction", "code_abduction", "code_induction", "math_deduction", "math_abduction"],
    )
    parser.add_argument("--templates", nargs="+", default=["r1", "chat"])
    parser.add_argument("--prompts", type=int, default=8, help="proposer and solver prompts per family and template")
    parser.add_argument("--proposer_tokens", type=int, default=256)
    parser.add_argument("--solver_tokens", type=int, default=160)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--k_references", type=int, default=2)
    parser.add_argument("--out", type=Path, help="JSONL of every completion and its verdict")
    options = parser.parse_args()

    from flywheel.agents import Agent, configure_threads, load_policy
    from flywheel.envs import Task, make_family

    configure_threads()
    model, tokenizer = load_policy(options.model, dtype="float32", device="cpu")
    rng = random.Random(0)
    rows: list[dict[str, object]] = []
    totals: dict[tuple[str, str, str], list[tuple[bool, bool]]] = defaultdict(list)
    tokens, seconds = 0, 0.0
    for name in options.families:
        family = make_family(name)
        pool = list(family.seed_tasks())
        synthetic = [
            family.proposer_prompt(rng.sample(pool, min(len(pool), 2)), rng) for _ in range(4 * options.prompts)
        ]
        texts = [family.warmup_proposal(prompt, rng) for prompt in synthetic]
        pool += [r for r in family.propose([t or "" for t in texts], synthetic) if isinstance(r, Task)]
        proposer_prompts = [
            family.proposer_prompt(rng.sample(pool, min(len(pool), options.k_references)), rng)
            for _ in range(options.prompts)
        ]
        solver_tasks = [rng.choice(pool) for _ in range(options.prompts)]
        solver_prompts = [family.solver_prompt(task) for task in solver_tasks]
        for template in options.templates:
            for role, prompts, budget in (
                ("propose", proposer_prompts, options.proposer_tokens),
                ("solve", solver_prompts, options.solver_tokens),
            ):
                agent = Agent(
                    model, tokenizer, template=template, max_new_tokens=budget, temperature=options.temperature
                )
                rendered = [agent.render(prompt, role) for prompt in prompts]
                start = time.perf_counter()
                raw = [samples[0] for samples in agent.generate(rendered, seed=0, batch_size=options.batch)]
                seconds += time.perf_counter() - start
                tokens += sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in raw)
                completions = [agent.completion_text(text) for text in raw]
                if role == "propose":
                    results = family.propose(completions, prompts)
                    outcomes = [
                        (isinstance(r, Task) or r.reason != "parse_error", isinstance(r, Task)) for r in results
                    ]
                    verdicts = [r.task_id if isinstance(r, Task) else f"{r.reason}: {r.detail}" for r in results]
                else:
                    checked = family.verify(solver_tasks, completions)
                    outcomes = [(v.status != "format_error", v.correct) for v in checked]
                    verdicts = [f"{v.status}: {v.reason}" for v in checked]
                totals[(name, role, template)] += outcomes
                rows += [
                    {"family": name, "role": role, "template": template, "completion": text, "verdict": verdict}
                    for text, verdict in zip(completions, verdicts, strict=True)
                ]
                parsed = sum(p for p, _ in outcomes) / len(outcomes)
                good = sum(g for _, g in outcomes) / len(outcomes)
                print(f"{name:16s} {role:8s} {template:5s} parses {parsed:5.2f}  valid/correct {good:5.2f}", flush=True)
    for template in options.templates:
        for role in ("propose", "solve"):
            outcomes = [o for (_, r, t), values in totals.items() if r == role and t == template for o in values]
            parsed = sum(p for p, _ in outcomes) / len(outcomes)
            good = sum(g for _, g in outcomes) / len(outcomes)
            print(f"ALL {role:8s} {template:5s} parses {parsed:5.2f}  valid/correct {good:5.2f}  (n={len(outcomes)})")
    print(
        f"generation: {tokens} new tokens in {seconds:.0f} s = {tokens / seconds:.1f} tokens/s (batch {options.batch})"
    )
    if options.out:
        options.out.write_text("".join(json.dumps(row) + "\n" for row in rows))


if __name__ == "__main__":
    main()
