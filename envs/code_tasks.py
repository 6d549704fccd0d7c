"""The three code families of Absolute Zero (Zhao et al. 2025): deduction, abduction and induction.

A task is a deterministic Python function ``f`` plus literal inputs and the outputs the sandbox computed:

* ``code_deduction`` (``CodeDeduction``): the solver sees ``f`` and an input and predicts the output.
* ``code_abduction`` (``CodeAbduction``): the solver sees ``f`` and an output and gives any input that
  produces it (its input is run through the sandbox).
* ``code_induction`` (``CodeInduction``): the proposer is shown a program and writes inputs plus a message;
  the solver sees the message and half of the input/output pairs and writes ``f``, which must reproduce
  every pair, the hidden half included.

Values cross the sandbox boundary as literal text (`flywheel.verifiers.values`); an input is the text of
an argument list, ``"[1, 2], 'x'"`` meaning ``f([1, 2], 'x')``. Everything the three modes share (config
bounds, program checks, the batched sandbox validation, answer verification, dedup keys) lives in
`CodeFamily`; the subclasses only add their prompts and what a correct answer is.
"""

from __future__ import annotations

import ast
import operator
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from flywheel.envs.base import (
    InductionConfig,
    InductionFamily,
    Prompt,
    Rejection,
    Task,
    TaskFamily,
    Verdict,
    stable_hash,
)
from flywheel.envs.parsing import (
    FormatError,
    extract_answer,
    fenced_blocks,
    format_answer,
    format_blocks,
    single_block,
)
from flywheel.envs.registry import register_family
from flywheel.envs.synthetic import MESSAGES, code_inputs, code_program, code_snippet
from flywheel.verifiers.values import canonical, parse_arguments, parse_literal, values_equal

IDENTITY_PROGRAM = "def f(a):\n    return a"
"""AZR's zero-data seed: the identity function."""

SEED_INPUTS = ("'Hello world'", "[1, 2, 3]", "{'a': 1, 'b': 2}")
INDUCTION_SEED_INPUTS = ("'Hello world'", "1", "[1, 2, 3]", "(1.5, -2)", "{'a': 1}", "''", "True", "[[0, 1], []]")

FORMAT_RULES = (
    "Think step by step inside <think>…</think>, then give the final answer inside <answer>…</answer> "
    "using exactly the fenced blocks shown."
)
PROGRAM_RULES = (
    "- Define a function named `f` that takes at least one argument; helper functions, classes and imports "
    "from the standard library are allowed.\n"
    "- `f` must be deterministic (no randomness, time, files or network) and finish quickly.\n"
    "- `f` must return a plain value: None, bool, int, float, complex, str, bytes, list, tuple, dict, set.\n"
    "- An input is the argument list of one call, written with literals only: `[1, 2], 'x'` means "
    "`f([1, 2], 'x')`."
)


@dataclass
class CodeFamilyConfig(InductionConfig):
    """Bounds on proposals and the answer comparison for the code families."""

    max_input_chars: int = field(default=1000, metadata={"help": "Longest accepted input (argument list) text."})
    max_output_chars: int = field(
        default=1000,
        metadata={"help": "Longest canonical output text; longer outputs reject the proposal (never truncated)."},
    )
    allow_none_output: bool = field(
        default=False, metadata={"help": "Accept programs that return None (usually a sign of a trivial task)."}
    )
    check_determinism: bool = field(
        default=True, metadata={"help": "Re-run proposals in a fresh interpreter and reject differing outputs."}
    )
    rel_tol: float = field(default=1e-9, metadata={"help": "Relative tolerance when comparing float outputs."})
    abs_tol: float = field(default=0.0, metadata={"help": "Absolute tolerance when comparing float outputs."})
    strict_types: bool = field(
        default=False,
        metadata={"help": "Compare outputs with exact types (1 != 1.0 != True); False follows Python's == as AZR."},
    )

    def validate(self) -> None:
        super().validate()
        for name in ("max_input_chars", "max_output_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.rel_tol < 0 or self.abs_tol < 0:
            raise ValueError("tolerances must be non-negative")


# ------------------------------------------------------------------------------------------ program helpers


def entry_function(tree: ast.Module, entry: str = "f") -> ast.FunctionDef | None:
    """The last top-level ``def f`` of a module (the one a call would reach)."""
    found = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == entry:
            found = node
    return found


def _positional_count(function: ast.FunctionDef) -> int:
    return len(function.args.posonlyargs) + len(function.args.args)


def _drop_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = node.body[1:] or [ast.Pass()]


def _bound_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


_UNARY_FOLDS = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert, ast.Not: operator.not_}
_BINARY_FOLDS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
    ast.BitOr: operator.or_,
    ast.BitXor: operator.xor,
    ast.BitAnd: operator.and_,
}
_FOLDABLE_TYPES = (bool, int, float, complex, str, bytes)
_MAX_FOLDED_CHARS = 1000
_MAX_FOLDED_BITS = 256


