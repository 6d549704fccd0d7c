"""Does a prompt without instructions let the tiny model learn to solve faster? Solver-only supervised training.

    .venv/bin/python benchmarks/solver_sft.py --prompts terse|full [--minutes 6] [--family code_deduction]
        [--examples 3000] [--rounds 6]

Trains a fresh tiny model (`flywheel/tiny`) with the warm start's loop (`flywheel.train.warmup.train_format`,
batch 8, lr 0.005) on `--examples` verified solver examples of one family for `--minutes`, and after each of
`--rounds` equal parts prints, as a JSON line, the steps done, the recent loss and the greedy accuracy
(`flywheel.train.evaluate.evaluate`) on 60 unseen tasks of the training distribution and on 60 held-out tasks
(`flywheel.envs.heldout`, validation seed 1000). `terse` is the laptop recipe's prompts (the plain template,
the family's `terse_prompts`), `full` the AZR-style ones (r1, every instruction). Run the two side by side to
compare them under the same load.
"""

from __future__ import annotations

import argparse
import json
import random
import time

from flywheel.agents import Agent, build_tiny_model, configure_threads, load_policy

HELDOUT_SEED = 1000
TASK_SEED = 12345
EVAL_TASKS = 60


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", choices=["terse", "full"], required=True, help="which prompts to train on")
    parser.add_argument("--minutes", type=float, default=6.0, help="training time, evaluation excluded")
    parser.add_argument("--family", default="code_deduction", help="the family whose solver is trained")
    parser.add_argument("--examples", type=int, default=3000, help="verified solver examples to train on")
    parser.add_argument("--rounds", type=int, default=6, help="evaluations, one after each equal part")
    options = parser.parse_args()

    from flywheel.envs import make_family
    from flywheel.envs.heldout import heldout_tasks
    from flywheel.train.evaluate import evaluate
    from flywheel.train.warmup import WarmupExample, family_examples, train_format

    configure_threads()
    terse = options.prompts == "terse"
    family = make_family(options.family, {"terse_prompts": True} if terse else None)
    model, tokenizer = load_policy(build_tiny_model(), dtype="float32", device="cpu")
    agent = Agent(model, tokenizer, template="plain" if terse else "r1", max_new_tokens=32)

    def solver_examples(count: int, seed: int) -> list[WarmupExample]:
        return [e for e in family_examples(family, agent, count, 2, random.Random(seed)) if e.role == "solve"]

    examples = solver_examples(options.examples, 0)
    trained = {example.task.task_id for example in examples}
    unseen = [e.task for e in solver_examples(5 * EVAL_TASKS, TASK_SEED) if e.task.task_id not in trained]
    task_sets = {
        "unseen": unseen[:EVAL_TASKS],
        "heldout": heldout_tasks({family.name: family}, EVAL_TASKS, HELDOUT_SEED),
    }
    tokens = sum(len(tokenizer(e.prompt)["input_ids"]) for e in examples) / len(examples)
    print(json.dumps({"prompts": options.prompts, "examples": len(examples), "prompt_tokens": round(tokens, 1)}))

    steps = 0
    for round_ in range(options.rounds):
        start = time.monotonic()
        losses = train_format(
            model,
            tokenizer,
            examples,
            steps=10**9,
            batch_size=8,
            learning_rate=0.005,
            seed=round_,
            seconds=options.minutes * 60 / options.rounds,
        )
        steps += len(losses)
        train_seconds = time.monotonic() - start
        model.eval()
        summary = evaluate(agent, {family.name: family}, task_sets, max_new_tokens=32).summary
        model.train()
        accuracy = {source: entry["accuracy"] for source, entry in summary["per_source"].items()}
        recent = losses[-20:]
        print(
            json.dumps(
                {"steps": steps, "train_s": round(train_seconds, 1), "loss": round(sum(recent) / len(recent), 3)}
                | {name: round(value, 3) for name, value in accuracy.items()}
            ),
            flush=True,
        )
    family.verifiers.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
