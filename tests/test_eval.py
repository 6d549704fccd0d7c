"""`flywheel eval` and the evaluation runner: task files of every kind, scoring through the families' own
verifiers (scripted right and wrong answers, no mocks), the tiny model end to end, and the real data in
../shared/data (AZR seeds, HumanEval as code-I/O rows, GSM8K)."""

from __future__ import annotations

import ast
import gzip
import json
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from flywheel.agents import Agent
from flywheel.envs import Prompt, Task, TaskFamily, make_family
from flywheel.envs.resources import SharedVerifiers
from flywheel.envs.task_files import TaskFileError, load_task_file, read_task_file
from flywheel.train.evaluate import evaluate, format_comparison, main, resolve_model, source_names

CODE_ROWS = [
    {"code": "def f(x):\n    return x * 2", "input": "3", "output": "6"},
    {"snippet": "def f(s):\n    return s[::-1]", "input": "'abc'", "output": "'cba'", "imports": []},
    {"code": "def f(xs):\n    return sorted(xs)", "input": "[3, 1, 2]", "output": "[1, 2, 3]"},
]
MATH_ROWS = [
    {"problem": "What is $\\frac{1}{2} + \\frac{1}{4}$?", "answer": "\\frac{3}{4}", "solution": "secret work"},
    {"problem": "Solve $x + 2 = 5$.", "answer": "3"},
]
GSM8K_ROWS = [{"question": "Ann has 2,000 pens and buys 500 more. How many now?", "answer": "2000+500\n#### 2,500"}]


