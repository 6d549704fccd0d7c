"""`flywheel ledger RUN_DIR summary|show|export|replay`: read, curate and audit a run's ledger (docs/ledger.md).

The ledger is the ``ledger`` table of the run's task store (``RUN_DIR/tasks.sqlite``): one row per generated
proposal, solve-rate estimate and trained answer, with its verdict. Every subcommand opens the store
read-only with a busy timeout, so it can read a run that is still training (the writer keeps the store in
WAL mode: readers and the writer never block each other). A missing or unreadable run directory or store is
a clear error and exit status 2; `replay` exits 1 when today's verifiers disagree with a recorded verdict.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flywheel.envs.base import Rejection, Task
from flywheel.envs.buffer import BUSY_TIMEOUT_S
from flywheel.train.selfplay import STORE_FILE

ANSWER_ROLES = ("solve", "estimate")
"""Ledger roles whose rows are solver answers (trained, or samples estimating a solve rate)."""
EXPORT_FORMATS = ("jsonl", "parquet")
EXPORT_COLUMNS = (
    "seq",
    "step",
    "role",
    "family",
    "verdict",
    "reward",
    "solve_rate",
    "task_id",
    "task",
    "prompt",
    "output",
    "rails",
)


class LedgerError(Exception):
    """A run directory or task store that cannot be read (exit status 2)."""


@dataclass(frozen=True)
class Row:
    """One ledger row; `result` is the recorded verdict (a dict)."""

    seq: int
    step: int
    role: str
    family: str
    prompt: str
    output: str
    result: Mapping[str, Any]
    rails: str

    @property
    def verdict(self) -> str:
        """``valid`` or the rejection reason for proposals, the verdict status for answers, else the event."""
        if self.role == "propose":
            return "valid" if self.result.get("valid") else str(self.result.get("reason", "invalid"))
        if self.role in ANSWER_ROLES:
            return str(self.result.get("status", ""))
        return str(self.result.get("event", self.role))

    def matches(self, verdict: str) -> bool:
        """Whether the row has `verdict` (``invalid`` matches every rejected proposal)."""
        return self.verdict == verdict or (verdict == "invalid" and self.role == "propose" and self.verdict != "valid")


@dataclass(frozen=True)
class Filters:
    """Which rows a subcommand reads; empty fields select everything."""

    families: Sequence[str] = ()
    roles: Sequence[str] = ()
    first_step: int | None = None
    last_step: int | None = None
    verdict: str = ""
    text: str = ""


# ------------------------------------------------------------------------------------------- reading


def open_store(run_dir: str | Path) -> sqlite3.Connection:
    """A read-only connection to the run's task store; LedgerError when the directory or store is unusable."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LedgerError(f"{run_dir} is not a directory")
    path = run_dir / STORE_FILE
    if not path.is_file():
        raise LedgerError(f"{run_dir} has no task store ({STORE_FILE}); is it a flywheel train output directory?")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as error:
        raise LedgerError(f"cannot open {path}: {error}") from None
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as error:
        db.close()
        raise LedgerError(f"{path} is not a readable task store: {error}") from None
    if not {"ledger", "tasks"} <= tables:
        db.close()
        raise LedgerError(f"{path} is not a task store: it has no ledger and tasks tables")
    return db