def _small_enough(left: object, right: object, op: ast.operator) -> bool:
    """Whether folding `left op right` is cheap (no huge powers, shifts or repeated strings)."""
    if isinstance(op, ast.Pow | ast.LShift):
        return isinstance(right, int | float) and abs(right) <= 64 and not isinstance(left, str | bytes)
    if isinstance(op, ast.Mult) and isinstance(left, str | bytes) != isinstance(right, str | bytes):
        count = right if isinstance(left, str | bytes) else left
        return isinstance(count, int) and count <= _MAX_FOLDED_CHARS
    return True


class _ConstantFolder(ast.NodeTransformer):
    """Replaces unary and binary operations on literals by their value (``-1``, ``2 * 3``, ``'a' + 'b'``)."""

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, _FOLDABLE_TYPES):
            return self._fold(node, _UNARY_FOLDS[type(node.op)], node.operand.value)
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        left, right = node.left, node.right
        if (
            isinstance(left, ast.Constant)
            and isinstance(right, ast.Constant)
            and isinstance(left.value, _FOLDABLE_TYPES)
            and isinstance(right.value, _FOLDABLE_TYPES)
            and _small_enough(left.value, right.value, node.op)
        ):
            return self._fold(node, _BINARY_FOLDS[type(node.op)], left.value, right.value)
        return node

    @staticmethod
    def _fold(node: ast.expr, function: Any, *values: object) -> ast.expr:
        try:
            value = function(*values)
        except (ArithmeticError, TypeError, ValueError):
            return node
        if isinstance(value, str | bytes) and len(value) > _MAX_FOLDED_CHARS:
            return node
        if isinstance(value, int) and value.bit_length() > _MAX_FOLDED_BITS:
            return node
        return ast.copy_location(ast.Constant(value), node)