def write_rows(path: Path, rows: Sequence[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def verifiers() -> Iterator[SharedVerifiers]:
    with SharedVerifiers() as shared:
        yield shared


@pytest.fixture(scope="module")
def mixed_file(tmp_path_factory: pytest.TempPathFactory, verifiers: SharedVerifiers) -> Path:
    """Every row kind, a Flywheel task row (a math_deduction seed) included."""
    seed = make_family("math_deduction", None, verifiers).seed_tasks()[0]
    rows = [*CODE_ROWS, *MATH_ROWS, *GSM8K_ROWS, json.loads(seed.to_json())]
    return write_rows(tmp_path_factory.mktemp("tasks") / "mixed.jsonl", rows)


def families_of(task_sets: dict[str, list[Task]], verifiers: SharedVerifiers) -> dict[str, TaskFamily]:
    names = {task.family for tasks in task_sets.values() for task in tasks}
    return {name: make_family(name, None, verifiers) for name in names}


def scripted(
    task_sets: dict[str, list[Task]], families: dict[str, TaskFamily], answer: Callable[[TaskFamily, Task], str]
) -> Callable[[Sequence[Prompt], int], list[list[str]]]:
    """A "model" that answers each prompt with `answer(family, task)` of the task it poses."""
    by_prompt = {
        families[task.family].solver_prompt(task).text: answer(families[task.family], task)
        for tasks in task_sets.values()
        for task in tasks
    }
    return lambda prompts, samples: [[by_prompt[prompt.text]] * samples for prompt in prompts]


# ----------------------------------------------------------------------------------------- task files


def test_each_row_kind_becomes_a_task_of_its_family(mixed_file: Path, verifiers: SharedVerifiers) -> None:
    loaded = load_task_file(mixed_file, verifiers=verifiers)
    assert [task.family for task in loaded.tasks] == ["code_deduction"] * 3 + ["math_answer"] * 3 + ["math_deduction"]
    assert loaded.lines == [1, 2, 3, 4, 5, 6, 7] and loaded.unusable == []
    assert loaded.tasks[0].payload["output"] == "6"  # computed by the sandbox
    math_problem = loaded.tasks[3]
    assert "secret work" not in json.dumps(math_problem.payload)
    assert loaded.tasks[5].payload["answer"] == "2500"  # GSM8K: the #### line, separators dropped
    abduction = read_task_file(mixed_file, mode="abduction", verifiers=verifiers, limit=2)
    assert [task.family for task in abduction] == ["code_abduction"] * 2


BAD_ROWS = {
    "not json": "{nope",
    "not an object": "[1, 2]",
    "unrecognised": json.dumps({"prompt": "x"}),
    "code without output": json.dumps({"code": "def f(x):\n    return x", "input": "1"}),
    "unknown family": json.dumps({"family": "nope", "payload": {}, "task_id": "t"}),
    "GSM8K without a final line": json.dumps({"question": "q", "answer": "first\nsecond"}),
}


@pytest.mark.parametrize("text", BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_malformed_rows_name_the_file_and_line(text: str, tmp_path: Path, verifiers: SharedVerifiers) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(CODE_ROWS[0]) + "\n\n" + text + "\n")
    with pytest.raises(TaskFileError, match=r"bad\.jsonl line 3"):
        load_task_file(path, verifiers=verifiers)


def test_an_unreadable_file_is_a_task_file_error(tmp_path: Path) -> None:
    with pytest.raises(TaskFileError, match=r"missing\.jsonl: cannot read"):
        load_task_file(tmp_path / "missing.jsonl")


def test_rows_the_family_rejects_are_reported_with_their_lines(tmp_path: Path, verifiers: SharedVerifiers) -> None:
    rows = [
        CODE_ROWS[0],
        {"code": "def f(x):\n    return x + 1", "input": "1", "output": "3"},  # the row's output is wrong
        {"code": "import random\ndef f(x):\n    return random.random()", "input": "1", "output": "0.5"},
    ]
    path = write_rows(tmp_path / "rows.jsonl", rows)
    loaded = load_task_file(path, verifiers=verifiers)
    assert len(loaded.tasks) == 1 and [row.line for row in loaded.unusable] == [2, 3]
    assert "'3'" in loaded.unusable[0].reason and "'2'" in loaded.unusable[0].reason
    with pytest.warns(UserWarning, match="2 rows unusable: line 2"):
        read_task_file(path, verifiers=verifiers)


def test_math_answer_is_solve_only_and_reads_boxed_answers(verifiers: SharedVerifiers) -> None:
    family = make_family("math_answer", None, verifiers)
    (task,) = family.validate_proposals([{"problem": "What is 3 + 4?", "answer": "7"}])
    assert isinstance(task, Task) and "3 + 4" in family.solver_prompt(task).text
    answers = ["<answer>\\boxed{7}</answer>", "<answer>```answer\n14/2\n```</answer>", "<answer>8</answer>", "7"]
    assert [v.status for v in family.verify([task] * 4, answers)] == ["correct", "correct", "wrong", "format_error"]
    prompt = family.proposer_prompt([task], random.Random(0))
    (rejection,) = family.propose([family.reference_answer(task)], [prompt])
    assert rejection.reason == "solve_only"
    (unreadable,) = family.validate_proposals([{"problem": "p", "answer": "3 +"}])
    assert not isinstance(unreadable, Task)


# ------------------------------------------------------------------------------------------- scoring


def test_right_answers_score_one_and_wrong_answers_zero(mixed_file: Path, verifiers: SharedVerifiers) -> None:
    task_sets = {"mixed": read_task_file(mixed_file, verifiers=verifiers)}
    families = families_of(task_sets, verifiers)
    right = evaluate(scripted(task_sets, families, lambda f, t: f.reference_answer(t)), families, task_sets)
    assert right.summary["accuracy"] == 1.0 and right.summary["correct"] == right.summary["tasks"] == 7
    assert set(right.summary["per_family"]) == {"code_deduction", "math_answer", "math_deduction"}
    assert right.metrics()["eval/mixed/accuracy"] == 1.0
    assert right.metrics()["eval/mixed/math_answer/accuracy"] == 1.0
    wrong = evaluate(scripted(task_sets, families, lambda f, t: f.wrong_answer(t)), families, task_sets)
    assert wrong.summary["accuracy"] == 0.0
    assert {row["verdict"] for row in wrong.rows} == {"wrong"}
    row = wrong.rows[0]
    assert set(row) >= {"index", "source", "family", "correct", "answer", "verdict", "reason"}
    history = [{"step": 0, "metrics": wrong.metrics()}, {"step": 5, "metrics": right.metrics()}]
    assert "mixed/math_answer" in format_comparison(*history) and "+1.000" in format_comparison(*history)


def test_pass_at_k_counts_a_task_solved_in_any_sample(mixed_file: Path, verifiers: SharedVerifiers) -> None:
    task_sets = {"a": read_task_file(mixed_file, verifiers=verifiers, limit=2)}
    families = families_of(task_sets, verifiers)
    prompts = {families[t.family].solver_prompt(t).text: t for t in task_sets["a"]}

    def first_sample_right(batch: Sequence[Prompt], samples: int) -> list[list[str]]:
        return [
            [families[prompts[p.text].family].reference_answer(prompts[p.text]), "<answer>nonsense</answer>"]
            for p in batch
        ]

    report = evaluate(first_sample_right, families, task_sets, samples=2)
    assert report.summary["accuracy"] == 0.5 and report.summary["pass@2"] == 1.0
    assert report.summary["tasks"] == 2 and len(report.rows) == 4


def test_source_names_are_unique_and_avoid_reserved_ones() -> None:
    names = source_names(["a/heldout.jsonl", "b/x.jsonl.gz", "c/x.jsonl"], reserved=["heldout"])
    assert names == ["heldout-2", "x", "x-2"]


# -------------------------------------------------------------------------------------- the command


def test_cli_with_the_tiny_model(mixed_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "results.jsonl"
    argv = ["--model", "flywheel/tiny", "--tasks", str(mixed_file), "--tasks", str(mixed_file)]
    assert main([*argv, "--limit", "4", "--max_new_tokens", "8", "--output", str(output)]) == 0
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    rows, totals = lines[:-1], lines[-1]
    assert len(rows) == 8 and {row["source"] for row in rows} == {"mixed", "mixed-2"}
    assert totals["tasks"] == 8 and 0.0 <= totals["accuracy"] <= 1.0 and "seconds" in totals
    assert set(totals["per_source"]) == {"mixed", "mixed-2"}
    assert "pass@1" not in totals
    assert "total" in capsys.readouterr().err


@pytest.fixture
def rendered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every prompt the `Agent` renders from now on, in order."""
    texts: list[str] = []
    render = Agent.render

    def recording_render(self: Agent, prompt: Prompt | str, role: str) -> str:
        texts.append(render(self, prompt, role))
        return texts[-1]

    monkeypatch.setattr(Agent, "render", recording_render)
    return texts


def test_cli_terse_prompts_with_the_plain_template(mixed_file: Path, tmp_path: Path, rendered: list[str]) -> None:
    """The laptop recipe's prompts: no R1 instruction, no family instructions, the task's blocks kept."""
    argv = ["--model", "flywheel/tiny", "--tasks", str(mixed_file), "--limit", "4", "--max_new_tokens", "4"]
    assert main([*argv, "--template", "plain", "--terse_prompts", "--output", str(tmp_path / "out.jsonl")]) == 0
    assert len(rendered) == 4 and all(text.startswith("User: ## Task: ") for text in rendered)
    assert not any("Think step by step" in text for text in rendered)
    assert any("```python" in text for text in rendered)  # the code rows keep their program


def test_a_model_from_a_run_is_prompted_as_the_run_prompted_it(
    mixed_file: Path, tmp_path: Path, rendered: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`flywheel eval --model RUN/warm-start` renders prompts with the template and family settings of the
    run's recipe.yaml (written by `flywheel train`); a flag given on the command line still wins."""
    from conftest import TINY_RUN_ARGS
    from flywheel.train.run import WARM_START_DIR, build_trainer, parse_config

    run = tmp_path / "run"
    recipe = [
        *TINY_RUN_ARGS,
        "--families", "code_deduction",
        "--template", "plain",
        "--family_configs", '{"code_deduction": {"terse_prompts": true}}',
        "--warm_start_steps", "1",
        "--warm_start_examples", "2",
        "--warm_start_batch_size", "2",
        "--heldout_per_family", "0",
        "--output_dir", str(run),
    ]  # fmt: skip
    build_trainer(parse_config(recipe), None).game.close()
    argv = ["--model", str(run / WARM_START_DIR), "--tasks", str(mixed_file), "--limit", "2", "--max_new_tokens", "2"]
    assert main([*argv, "--output", str(tmp_path / "out.jsonl")]) == 0
    assert str(run / "recipe.yaml") in capsys.readouterr().err
    code_prompts = [text for text in rendered if "```python" in text]
    assert code_prompts and all(text.startswith("User: ## Task: ") for text in code_prompts)
    rendered.clear()
    assert main([*argv, "--template", "r1", "--output", str(tmp_path / "out.jsonl")]) == 0
    assert rendered and all(text.startswith("A conversation between User and Assistant") for text in rendered)


def test_a_broken_run_recipe_is_an_error_with_a_message(
    mixed_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from flywheel.agents import build_tiny_model

    run = tmp_path / "run"
    shutil.copytree(build_tiny_model(), run / "warm-start")
    argv = ["--model", str(run / "warm-start"), "--tasks", str(mixed_file), "--limit", "1", "--max_new_tokens", "2"]
    (run / "recipe.yaml").write_text("template: [plain\n")
    assert main(argv) == 2
    assert "recipe.yaml is not valid YAML" in capsys.readouterr().err
    (run / "recipe.yaml").write_text("family_configs: {code_deduction: {colour: blue}}\n")
    assert main(argv) == 2
    assert "unknown settings ['colour']" in capsys.readouterr().err


def test_cli_sampling_reports_pass_at_k(mixed_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--model", "flywheel/tiny", "--tasks", str(mixed_file), "--limit", "1", "--max_new_tokens", "4"]
    assert main([*argv, "--samples", "2"]) == 2  # greedy samples would all be the same
    assert main([*argv, "--samples", "2", "--temperature", "1.0", "--seed", "3"]) == 0
    totals = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert "pass@2" in totals and totals["samples"] == 2


def test_cli_exits_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(CODE_ROWS[0]) + "\n{oops\n")
    assert main(["--model", "flywheel/tiny", "--tasks", str(bad)]) == 2
    assert "bad.jsonl line 2: invalid JSON" in capsys.readouterr().err
    good = write_rows(tmp_path / "good.jsonl", MATH_ROWS)
    assert main(["--model", str(tmp_path / "no-model"), "--tasks", str(good)]) == 2
    assert "cannot load model" in capsys.readouterr().err


def test_a_run_directory_means_its_final_model_else_its_latest_complete_checkpoint(tmp_path: Path) -> None:
    from flywheel.train.rundir import CHECKPOINT_FILES

    run = tmp_path / "run"
    for step in (2, 10):
        (run / f"checkpoint-{step}").mkdir(parents=True)
        for name in CHECKPOINT_FILES:
            (run / f"checkpoint-{step}" / name).write_text("{}")
    (run / "checkpoint-12").mkdir()  # a save that was killed half-way
    assert resolve_model(str(run)) == str(run / "checkpoint-10")
    (run / "config.json").write_text("{}")
    assert resolve_model(str(run)) == str(run)
    assert resolve_model("flywheel/tiny") == "flywheel/tiny"


# ----------------------------------------------------------------------------------- ../shared/data


def humaneval_rows(path: Path, count: int) -> list[dict[str, str]]:
    """HumanEval problems as code-I/O rows: the solution behind an `f`, the first test call's arguments as the
    input and its expected value as the output (problems whose first assert is not `candidate(...) == value`
    are left out)."""
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            problem = json.loads(line)
            tree = ast.parse(problem["test"])
            asserts = [node for node in ast.walk(tree) if isinstance(node, ast.Assert)]
            test = asserts[0].test if asserts else None
            if not (isinstance(test, ast.Compare) and isinstance(test.left, ast.Call) and len(test.ops) == 1):
                continue
            if not isinstance(test.ops[0], ast.Eq) or not isinstance(test.comparators[0], ast.Constant):
                continue
            program = f"{problem['prompt']}{problem['canonical_solution']}\n\ndef f(*args):\n"
            program += f"    return {problem['entry_point']}(*args)\n"
            arguments = ", ".join(ast.unparse(arg) for arg in test.left.args)
            rows.append({"code": program, "input": arguments, "output": repr(test.comparators[0].value)})
            if len(rows) == count:
                break
    return rows


def test_shared_data_scores_reference_answers_one(
    shared_data: Path, tmp_path: Path, verifiers: SharedVerifiers
) -> None:
    humaneval = write_rows(tmp_path / "humaneval_io.jsonl", humaneval_rows(shared_data / "HumanEval.jsonl.gz", 8))
    files = {
        "azr": shared_data / "azr_7b_coder_seed_io.jsonl",
        "humaneval": humaneval,
        "gsm8k": shared_data / "gsm8k_test.jsonl",
    }
    task_sets = {name: read_task_file(path, verifiers=verifiers, limit=8) for name, path in files.items()}
    task_sets["azr_abduction"] = read_task_file(files["azr"], mode="abduction", verifiers=verifiers, limit=6)
    assert all(len(tasks) >= 4 for tasks in task_sets.values()), {k: len(v) for k, v in task_sets.items()}
    families = families_of(task_sets, verifiers)
    assert set(families) == {"code_deduction", "code_abduction", "math_answer"}
    right = evaluate(scripted(task_sets, families, lambda f, t: f.reference_answer(t)), families, task_sets)
    assert right.summary["accuracy"] == 1.0
    wrong = evaluate(scripted(task_sets, families, lambda f, t: f.wrong_answer(t)), families, task_sets)
    assert wrong.summary["accuracy"] == 0.0


def test_shared_data_with_the_tiny_model(shared_data: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    tasks = [
        "--tasks",
        str(shared_data / "azr_7b_coder_seed_io.jsonl"),
        "--tasks",
        str(shared_data / "gsm8k_test.jsonl"),
    ]
    assert (
        main(["--model", "flywheel/tiny", *tasks, "--limit", "3", "--max_new_tokens", "8", "--output", str(output)])
        == 0
    )
    totals = json.loads(output.read_text().splitlines()[-1])
    assert set(totals["per_source"]) == {"azr_7b_coder_seed_io", "gsm8k_test"} and totals["tasks"] == 6
