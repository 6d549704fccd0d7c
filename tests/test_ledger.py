"""`flywheel ledger`: summary, show, export and replay on a store filled through the real families, reading
while a writer writes, and clear errors for bad run directories."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset
from flywheel.envs import make_family
from flywheel.envs.buffer import TaskStore
from flywheel.envs.parsing import format_answer
from flywheel.envs.rewards import RewardConfig
from flywheel.envs.scoring import add_valid, score_answers, score_proposals, validate_proposals
from flywheel.train.cli import main as flywheel
from flywheel.train.ledger import main
from flywheel.train.selfplay import STORE_FILE, SelfPlay

CODE_PROPOSALS = (
    ("def f(a):\n    return a * 3 + 1", "4"),  # valid, solve rate 0.5
    ("def f(a):\n    return a * 3 + 1", "4"),  # duplicate
    ("def f(a):\n    return sorted(a)", "[1, 2]"),  # trivial
    ("def f(a) return a", "1"),  # syntax error
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory whose store the real families filled: 2 steps of code and math proposals (valid,
    duplicate, trivial, broken) and correct, wrong and unreadable answers."""
    run = tmp_path_factory.mktemp("run")
    families = {name: make_family(name) for name in ("code_deduction", "math_deduction")}
    game = SelfPlay(families, TaskStore(run / STORE_FILE), RewardConfig(), buffer_capacity=64, k_references=1, seed=0)
    game.seed_buffers()
    math_texts = [format_answer(("operation", "expand"), ("expression", "(x + 2)**2")), "no answer"]
    for step in (1, 2):
        game.step = step
        for name, texts in (
            ("code_deduction", [format_answer(("python", p), ("input", x)) for p, x in CODE_PROPOSALS]),
            ("math_deduction", math_texts),
        ):
            prompt = families[name].proposer_prompt([], random.Random(step))
            proposals = validate_proposals(families, [(name, prompt)] * len(texts), texts, gates=game.gates)
            for proposal in proposals:
                proposal.solve_rate = (0.5 if step == 1 else 1.0) if proposal.task is not None else None
            score_proposals(families, proposals, game.rewards)
            add_valid(game.gates[name], proposals, step)
            game.record_proposals(proposals)
            tasks = game.buffers[name].all()[:2]
            family = families[name]
            answers = [family.reference_answer(tasks[0]), family.wrong_answer(tasks[1]), "<answer>?"]
            solved = [tasks[0], tasks[1], tasks[0]]
            prompts = [family.solver_prompt(t) for t in solved]
            game.record_answers(score_answers(families, solved, prompts, answers, game.rewards), "solve")
    game.close()
    return run