def _normalised_tree(program: str) -> ast.Module | None:
    """The program's AST without docstrings, with literal expressions folded and the names it binds
    renamed ``v0, v1, ...`` in order of appearance; None when it does not parse."""
    try:
        tree = ast.parse(program)
        _drop_docstrings(tree)
        tree = _ConstantFolder().visit(tree)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    bound = _bound_names(tree)
    renamed: dict[str, str] = {}

    def rename(name: str) -> str:
        if name not in bound:
            return name
        return renamed.setdefault(name, f"v{len(renamed)}")

    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            node.name = rename(node.name)
        elif isinstance(node, ast.arg):
            node.arg = rename(node.arg)
        elif isinstance(node, ast.Name):
            node.id = rename(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            node.name = rename(node.name)
    return tree


def normalised_program(program: str) -> str:
    """An AST dump that is equal for programs differing only in comments, docstrings, layout, the names
    they bind (functions, arguments, variables; renamed in order of appearance) and how their literal
    expressions are written (``2 * 3`` and ``6``, ``-(1)`` and ``-1``)."""
    tree = _normalised_tree(program)
    return program if tree is None else ast.dump(tree, annotate_fields=False)


def program_structure(program: str) -> str:
    """`normalised_program` with every literal replaced by its type name: programs that differ only in
    their constants (``return a + 1`` and ``return a + 2``) have the same structure."""
    tree = _normalised_tree(program)
    if tree is None:
        return program
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            node.value = type(node.value).__name__
    return ast.dump(tree, annotate_fields=False)


def reads_arguments(function: ast.FunctionDef) -> bool:
    """Whether `function`'s body reads any of its parameters; one that does not is a constant function."""
    params = {arg.arg for arg in (*function.args.posonlyargs, *function.args.args, *function.args.kwonlyargs)}
    params |= {arg.arg for arg in (function.args.vararg, function.args.kwarg) if arg is not None}
    return any(
        isinstance(node, ast.Name) and node.id in params and isinstance(node.ctx, ast.Load)
        for statement in function.body
        for node in ast.walk(statement)
    )


def canonical_arguments(text: str, max_chars: int) -> str:
    """The canonical text of an argument list (``"[1,2],  n = 'x'"`` -> ``"[1, 2], n='x'"``; keywords sorted).
    Raises ValueError on anything but literal arguments."""
    args, kwargs = parse_arguments(text, max_chars=max_chars)
    parts = [canonical(value) for value in args] + [f"{key}={canonical(kwargs[key])}" for key in sorted(kwargs)]
    return ", ".join(parts)


def _argument_texts(arguments: str) -> set[str]:
    """The canonical text of each argument in a canonical argument list."""
    args, kwargs = parse_arguments(arguments, max_chars=len(arguments) + 1)
    return {canonical(value) for value in (*args, *kwargs.values())}


def sandbox_reason(status: str) -> str:
    """The rejection or verdict reason key for a failed sandbox call: ``static_check``, ``runtime_error``,
    ``output_too_long``, ``timeout``, ``memory``, ... (public: plug-in families that run code use it too)."""
    names = {"rejected": "static_check", "error": "runtime_error", "output_limit": "output_too_long"}
    return names.get(str(status), str(status))


def _reference_blocks(task: Task) -> str:
    payload = task.payload
    if "input" in payload:
        return format_blocks(("python", payload["program"]), ("input", payload["input"]), ("output", payload["output"]))
    return format_blocks(("python", payload["program"]))


# ------------------------------------------------------------------------------------------- shared base


class CodeFamily(TaskFamily):
    """What the three code modes share. A subclass says how a proposal is read (`parse_proposal`,
    `proposal_from_azr`), which inputs it carries (`_inputs_of`), how a task is built from the sandbox's
    outputs (`_build_payload`), and how one answer becomes a sandbox job or a verdict (`_check_answer`,
    `_judge`)."""

    domain = "code"
    config_class = CodeFamilyConfig
    config: CodeFamilyConfig

    # --- subclass hooks ------------------------------------------------------------------------------
    def _inputs_of(self, proposal: Mapping[str, Any]) -> Sequence[str]:
        """The input texts a proposal or payload carries."""
        raise NotImplementedError

    def _build_payload(self, proposal: Mapping[str, Any], inputs: list[str], outputs: list[str]) -> dict[str, Any]:
        """The task payload from a proposal, its canonical inputs and the sandbox's outputs."""
        raise NotImplementedError

    def _check_answer(self, task: Task, answer: str) -> Any:
        """A sandbox `Job` that tests the (already extracted) answer, or a final `Verdict`.
        Raises FormatError when the answer cannot be read."""
        raise NotImplementedError

    def _judge(self, task: Task, calls: Sequence[Any]) -> Verdict:
        """The verdict from the sandbox results of `_check_answer`'s job."""
        raise NotImplementedError

    def proposal_from_azr(self, row: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """A proposal from one row of AZR's seed files, or None when the row is of the other format."""
        raise NotImplementedError

    # --- proposals -----------------------------------------------------------------------------------
    def _trivial(self, payload: Mapping[str, Any]) -> Rejection | None:
        """A ``trivial`` rejection when the task's inputs and outputs make it trivial (e.g. an output that
        equals an input)."""
        raise NotImplementedError

    def _check_program(self, program: str) -> Rejection | None:
        """The rails' size bounds and the entry point, for proposed and answered programs alike."""
        if len(program) > self.rails.max_program_chars:
            return Rejection("program_too_long", f"{len(program)} > {self.rails.max_program_chars} chars")
        try:
            tree = ast.parse(program)
            nodes = sum(1 for _ in ast.walk(tree))
        except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
            return Rejection("syntax_error", f"{type(error).__name__}: {error}")
        if nodes > self.rails.max_program_nodes:
            return Rejection("program_too_complex", f"{nodes} > {self.rails.max_program_nodes} AST nodes")
        function = entry_function(tree)
        if function is None:
            return Rejection("no_entry", "the program defines no top-level function `f`")
        if _positional_count(function) == 0 and function.args.vararg is None:
            return Rejection("no_arguments", "`f` takes no positional argument")
        return None

    def _precheck(self, proposal: Mapping[str, Any]) -> tuple[str, list[str]] | Rejection:
        """Checks that need no execution; gives the program and canonical, distinct inputs."""
        program = proposal.get("program")
        if not isinstance(program, str):
            return Rejection("parse_error", "no program")
        rejection = self._check_program(program)
        if rejection is not None:
            return rejection
        inputs: list[str] = []
        for text in self._inputs_of(proposal):
            if not isinstance(text, str) or len(text) > self.config.max_input_chars:
                return Rejection("bad_input", f"input missing or longer than {self.config.max_input_chars} chars")
            try:
                args = canonical_arguments(text, self.config.max_input_chars)
            except ValueError as error:
                return Rejection("bad_input", str(error)[:200])
            if not args:
                return Rejection("no_arguments", "an input must pass at least one argument")
            if args not in inputs:
                inputs.append(args)
        return program, inputs

    def _rejection_of_call(self, call: Any) -> Rejection | None:
        if call.status != "ok":
            return Rejection(sandbox_reason(call.status), (call.error or "")[:500])
        if len(call.value) > self.config.max_output_chars:
            return Rejection("output_too_long", f"{len(call.value)} > {self.config.max_output_chars} chars")
        if call.value == "None" and not self.config.allow_none_output:
            return Rejection("none_output", "f returned None")
        return None

    def validate_proposals(self, proposals: Sequence[Mapping[str, Any]]) -> list[Task | Rejection]:
        """Run every proposal in one sandbox batch (re-run for determinism: `run_deterministic`), then build tasks."""
        from flywheel.verifiers.sandbox import Job, run_deterministic

        results: list[Task | Rejection] = []
        checked = [self._precheck(proposal) for proposal in proposals]
        runnable = [i for i, item in enumerate(checked) if not isinstance(item, Rejection)]
        jobs = [Job(program=checked[i][0], inputs=tuple(checked[i][1])) for i in runnable]  # type: ignore[index]
        if not jobs:
            runs = []
        elif self.config.check_determinism:
            runs = run_deterministic(self.verifiers.sandbox, jobs)
        else:
            runs = [(calls, True) for calls in self.verifiers.sandbox.run_many(jobs)]
        outcomes: dict[int, list[str] | Rejection] = {}
        for i, (calls, repeated) in zip(runnable, runs, strict=True):
            rejection = next((r for r in map(self._rejection_of_call, calls) if r is not None), None)
            outcomes[i] = rejection if rejection is not None else [call.value for call in calls]
            if not repeated and isinstance(outcomes[i], list):
                outcomes[i] = Rejection("nondeterministic", "outputs differ between runs")
        for i, (proposal, item) in enumerate(zip(proposals, checked, strict=True)):
            outcome = item if isinstance(item, Rejection) else outcomes[i]
            if isinstance(outcome, Rejection):
                results.append(outcome)
            else:
                results.append(self.make_task(self._build_payload(proposal, item[1], outcome)))  # type: ignore[index]
        return results

    # --- solving -------------------------------------------------------------------------------------
    def _equal(self, answer: str, gold: str) -> bool:
        config = self.config
        return values_equal(
            answer, gold, rel_tol=config.rel_tol, abs_tol=config.abs_tol, strict_types=config.strict_types
        )

    def verify(self, tasks: Sequence[Task], answers: Sequence[str]) -> list[Verdict]:
        """Read every answer, then run all that need execution in one sandbox batch."""
        from flywheel.verifiers.sandbox import Job

        verdicts: list[Verdict | None] = []
        jobs: list[Job] = []
        waiting: list[int] = []
        for task, answer in zip(tasks, answers, strict=True):
            try:
                item = self._check_answer(task, extract_answer(answer))
            except FormatError as error:
                item = Verdict("format_error", str(error))
            if isinstance(item, Job):
                waiting.append(len(verdicts))
                jobs.append(item)
                verdicts.append(None)
            else:
                verdicts.append(item)
        for i, calls in zip(waiting, self.verifiers.sandbox.run_many(jobs) if jobs else [], strict=True):
            verdicts[i] = self._judge(tasks[i], calls)
        return verdicts  # type: ignore[return-value]

    # --- bookkeeping ---------------------------------------------------------------------------------
    def dedup_key(self, payload: Mapping[str, Any]) -> str:
        return stable_hash(normalised_program(payload["program"]), *sorted(self._inputs_of(payload)))

    def structure_key(self, payload: Mapping[str, Any]) -> str:
        return stable_hash(program_structure(payload["program"]))

    def triviality(self, task: Task) -> Rejection | None:
        """A constant function (`f` never reads its arguments), or inputs and outputs that give the answer
        away (`_trivial`)."""
        if not reads_arguments(entry_function(ast.parse(task.payload["program"]))):  # type: ignore[arg-type]
            return Rejection("trivial", "`f` never reads its arguments: a constant function")
        return self._trivial(task.payload)

    def complexity(self, task: Task) -> int:
        try:
            return sum(1 for _ in ast.walk(ast.parse(task.payload["program"])))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return 0


# ------------------------------------------------------------------------------ deduction and abduction


class _InputOutputFamily(CodeFamily):
    """Tasks made of one program, one input and its output (deduction and abduction)."""

    challenge: ClassVar[str]
    """What should be hard for the solver, in the proposer prompt."""

    def seed_tasks(self) -> list[Task]:
        return [
            self.make_task({"program": IDENTITY_PROGRAM, "input": text, "output": canonical(parse_literal(text))})
            for text in SEED_INPUTS
        ]

    def proposer_prompt(self, references: Sequence[Task], rng: random.Random) -> Prompt:
        shown = "\n\n".join(_reference_blocks(task) for task in references) or "(none yet)"
        example = format_answer(("python", "def f(...):\n    ..."), ("input", "..."), think="...")
        text = (
            "## Task: create a Python function `f` and one input for it\n\n"
            + self.instructions(f"Design a new snippet, different from the references, {self.challenge}")
            + self.instructions(PROGRAM_RULES)
            + f"### Reference snippets\n{shown}\n\n### Answer format\n"
            + self.instructions(FORMAT_RULES, end="\n")
            + example
        )
        return Prompt(text=text, context={"references": [task.task_id for task in references]})

    def parse_proposal(self, text: str, prompt: Prompt) -> Mapping[str, Any] | Rejection:
        try:
            answer = extract_answer(text)
            return {"program": single_block(answer, "python"), "input": single_block(answer, "input")}
        except FormatError as error:
            return Rejection("parse_error", str(error))

    def example_proposals(self) -> list[tuple[Prompt, str]]:
        prompt = self.proposer_prompt(self.seed_tasks(), random.Random(0))
        return [
            (prompt, format_answer(("python", "def f(xs, k):\n    return xs[k:] + xs[:k]"), ("input", "[1, 2, 3], 2"))),
            (
                prompt,
                format_answer(("python", "def f(s):\n    return {c: s.count(c) for c in s}"), ("input", "'abba'")),
            ),
        ]

    def warmup_proposal(self, prompt: Prompt, rng: random.Random) -> str:
        program, text = code_snippet(rng)
        return format_answer(("python", program), ("input", text))

    def proposal_from_azr(self, row: Mapping[str, Any]) -> Mapping[str, Any] | None:
        if "input" not in row:
            return None
        imports = "\n".join(row.get("imports") or [])
        return {"program": f"{imports}\n{row['snippet']}".strip("\n"), "input": row["input"]}

    def _inputs_of(self, proposal: Mapping[str, Any]) -> Sequence[str]:
        return [proposal.get("input")]  # type: ignore[list-item]

    def _build_payload(self, proposal: Mapping[str, Any], inputs: list[str], outputs: list[str]) -> dict[str, Any]:
        return {"program": proposal["program"], "input": inputs[0], "output": outputs[0]}

    def _trivial(self, payload: Mapping[str, Any]) -> Rejection | None:
        if payload["output"] in _argument_texts(payload["input"]):
            return Rejection("trivial", f"the output equals an argument of the input: {payload['output'][:200]}")
        return None


@register_family
class CodeDeduction(_InputOutputFamily):
    """Given ``f`` and an input, predict the output (AZR's ``code_o``)."""

    name = "code_deduction"
    env_name = "CodeDeduction"
    mode = "deduction"
    challenge = "such that predicting its output from the input takes careful step-by-step reasoning."

    def solver_prompt(self, task: Task) -> Prompt:
        payload = task.payload
        example = format_answer(("output", "..."), think="...")
        text = (
            "## Task: predict the output\n\n"
            + self.instructions(
                "Given the function `f` and the input below, give the value `f` returns, as a Python literal."
            )
            + f"```python\n{payload['program']}\n```\n```input\n{payload['input']}\n```\n\n"
            + self.instructions(FORMAT_RULES, end="\n")
            + example
        )
        return Prompt(text=text)

    def _check_answer(self, task: Task, answer: str) -> Verdict:
        output = single_block(answer, "output", allow_bare=True)
        try:
            parse_literal(output)
        except ValueError as error:
            return Verdict("format_error", f"output is not a literal: {str(error)[:200]}")
        return (
            Verdict("correct") if self._equal(output, task.payload["output"]) else Verdict("wrong", "output_mismatch")
        )

    def reference_answer(self, task: Task) -> str:
        return format_answer(("output", task.payload["output"]))

    def wrong_answer(self, task: Task) -> str:
        return format_answer(("output", f"[{task.payload['output']}]"))


@register_family
class CodeAbduction(_InputOutputFamily):
    """Given ``f`` and an output, give an input that produces it (AZR's ``code_i``); any such input counts."""

    name = "code_abduction"
    env_name = "CodeAbduction"
    mode = "abduction"
    challenge = "such that finding an input that produces its output takes careful reasoning backwards."

    def solver_prompt(self, task: Task) -> Prompt:
        payload = task.payload
        example = format_answer(("input", "..."), think="...")
        text = (
            "## Task: find an input\n\n"
            + self.instructions(
                "Give an input (the argument list of one call, literals only: `[1, 2], 'x'` means f([1, 2], 'x')) "
                "for which the function `f` below returns the given output. Any such input is accepted."
            )
            + f"```python\n{payload['program']}\n```\n```output\n{payload['output']}\n```\n\n"
            + self.instructions(FORMAT_RULES, end="\n")
            + example
        )
        return Prompt(text=text)

    def _check_answer(self, task: Task, answer: str) -> Any:
        from flywheel.verifiers.sandbox import Job

        given = single_block(answer, "input", allow_bare=True)
        if len(given) > self.config.max_input_chars:
            return Verdict("format_error", f"input longer than {self.config.max_input_chars} chars")
        # Evaluated in the sandbox, in the program's globals, like a benchmark row's input (expressions too).
        return Job(program=task.payload["program"], inputs=(given,))

    def _judge(self, task: Task, calls: Sequence[Any]) -> Verdict:
        call = calls[0]
        if call.status == "error" and (call.error or "").startswith("bad input"):
            return Verdict("format_error", f"input is not an argument list: {call.error[:200]}")
        if call.status != "ok":
            return Verdict("wrong", sandbox_reason(call.status))
        return (
            Verdict("correct")
            if self._equal(call.value, task.payload["output"])
            else Verdict("wrong", "output_mismatch")
        )

    def reference_answer(self, task: Task) -> str:
        return format_answer(("input", task.payload["input"]))

    def wrong_answer(self, task: Task) -> str:
        """The first of a few simple inputs whose output differs (found with one sandbox call)."""

        function = entry_function(ast.parse(task.payload["program"]))
        too_many = ", ".join(["0"] * (_positional_count(function) + 1)) if function else "0, 0"
        candidates = (too_many, "0", "''", "None", "[]", "-1", "'a'", "[0, 1]")
        calls = self.verifiers.sandbox.run(task.payload["program"], candidates)
        for candidate, call in zip(candidates, calls, strict=True):
            if call.status != "ok" or not self._equal(call.value, task.payload["output"]):
                return format_answer(("input", candidate))
        return format_answer(("input", too_many))


# ------------------------------------------------------------------------------------------------ induction


@register_family
class CodeInduction(InductionFamily, CodeFamily):
    """Given a message and half of the input/output pairs, write ``f`` (AZR's ``code_f``).

    The proposer is shown a program (from the prompt's references: any tasks carrying a program; the
    identity function when there are none) and writes up to `n_inputs` inputs, each in its own ```input
    block, and one ```message block; it may replace the program with its own ```python block (without it,
    a buffer holding only the identity seed, whose tasks are trivial, could never grow). The sandbox computes
    the outputs; the pairs are split half/half into visible and hidden by a generator seeded with the task id,
    and the solver's ``f`` must reproduce all.
    """

    name = "code_induction"
    env_name = "CodeInduction"
    mode = "induction"

    def seed_tasks(self) -> list[Task]:
        outputs = [canonical(parse_literal(text)) for text in INDUCTION_SEED_INPUTS]
        payload = {
            "program": IDENTITY_PROGRAM,
            "message": "Return the argument unchanged.",
            "inputs": list(INDUCTION_SEED_INPUTS),
            "outputs": outputs,
        }
        return [self.make_task(payload)]

    def proposer_prompt(self, references: Sequence[Task], rng: random.Random) -> Prompt:
        programs = [task.payload["program"] for task in references if isinstance(task.payload.get("program"), str)]
        program = rng.choice(programs) if programs else IDENTITY_PROGRAM
        n = self.config.n_inputs
        example = format_answer(("input", "..."), ("input", "..."), ("message", "..."), think="...")
        text = (
            f"## Task: write {n} inputs and a message for a function\n\n"
            + self.instructions(
                f"A test subject will see your message and about half of the input/output pairs of the function "
                f"`f` below, but not its code, and must write a function that reproduces `f` on all {n} inputs, "
                "the unseen ones included. Choose distinct inputs that together reveal what `f` does, and a short "
                "message that hints at it without giving the code away."
            )
            + self.instructions(
                "- Write each input in its own ```input block: the argument list of one call, literals only "
                "(`[1, 2], 'x'` means f([1, 2], 'x')).\n- Write the message in one ```message block.\n"
                "- To use your own function instead, add it in a ```python block (a function `f` of at least one "
                "argument, deterministic, standard library only)."
            )
            + f"```python\n{program}\n```\n\n### Answer format\n"
            + self.instructions(FORMAT_RULES, end="\n")
            + example
        )
        return Prompt(text=text, context={"program": program, "references": [task.task_id for task in references]})

    def parse_proposal(self, text: str, prompt: Prompt) -> Mapping[str, Any] | Rejection:
        try:
            answer = extract_answer(text)
            message = single_block(answer, "message")
        except FormatError as error:
            return Rejection("parse_error", str(error))
        blocks = fenced_blocks(answer)
        own = blocks.get("python", [])
        if len(own) > 1:
            return Rejection("parse_error", "more than one ```python block")
        program = own[0] if own else prompt.context.get("program")
        if not isinstance(program, str):
            return Rejection("parse_error", "no ```python block and the prompt carries no program")
        inputs = blocks.get("input", [])
        if len(message) > self.config.max_message_chars:
            return Rejection("message_too_long", f"{len(message)} > {self.config.max_message_chars} chars")
        return {"program": program, "inputs": inputs, "message": message}

    def example_proposals(self) -> list[tuple[Prompt, str]]:
        """Inputs for a rotation program (the seeds' identity function would make a trivial task)."""
        program = "def f(xs, k):\n    return xs[k % len(xs):] + xs[:k % len(xs)]"
        reference = Task(self.name, {"program": program}, task_id="example")
        inputs = [("input", f"[{i}, {2 * i}, {3 * i}], {i}") for i in range(1, 7)]
        return [(self.proposer_prompt([reference], random.Random(0)), format_answer(*inputs, ("message", "rotate")))]

    def warmup_proposal(self, prompt: Prompt, rng: random.Random) -> str:
        """`min_inputs` random inputs of one kind for the shown program (those it cannot take fail validation)
        or, half the time, a program of its own with inputs it accepts."""
        own: list[tuple[str, str]] = []
        if rng.random() < 0.5:
            program, texts = code_program(rng, self.config.min_inputs)
            own = [("python", program)]
        else:
            texts = code_inputs(rng, self.config.min_inputs)
        return format_answer(*[("input", text) for text in texts], ("message", rng.choice(MESSAGES)), *own)

    def proposal_from_azr(self, row: Mapping[str, Any]) -> Mapping[str, Any] | None:
        if "inputs" not in row:
            return None
        imports = "\n".join(row.get("imports") or [])
        program = f"{imports}\n{row['snippet']}".strip("\n")
        return {"program": program, "inputs": list(row["inputs"]), "message": str(row.get("message", ""))}

    def _inputs_of(self, proposal: Mapping[str, Any]) -> Sequence[str]:
        return proposal.get("inputs") or []

    def _precheck(self, proposal: Mapping[str, Any]) -> tuple[str, list[str]] | Rejection:
        raw = self._inputs_of(proposal)
        if len(raw) > self.config.n_inputs:
            return Rejection("too_many_inputs", f"{len(raw)} > {self.config.n_inputs}")
        checked = super()._precheck(proposal)
        if not isinstance(checked, Rejection) and len(checked[1]) < self.config.min_inputs:
            return Rejection("too_few_inputs", f"{len(checked[1])} distinct < {self.config.min_inputs}")
        return checked

    def _build_payload(self, proposal: Mapping[str, Any], inputs: list[str], outputs: list[str]) -> dict[str, Any]:
        return {"program": proposal["program"], "message": proposal["message"], "inputs": inputs, "outputs": outputs}

    def _trivial(self, payload: Mapping[str, Any]) -> Rejection | None:
        inputs, outputs = payload["inputs"], payload["outputs"]
        if len(set(outputs)) == 1:
            return Rejection("trivial", f"f is constant on the inputs: {outputs[0][:200]}")
        if all(output == text for output, text in zip(outputs, inputs, strict=True)):
            return Rejection("trivial", "f returns its (single) argument on every input")
        return None

    def solver_prompt(self, task: Task) -> Prompt:
        payload = task.payload
        visible, _ = self.split(task)
        pairs = "\n".join(
            f"```input\n{payload['inputs'][i]}\n```\n```output\n{payload['outputs'][i]}\n```" for i in visible
        )
        example = format_answer(("python", "def f(...):\n    ..."), think="...")
        text = (
            "## Task: write the function\n\n"
            + self.instructions(
                "Write a Python function `f` that maps each input below (an argument list: `[1, 2], 'x'` means "
                "f([1, 2], 'x')) to its output. It is also tested on hidden inputs, so implement the general "
                "rule. Standard-library imports are allowed."
            )
            + f"Message from the task author:\n{payload['message']}\n\n{pairs}\n\n"
            + self.instructions(FORMAT_RULES, end="\n")
            + example
        )
        return Prompt(text=text)

    def _check_answer(self, task: Task, answer: str) -> Any:
        from flywheel.verifiers.sandbox import Job

        program = single_block(answer, "python")
        rejection = self._check_program(program)
        if rejection is not None:
            return Verdict("format_error" if rejection.reason == "syntax_error" else "wrong", rejection.reason)
        return Job(program=program, inputs=tuple(task.payload["inputs"]))

    def _judge(self, task: Task, calls: Sequence[Any]) -> Verdict:
        _, hidden = self.split(task)
        for i, (call, gold) in enumerate(zip(calls, task.payload["outputs"], strict=True)):
            if call.status != "ok":
                return Verdict("wrong", sandbox_reason(call.status))
            if not self._equal(call.value, gold):
                return Verdict("wrong", "hidden_mismatch" if i in hidden else "visible_mismatch")
        return Verdict("correct")

    def reference_answer(self, task: Task) -> str:
        return format_answer(("python", task.payload["program"]))

    def wrong_answer(self, task: Task) -> str:
        return format_answer(("python", "def f(*args):\n    raise ValueError('not the function')"))