def read_rows(db: sqlite3.Connection, filters: Filters = Filters(), with_text: bool = True) -> Iterator[Row]:
    """Ledger rows in order, filtered; `with_text=False` leaves prompts and outputs empty (faster)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(ledger)")}
    text = "prompt, output" if with_text else "'', ''"
    rails = "rails" if "rails" in columns else "''"
    clauses, values = [], []
    for column, chosen in (("family", filters.families), ("role", filters.roles)):
        if chosen:
            clauses.append(f"{column} IN ({','.join('?' * len(chosen))})")
            values += list(chosen)
    if filters.first_step is not None:
        clauses.append("step >= ?")
        values.append(filters.first_step)
    if filters.last_step is not None:
        clauses.append("step <= ?")
        values.append(filters.last_step)
    if filters.text:
        clauses.append("instr(lower(prompt || char(10) || output || char(10) || result), lower(?)) > 0")
        values.append(filters.text)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    query = f"SELECT seq, step, role, family, {text}, result, {rails} FROM ledger{where} ORDER BY seq"
    try:
        for seq, step, role, family, prompt, output, result, digest in db.execute(query, values):
            row = Row(seq, step, role, family, prompt, output, _json(result), digest)
            if not filters.verdict or row.matches(filters.verdict):
                yield row
    except sqlite3.DatabaseError as error:
        raise LedgerError(f"the ledger cannot be read: {error}") from None


def stored_tasks(db: sqlite3.Connection) -> dict[tuple[str, str], tuple[Task, int]]:
    """Every task in the buffers, keyed by (family, task id), with the step it was added at."""
    try:
        rows = db.execute("SELECT family, task_id, step, task FROM tasks ORDER BY seq").fetchall()
    except sqlite3.DatabaseError as error:
        raise LedgerError(f"the tasks table cannot be read: {error}") from None
    return {(family, task_id): (Task.from_json(text), step) for family, task_id, step, text in rows}


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"unreadable": text}
    return value if isinstance(value, dict) else {"value": value}


def _task_of(row: Row, tasks: Mapping[tuple[str, str], tuple[Task, int]]) -> Task | None:
    """The task a row proposed or answered: from the row itself (valid proposals) or the buffers."""
    if isinstance(row.result.get("task"), str):
        return Task.from_json(row.result["task"])
    found = tasks.get((row.family, str(row.result.get("task_id", ""))))
    return found[0] if found is not None else None


# ------------------------------------------------------------------------------------------- summary


def summarise(rows: Sequence[Row], every: int | None = None, ranges: int = 4) -> list[dict[str, Any]]:
    """Per family x role x step range: count, rates and the most frequent rejection reasons.

    Ranges are `every` steps wide, or split the steps seen into `ranges` equal parts.
    """
    if not rows:
        return []
    first, last = min(row.step for row in rows), max(row.step for row in rows)
    width = every or max(1, -(-(last - first + 1) // ranges))
    groups: dict[tuple[str, str, int], list[Row]] = defaultdict(list)
    for row in rows:
        groups[(row.family, row.role, (row.step - first) // width)].append(row)
    summary = []
    for (family, role, index), members in sorted(groups.items()):
        start = first + index * width
        entry: dict[str, Any] = {
            "family": family,
            "role": role,
            "steps": f"{start}-{start + width - 1}",
            "count": len(members),
        }
        verdicts = Counter(row.verdict for row in members)
        if role == "propose":
            entry["valid_rate"] = verdicts["valid"] / len(members)
            entry["duplicate_rate"] = verdicts["duplicate"] / len(members)
            rejected = Counter({reason: n for reason, n in verdicts.items() if reason != "valid"})
            entry["rejections"] = dict(rejected.most_common())
        elif role in ANSWER_ROLES:
            entry["correct_rate"] = verdicts["correct"] / len(members)
            entry["format_error_rate"] = verdicts["format_error"] / len(members)
        summary.append(entry)
    return summary


def format_summary(summary: Sequence[Mapping[str, Any]]) -> str:
    if not summary:
        return "(no ledger rows match)"
    header = f"{'family':<20} {'role':<9} {'steps':<11} {'count':>6} {'valid':>6} {'dup':>6} {'correct':>7}  rejections"
    lines = [header, "-" * len(header)]
    for entry in summary:
        rate = {key: f"{entry[key]:.2f}" if key in entry else "" for key in ("valid_rate", "duplicate_rate")}
        correct = f"{entry['correct_rate']:.2f}" if "correct_rate" in entry else ""
        reasons = ", ".join(f"{reason} {n}" for reason, n in list(entry.get("rejections", {}).items())[:4])
        lines.append(
            f"{entry['family'] or '-':<20} {entry['role']:<9} {entry['steps']:<11} {entry['count']:>6} "
            f"{rate['valid_rate']:>6} {rate['duplicate_rate']:>6} {correct:>7}  {reasons}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- show


def _trim(text: str, width: int) -> str:
    flat = text.replace("\n", " ⏎ ")
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def format_row(row: Row, width: int) -> str:
    facts = [f"#{row.seq}", f"step {row.step}", row.role, row.family or "-", row.verdict]
    for key in ("reward", "solve_rate"):
        if row.result.get(key) is not None:
            facts.append(f"{key} {row.result[key]:.3g}")
    if row.result.get("task_id"):
        facts.append(f"task {row.result['task_id']}")
    lines = ["  ".join(facts)]
    detail = "" if row.verdict in ("valid", "correct") else row.result.get("detail") or row.result.get("reason")
    if detail and detail != row.verdict:
        lines.append(f"  why:    {_trim(str(detail), width)}")
    lines.append(f"  prompt: {_trim(row.prompt, width)}")
    lines.append(f"  output: {_trim(row.output, width)}")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- export


def export_rows(
    rows: Sequence[Row], tasks: Mapping[tuple[str, str], tuple[Task, int]], fmt: str, out: str | Path
) -> int:
    """Write `rows` (with their tasks as JSON where known) to `out` through `datasets`; the row count."""
    from datasets import Dataset, Features, Value

    columns: dict[str, list[Any]] = {name: [] for name in EXPORT_COLUMNS}
    for row in rows:
        task = _task_of(row, tasks)
        values = {
            "seq": row.seq,
            "step": row.step,
            "role": row.role,
            "family": row.family,
            "verdict": row.verdict,
            "reward": row.result.get("reward"),
            "solve_rate": row.result.get("solve_rate"),
            "task_id": str(row.result.get("task_id") or ""),
            "task": task.to_json() if task is not None else "",
            "prompt": row.prompt,
            "output": row.output,
            "rails": row.rails,
        }
        for name in EXPORT_COLUMNS:
            columns[name].append(values[name])
    kinds = {"seq": "int64", "step": "int64", "reward": "float64", "solve_rate": "float64"}
    features = Features({name: Value(kinds.get(name, "string")) for name in EXPORT_COLUMNS})
    dataset = Dataset.from_dict(columns, features=features)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        dataset.to_parquet(str(out))
    else:
        dataset.to_json(str(out), lines=True, force_ascii=False)
    return len(dataset)


# -------------------------------------------------------------------------------------------- replay


@dataclass(frozen=True)
class Disagreement:
    """A recorded verdict that today's verifiers do not reproduce."""

    where: str
    recorded: str
    now: str

    def __str__(self) -> str:
        return f"{self.where}: recorded {self.recorded}, now {self.now}"