def run(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_summary_counts_rates_and_reasons_per_family_role_and_step_range(run_dir, capsys):
    status, out, _ = run(str(run_dir), "summary", "--every", "1", "--json", capsys=capsys)
    assert status == 0
    entries = {(e["family"], e["role"], e["steps"]): e for e in json.loads(out)}
    first = entries[("code_deduction", "propose", "1-1")]
    assert first["count"] == 4 and first["valid_rate"] == 0.25 and first["duplicate_rate"] == 0.25
    assert first["rejections"] == {"duplicate": 1, "trivial": 1, "syntax_error": 1}
    # Step 2 proposes the same valid task again: now a duplicate of the buffer's.
    assert entries[("code_deduction", "propose", "2-2")]["rejections"]["duplicate"] == 2
    solve = entries[("math_deduction", "solve", "1-1")]
    assert solve["count"] == 3 and solve["correct_rate"] == pytest.approx(1 / 3)
    assert solve["format_error_rate"] == pytest.approx(1 / 3)
    status, table, _ = run(str(run_dir), "summary", capsys=capsys)
    assert status == 0 and "code_deduction" in table and "duplicate 1" in table


def test_show_filters_and_trims(run_dir, capsys):
    status, out, _ = run(
        str(run_dir), "show", "--family", "code_deduction", "--role", "propose", "--steps", "2:2",
        "--verdict", "duplicate", "--width", "30", capsys=capsys,
    )  # fmt: skip
    assert status == 0 and "(2 of 2 matching rows)" in out and "step 2" in out and "step 1" not in out
    assert all(len(line) <= 40 for line in out.splitlines() if line.strip().startswith(("prompt:", "output:")))
    status, out, _ = run(str(run_dir), "show", "--grep", "sorted(a)", "--verdict", "invalid", capsys=capsys)
    assert "(2 of 2 matching rows)" in out and out.count("trivial") == 2
    status, out, _ = run(
        str(run_dir), "show", "--role", "solve", "--verdict", "format_error", "--limit", "1", capsys=capsys
    )
    assert "(1 of 4 matching rows)" in out


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_learnable_tasks_through_datasets(run_dir, tmp_path, capsys, fmt):
    out = tmp_path / f"tasks.{fmt}"
    argv = ["export", "--format", fmt, "--out", str(out), "--learnable", "--family", "code_deduction"]
    status, printed, _ = run(str(run_dir), *argv, capsys=capsys)
    assert status == 0 and printed.startswith("exported 1 rows")
    dataset = Dataset.from_json(str(out)) if fmt == "jsonl" else Dataset.from_parquet(str(out))
    (row,) = dataset.to_list()
    assert row["family"] == "code_deduction" and row["solve_rate"] == 0.5 and row["step"] == 1
    assert json.loads(row["task"])["payload"]["program"] == CODE_PROPOSALS[0][0]


def test_replay_agrees_on_an_honest_run_and_reports_each_tampered_row(run_dir, tmp_path, capsys):
    status, out, _ = run(str(run_dir), "replay", capsys=capsys)
    assert status == 0, out
    assert "0 disagreements" in out
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    shutil.copy(run_dir / STORE_FILE, tampered / STORE_FILE)
    with sqlite3.connect(tampered / STORE_FILE) as db:
        seq, result = db.execute("SELECT seq, result FROM ledger WHERE role = 'solve' ORDER BY seq LIMIT 1").fetchone()
        db.execute("UPDATE ledger SET result = ? WHERE seq = ?", (result.replace('"correct"', '"wrong"'), seq))
    status, out, _ = run(str(tampered), "replay", capsys=capsys)
    assert status == 1
    assert f"ledger row #{seq} (step 1, solve code_deduction): recorded wrong, now correct" in out
    assert "1 disagreement" in out


def test_bad_run_directories_and_stores_exit_2(tmp_path, capsys):
    assert run(str(tmp_path / "missing"), "summary", capsys=capsys)[2].endswith("is not a directory\n")
    status, _, err = run(str(tmp_path), "summary", capsys=capsys)
    assert status == 2 and "has no task store" in err
    (tmp_path / STORE_FILE).write_bytes(b"this is not a database, just text" * 100)
    status, _, err = run(str(tmp_path), "show", capsys=capsys)
    assert status == 2 and "not a readable task store" in err
    (tmp_path / STORE_FILE).unlink()
    sqlite3.connect(tmp_path / STORE_FILE).close()
    status, _, err = run(str(tmp_path), "replay", capsys=capsys)
    assert status == 2 and "not a task store" in err
    assert run(str(tmp_path), "nonsense", capsys=capsys)[0] == 2
    assert flywheel(["ledger", str(tmp_path / "missing"), "summary"]) == 2


WRITER = """
import sys, time
from flywheel.envs.buffer import TaskStore
store = TaskStore(sys.argv[1])
print("ready", flush=True)
for i in range(int(sys.argv[2])):
    store.record(100 + i, "solve", "code_deduction", "p" * 2000, "o" * 2000, {"status": "wrong", "reward": -0.5})
store.close()
"""


def test_reading_a_store_while_a_writer_writes(run_dir, tmp_path, capsys):
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(run_dir / STORE_FILE, live / STORE_FILE)
    before = len(TaskStore(live / STORE_FILE).ledger())
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(live / STORE_FILE), "400"], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout.readline().strip() == "ready"
    reads = 0
    while writer.poll() is None or reads < 3:
        assert run(str(live), "summary", "--json", capsys=capsys)[0] == 0
        assert run(str(live), "show", "--newest", "--limit", "2", capsys=capsys)[0] == 0
        reads += 1
    assert writer.wait() == 0 and reads >= 3
    status, out, _ = run(str(live), "summary", "--json", "--steps", "100:", capsys=capsys)
    assert status == 0 and sum(entry["count"] for entry in json.loads(out)) == 400
    assert len(TaskStore(live / STORE_FILE).ledger()) == before + 400


OLD_SCHEMA = """
CREATE TABLE tasks (seq INTEGER PRIMARY KEY AUTOINCREMENT, family TEXT NOT NULL, task_id TEXT NOT NULL,
    step INTEGER NOT NULL, task TEXT NOT NULL, UNIQUE (family, task_id));
CREATE TABLE ledger (seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, step INTEGER NOT NULL,
    role TEXT NOT NULL, family TEXT NOT NULL, prompt TEXT NOT NULL, output TEXT NOT NULL, result TEXT NOT NULL);
INSERT INTO ledger (time, step, role, family, prompt, output, result)
    VALUES (0, 1, 'propose', 'code_deduction', 'p', 'o', '{"valid": false, "reason": "parse_error"}');
"""


def test_a_store_written_before_rails_and_structures_is_read_and_upgraded(tmp_path, capsys):
    with sqlite3.connect(tmp_path / STORE_FILE) as db:
        db.executescript(OLD_SCHEMA)
    status, out, _ = run(str(tmp_path), "summary", "--json", capsys=capsys)
    assert status == 0 and json.loads(out)[0]["rejections"] == {"parse_error": 1}
    store = TaskStore(tmp_path / STORE_FILE)  # the writer adds the new columns
    store.record(2, "propose", "code_deduction", "p", "o", {"valid": False, "reason": "trivial"})
    assert [row["result"]["reason"] for row in store.ledger()] == ["parse_error", "trivial"]
    assert store.buffer("code_deduction", 8).structure_count("anything") == 0
    store.close()
