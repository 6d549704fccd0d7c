"""One scoring path: the same proposer and solver texts, fed to the Gymnasium environments and to a real
`FlywheelTrainer`'s validate / estimate / solve phases, get the same verdicts, rewards, solve rates and buffer
effects. The solver is scripted (the same answers for the same prompt in both), so only scoring is compared."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from flywheel.envs import Prompt
from flywheel.envs.gym_envs import ProposeVectorEnv, SolveEnv
from flywheel.envs.parsing import format_answer
from flywheel.train.metrics import StepRecord
from flywheel.train.run import build_trainer, parse_config

REPO = Path(__file__).resolve().parents[1]
N_SAMPLES = 3
PROPOSALS = {
    "code_deduction": [
        format_answer(("python", "def f(xs, k):\n    return xs[k:] + xs[:k]"), ("input", "[1, 2, 3], 2")),
        format_answer(("python", "def f(xs, k):\n    return xs[k:] + xs[:k]"), ("input", "[1, 2, 3], 2")),  # again
        format_answer(("python", "def f(a):\n    return a"), ("input", "[1, 2, 3]")),  # a seed: duplicate
        format_answer(("python", "def f(a):\n    return sorted(a)"), ("input", "[2, 1]")),
        format_answer(("python", "def f(a) return a"), ("input", "1")),  # syntax error
        "no answer at all",
    ],
    "math_deduction": [
        format_answer(("operation", "expand"), ("expression", "(x + 2)**2")),
        format_answer(("operation", "differentiate"), ("expression", "x**3")),
        format_answer(("operation", "teleport"), ("expression", "x")),
        "<answer>```operation\nexpand\n```</answer>",
    ],
}
ANSWERS = (  # the j-th of n attempts at any task: right for the first code and the first math task above
    "<answer>```output\n[3, 1, 2]\n```</answer>",
    "<answer>```answer\nx**2 + 4*x + 4\n```</answer>",
    "<think>hmm",
)


def scripted(prompt: str, j: int) -> str:
    """The `j`-th attempt at `prompt`: the same in both paths, whatever order the prompts come in."""
    return ANSWERS[j % len(ANSWERS)]


def sampler(prompts: Sequence[Prompt], n: int) -> list[str]:
    return [scripted(prompt.text, j) for prompt in prompts for j in range(n)]


def env_solver(texts: list[str]) -> list[str]:
    """The same answers for a Propose env's solver, which gets each prompt repeated n times in a row."""
    return [scripted(text, i % N_SAMPLES) for i, text in enumerate(texts)]


@pytest.fixture(scope="module")
def trainer(tmp_path_factory: pytest.TempPathFactory):
    # fmt: off
    config = parse_config([
        "--config", str(REPO / "recipes" / "laptop.yaml"),
        "--output_dir", str(tmp_path_factory.mktemp("run")),
        "--families", "code_deduction", "math_deduction",
        "--n_solver_samples", str(N_SAMPLES), "--warm_start_steps", "0", "--report_to", "none",
    ])
    # fmt: on
    trainer = build_trainer(config, None)
    trainer._sample_solutions = sampler  # the scripted solver instead of the policy; scoring stays real
    yield trainer
    trainer.game.close()


def test_proposals_score_the_same_in_the_envs_and_the_trainer(trainer):
    game = trainer.game
    record = StepRecord(step=1, families=list(game.families))
    asked = [(name, game.proposer_prompts(name, 1)[0]) for name, texts in PROPOSALS.items() for _ in texts]
    texts = [text for name in PROPOSALS for text in PROPOSALS[name]]
    proposals = trainer._validate(asked, texts, record)
    trainer._estimate(proposals, record)

    for name, family_texts in PROPOSALS.items():
        vec = ProposeVectorEnv(
            num_envs=len(family_texts),
            family=game.families[name],
            verifiers=game.families[name].verifiers,
            reward_config=game.rewards,
            solver=env_solver,
            n_solver_samples=N_SAMPLES,
        )
        vec.reset(seed=0)
        _, rewards, _, _, infos = vec.step(family_texts)
        ours = [p for p in proposals if p.family == name]
        assert list(rewards) == [p.reward for p in ours]
        final = infos["final_info"]
        assert list(final["valid"]) == [p.task is not None for p in ours]
        assert list(final["reason"]) == [p.result.reason if p.task is None else "" for p in ours]
        assert list(final["task_id"]) == [p.task.task_id if p.task else "" for p in ours]
        rates = [final["solve_rate"][i] if final["_solve_rate"][i] else None for i in range(len(ours))]
        assert rates == [p.solve_rate for p in ours]
        env_buffer = {task.task_id for task in vec.unwrapped.envs[0].buffer.all()}
        assert env_buffer == {task.task_id for task in game.buffers[name].all()}
        assert record.added[name].added == len(env_buffer) - len(game.families[name].seed_tasks())
        vec.close()
    # The texts exercise every outcome: valid with a solve rate strictly between 0 and 1, duplicates, rejections.
    assert any(p.solve_rate is not None and 0 < p.solve_rate < 1 for p in proposals)
    assert {"duplicate", "parse_error"} <= {p.result.reason for p in proposals if p.task is None}


def test_answers_score_the_same_in_the_envs_and_the_trainer(trainer, tmp_path):
    game = trainer.game
    record = StepRecord(step=1, families=list(game.families))
    tasks, texts = [], []
    for name, family in game.families.items():
        for task in game.buffers[name].all()[:2]:
            tasks += [task] * 3
            texts += [family.reference_answer(task), family.wrong_answer(task), "<answer>```\nunbalanced</answer>"]
    prompts = [game.families[task.family].solver_prompt(task) for task in tasks]
    answers = trainer._score_answers(tasks, prompts, texts, record)

    for task, text, answer in zip(tasks, texts, answers, strict=True):
        path = tmp_path / f"{task.task_id}.jsonl"
        path.write_text(task.to_json() + "\n")
        family = game.families[task.family]
        env = SolveEnv(family, task_file=path, reward_config=game.rewards, verifiers=family.verifiers)
        env.reset(seed=0)
        _, reward, _, _, info = env.step(text)
        assert (reward, info["verdict"], info["reason"]) == (
            answer.reward,
            answer.verdict.status,
            answer.verdict.reason,
        )
        env.close()
    assert {answer.verdict.status for answer in answers} == {"correct", "wrong", "format_error"}