def _run_settings(db: sqlite3.Connection) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The run's latest rails and its families' settings, as recorded in the store (defaults when absent)."""
    from flywheel.envs.rails import Rails

    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    rails = Rails()
    if "rails" in tables:
        latest = db.execute("SELECT rails FROM rails ORDER BY time DESC LIMIT 1").fetchone()
        if latest is not None:
            rails = Rails.from_dict(json.loads(latest[0]))
    configs = {}
    if "families" in tables:
        configs = {name: json.loads(text) for name, text in db.execute("SELECT family, config FROM families")}
    return rails, configs


def replay(db: sqlite3.Connection, filters: Filters = Filters()) -> tuple[int, int, list[Disagreement]]:
    """Re-validate every stored task (buffers and valid proposals) and re-verify every recorded answer with
    today's families and verifiers, under the run's recorded rails and family settings.

    Returns (tasks checked, answers checked, disagreements). A row whose family is not registered, or an
    answer whose task is neither in the ledger nor in a buffer, is a disagreement (it cannot be re-verified).
    """
    from flywheel.envs import family_names, make_family
    from flywheel.envs.resources import SharedVerifiers

    rails, configs = _run_settings(db)
    tasks = stored_tasks(db)
    rows = list(read_rows(db, filters))
    disagreements: list[Disagreement] = []
    to_check: dict[tuple[str, str], tuple[Task, str]] = {}
    for (family, task_id), (task, step) in tasks.items():
        to_check[(family, task_id)] = (task, f"buffer task {task_id} of {family} (added at step {step})")
    for row in rows:
        if row.role == "propose" and row.verdict == "valid":
            task = _task_of(row, tasks)
            if task is not None:
                to_check[(task.family, task.task_id)] = (task, f"ledger row #{row.seq} (step {row.step}, propose)")
    answers = [row for row in rows if row.role in ANSWER_ROLES]
    names = {family for family, _ in to_check} | {row.family for row in answers}
    known = set(family_names())
    with SharedVerifiers(rails.sandbox_config(), rails.math_settings()) as verifiers:
        families = {name: make_family(name, configs.get(name), verifiers, rails) for name in sorted(names & known)}
        for name in sorted(names - known):
            disagreements.append(Disagreement(f"family {name}", "rows", "no such family is registered"))
        for name, family in families.items():
            mine = [item for key, item in to_check.items() if key[0] == name]
            again = family.validate_proposals([dict(task.payload) for task, _ in mine]) if mine else []
            for (task, where), result in zip(mine, again, strict=True):
                if isinstance(result, Rejection):
                    disagreements.append(Disagreement(where, "valid", f"rejected: {result.reason} {result.detail}"))
                elif result != task:
                    disagreements.append(Disagreement(where, f"task {task.task_id}", f"task {result.task_id}"))
            batch = [(row, _task_of(row, tasks)) for row in answers if row.family == name]
            for row, _ in (item for item in batch if item[1] is None):
                disagreements.append(
                    Disagreement(f"ledger row #{row.seq} (step {row.step}, {row.role})", row.verdict, "task not stored")
                )
            batch = [(row, task) for row, task in batch if task is not None]
            verdicts = family.verify([task for _, task in batch], [row.output for row, _ in batch]) if batch else []
            for (row, _), verdict in zip(batch, verdicts, strict=True):
                if verdict.status != row.verdict:
                    where = f"ledger row #{row.seq} (step {row.step}, {row.role} {row.family})"
                    disagreements.append(Disagreement(where, row.verdict, f"{verdict.status} {verdict.reason}".strip()))
    return len(to_check), len(answers), disagreements


# ----------------------------------------------------------------------------------------------- CLI


def _steps(text: str) -> tuple[int | None, int | None]:
    first, sep, last = text.partition(":")
    try:
        if not sep:
            return int(first), int(first)
        return (int(first) if first else None), (int(last) if last else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"steps must be A:B, A:, :B or A, not {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--family", action="append", default=[], help="only this family (repeatable)")
    filters.add_argument("--role", action="append", default=[], help="only this role: propose, estimate, solve")
    filters.add_argument("--steps", type=_steps, default=(None, None), help="step range A:B (inclusive), A:, :B")
    filters.add_argument(
        "--verdict",
        default="",
        help="valid, invalid, a rejection reason (duplicate, trivial, ...), correct, wrong or format_error",
    )
    filters.add_argument("--grep", default="", help="only rows whose prompt, output or verdict contain TEXT")
    parser = argparse.ArgumentParser(prog="flywheel ledger", description="Read a run's audit ledger.")
    parser.add_argument("run_dir", help="a flywheel train output directory (holding tasks.sqlite)")
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser("summary", parents=[filters], help="rates per family x role x step range")
    summary.add_argument("--every", type=int, default=None, help="steps per range (default: 4 equal ranges)")
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show = commands.add_parser("show", parents=[filters], help="print rows, prompt and output trimmed")
    show.add_argument("--limit", type=int, default=20, help="most rows printed (default 20)")
    show.add_argument("--newest", action="store_true", help="print the last matching rows instead of the first")
    show.add_argument("--width", type=int, default=160, help="characters of prompt and output shown (default 160)")
    export = commands.add_parser("export", parents=[filters], help="write rows as a dataset (jsonl or parquet)")
    export.add_argument("--format", choices=EXPORT_FORMATS, default="jsonl")
    export.add_argument("--out", required=True, help="output file")
    export.add_argument(
        "--learnable", action="store_true", help="only valid proposals whose estimated solve rate is in (0, 1)"
    )
    commands.add_parser("replay", parents=[filters], help="re-verify tasks and answers; exit 1 on a disagreement")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `flywheel ledger`: 0 done, 1 replay disagreements, 2 bad arguments or run directory."""
    parser = _parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    filters = Filters(args.family, args.role, *args.steps, args.verdict, args.grep)
    try:
        with closing(open_store(args.run_dir)) as db:
            return _run(args, db, filters)
    except LedgerError as error:
        print(f"flywheel ledger: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, db: sqlite3.Connection, filters: Filters) -> int:
    if args.command == "summary":
        summary = summarise(list(read_rows(db, filters, with_text=False)), every=args.every)
        print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
        return 0
    if args.command == "show":
        rows = list(read_rows(db, filters))
        chosen = rows[-args.limit :] if args.newest else rows[: args.limit]
        for row in chosen:
            print(format_row(row, args.width))
        print(f"({len(chosen)} of {len(rows)} matching rows)")
        return 0
    if args.command == "export":
        rows = list(read_rows(db, filters))
        if args.learnable:
            rows = [r for r in rows if r.verdict == "valid" and 0 < (r.result.get("solve_rate") or 0) < 1]
        count = export_rows(rows, stored_tasks(db), args.format, args.out)
        print(f"exported {count} rows to {args.out}")
        return 0
    checked_tasks, checked_answers, disagreements = replay(db, filters)
    for disagreement in disagreements:
        print(disagreement)
    print(
        f"replayed {checked_tasks} tasks and {checked_answers} answers: {len(disagreements)} disagreement"
        + ("" if len(disagreements) == 1 else "s")
    )
    return 1 if disagreements else 0
