"""Self-proposed math tasks in the three Absolute Zero modes, computed and checked with SymPy.

A task is a SymPy-computable problem: an operation from `flywheel.verifiers.math.OPERATIONS` applied to
an expression in ``x`` (plus parameters such as a limit point), or, for induction, a function ``f(x)``
probed at rational points. The math checker computes every gold answer and compares every solver answer;
model text is only ever read by its non-evaluating parser, in its worker processes.

* ``math_deduction`` (``MathDeduction``): the solver sees the operation and the expression and gives the result.
* ``math_abduction`` (``MathAbduction``): the solver sees the operation and the result and gives any input
  that produces it (the operation is applied to the solver's input).
* ``math_induction`` (``MathInduction``): the proposer is shown a function and writes inputs plus a message;
  the solver sees the message and half of the (x, f(x)) pairs and writes ``f``, which must reproduce every
  pair exactly, the hidden half included.

Everything the modes share (bounds, the batched checker calls, answer verification, self-checks of new
tasks) lives in `MathFamily`; deduction and abduction share the operation proposals of `_OperationFamily`.
See docs/math_tasks.md for the formats and how each mode is verified.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, ClassVar

from flywheel.envs.base import InductionConfig, InductionFamily, Prompt, Rejection, Task, TaskFamily, Verdict
from flywheel.envs.parsing import (
    FormatError,
    extract_answer,
    fenced_blocks,
    format_answer,
    format_blocks,
    single_block,
)
from flywheel.envs.registry import register_family
from flywheel.envs.synthetic import MESSAGES, math_function, math_problem, rational_inputs
from flywheel.verifiers.math import OPERATIONS, ComputeRequest, ComputeResult

VARIABLE = "x"
"""The variable of every task (`sum` also uses its own index, `k` in the seeds)."""

FORMAT_RULES = (
    "Think step by step inside <think>…</think>, then give the final answer inside <answer>…</answer> "
    "using exactly the fenced blocks shown."
)
EXPRESSION_RULES = (
    f"Write math in SymPy syntax with the variable `{VARIABLE}`: `x**2*sin(x)`, `exp(x)`, `log(x)`, `sqrt(x)`, "
    "`pi`, `oo` (infinity), `E` and `I`; `e` and `i` also mean Euler's number and the imaginary unit."
)
ANSWER_RULES = "Plain SymPy syntax or LaTeX are both accepted, in one ```answer block."


@dataclass(frozen=True)
class Operation:
    """How an operation is described to the proposer and the solver.

    `params` lists the accepted parameter names (None: any variable name, for `evaluate`'s substitutions);
    `forward` poses it for deduction, `inverse` for abduction; both are formatted with the parameters and
    with ``expression`` / ``result``.
    """

    params: tuple[str, ...] | None
    forward: str
    inverse: str
    params_help: str = ""


OPERATION_INFO: Mapping[str, Operation] = {
    "evaluate": Operation(
        None,
        "Give the exact value of {expression} after substituting {substitutions}.",
        "Give an expression whose exact value after substituting {substitutions} is {result}.",
        "the value of each variable, e.g. `x: 3`",
    ),
    "simplify": Operation(
        (),
        "Simplify {expression}: give an equal expression at most as large as SymPy's simplify() result.",
        "Give an expression, not already in this form, that SymPy's simplify() turns into {result}.",
    ),
    "expand": Operation(
        (),
        "Expand {expression} fully (products and integer powers of sums multiplied out).",
        "Give an expression, not already expanded, whose full expansion is {result}.",
    ),
    "factor": Operation(
        (),
        "Factor {expression} completely over the rationals.",
        "Give an expression, not already in this form, whose complete factorisation is {result}.",
    ),
    "differentiate": Operation(
        ("order",),
        "Give the derivative of order {order} with respect to x of {expression}.",
        "Give a function of x whose derivative of order {order} with respect to x is {result}.",
        "`order` (default 1)",
    ),
    "integrate": Operation(
        ("lower", "upper"),
        "Integrate {expression} with respect to x{bounds}.",
        "Give an integrand f(x) whose integral with respect to x{bounds} is {result}.",
        "`lower` and `upper` for a definite integral (none: an antiderivative, any constant allowed)",
    ),
    "limit": Operation(
        ("point", "dir"),
        "Give the limit of {expression} as x -> {point}{direction}.",
        "Give an expression whose limit as x -> {point}{direction} is {result}.",
        "`point` (required, `oo` allowed), `dir` (`+`, `-`; default both sides)",
    ),
    "solve": Operation(
        ("domain",),
        "Give the set of all {domain} solutions x of {expression} = 0, written like {{-1, 2}} ({{}} if none).",
        "Give an expression in x (or an equation) whose set of {domain} solutions x is exactly {result}.",
        "`domain`: `complex` (default) or `real`",
    ),
    "series_coefficient": Operation(
        ("point", "order"),
        "Give the coefficient of (x - {point})**{order} in the Taylor series of {expression} around x = {point}.",
        "Give an expression whose Taylor series around x = {point} has the coefficient {result} "
        "for (x - {point})**{order}.",
        "`order` (required), `point` (default 0)",
    ),
    "sum": Operation(
        ("index", "lower", "upper"),
        "Give the closed form of the sum of {expression} for {index} from {lower} to {upper}.",
        "Give a summand in {index} whose sum for {index} from {lower} to {upper} has the closed form {result}.",
        "`index` (default x), `lower` and `upper` (required)",
    ),
}

FIXED_POINT_OPERATIONS = ("expand", "factor")
"""Operations whose result is the input in another form, so that the form of an answer matters: a correct
deduction answer is left unchanged by the operation. (For simplify, the answer must be no larger than SymPy's.)"""

SEED_PROPOSALS: tuple[dict[str, Any], ...] = (
    {"operation": "evaluate", "expression": "x**2 + 1", "params": {"x": "3"}},
    {"operation": "simplify", "expression": "(x**2 - 1)/(x - 1)", "params": {}},
    {"operation": "expand", "expression": "(x + 1)**2", "params": {}},
    {"operation": "factor", "expression": "x**2 - 1", "params": {}},
    {"operation": "differentiate", "expression": "x**2", "params": {}},
    {"operation": "integrate", "expression": "2*x", "params": {}},
    {"operation": "limit", "expression": "sin(x)/x", "params": {"point": "0"}},
    {"operation": "solve", "expression": "x**2 - x - 2", "params": {}},
    {"operation": "series_coefficient", "expression": "exp(x)", "params": {"point": "0", "order": "3"}},
    {"operation": "sum", "expression": "k", "params": {"index": "k", "lower": "1", "upper": "n"}},
)
"""Zero-data seeds of deduction and abduction: one small task per operation."""

EXAMPLE_PROPOSALS: tuple[dict[str, Any], ...] = (
    {"operation": "evaluate", "expression": "x**3 - 2*x", "params": {"x": "2"}},
    {"operation": "simplify", "expression": "(x**2 - 4)/(x + 2)", "params": {}},
    {"operation": "expand", "expression": "(x - 2)*(x + 3)", "params": {}},
    {"operation": "factor", "expression": "x**2 - 5*x + 6", "params": {}},
    {"operation": "differentiate", "expression": "x**3*sin(x)", "params": {}},
    {"operation": "integrate", "expression": "3*x**2 + cos(x)", "params": {}},
    {"operation": "limit", "expression": "(1 - cos(x))/x**2", "params": {"point": "0"}},
    {"operation": "solve", "expression": "x**2 - 5*x + 6", "params": {}},
    {"operation": "series_coefficient", "expression": "cos(x)", "params": {"point": "0", "order": "2"}},
    {"operation": "sum", "expression": "k**2", "params": {"index": "k", "lower": "1", "upper": "n"}},
)
"""One valid proposal per operation, unlike the seeds (`example_proposals`)."""

INDUCTION_SEEDS: tuple[dict[str, Any], ...] = (
    {"expression": "2*x + 1", "inputs": ["0", "1", "2", "3", "-1", "1/2"], "message": "A straight line."},
    {"expression": "x**2", "inputs": ["0", "1", "2", "3", "-2", "1/3"], "message": "A classic parabola."},
)
"""Zero-data seeds of induction."""

_DIGITS = re.compile(r"\d+")
_EXPONENT = re.compile(r"(?:\*\*|\^)\s*[({]?\s*-?\s*(\d+)")
_UNRESOLVED = re.compile(r"\b(?:zoo|nan|Piecewise|RootOf|CRootOf|AccumBounds|ConditionSet|ImageSet)\b")
_RATIONAL = re.compile(r"-?\d+(?:/0*[1-9]\d*)?")
_PARAM_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*[:=]\s*(\S.*)")
_WHITESPACE = re.compile(r"\s+")


@dataclass
class MathFamilyConfig(InductionConfig):
    """Settings of the math families; their size bounds and allowed operations come from the rails
    (`flywheel.envs.rails.Rails`: `max_expression_nodes`, `max_degree`, `max_digits`, `math_operations`)."""

    operations: tuple[str, ...] | None = field(
        default=None,
        metadata={
            "help": "Deduction/abduction: operations a proposal may use, among the rails' `math_operations` "
            "(default: all of those)."
        },
    )
    max_answer_chars: int = field(default=300, metadata={"help": "Longest gold answer text (each value, induction)."})

    def validate(self) -> None:
        if self.operations is not None:
            self.operations = tuple(self.operations)
            unknown = sorted(set(self.operations) - set(OPERATIONS))
            if unknown or not self.operations:
                raise ValueError(f"operations must be a non-empty subset of {OPERATIONS}; unknown: {unknown}")
        super().validate()
        if self.max_answer_chars < 1:
            raise ValueError(f"max_answer_chars must be positive, not {self.max_answer_chars}")


def normalise(text: str) -> str:
    """Text without whitespace: the comparison key for "the same expression" written with other spacing."""
    return _WHITESPACE.sub("", text)


PARAM_DEFAULTS: Mapping[str, Mapping[str, str]] = {
    "differentiate": {"order": "1"},
    "series_coefficient": {"point": "0"},
    "sum": {"index": VARIABLE},
    "solve": {"domain": "complex"},
}
"""The value an operation assumes for a parameter that is not given (see `OPERATION_INFO`)."""


def _canonical_params(operation: str, params: Mapping[str, str]) -> dict[str, str]:
    """`params` with the operation's defaults filled in, whitespace removed and rationals in lowest terms."""
    canonical = {**PARAM_DEFAULTS.get(operation, {}), **{key: normalise(value) for key, value in params.items()}}
    return {key: str(Fraction(value)) if _RATIONAL.fullmatch(value) else value for key, value in canonical.items()}


def _abstract_numbers(expression: str) -> str:
    """`expression` without whitespace and with every run of digits replaced by ``#``."""
    return _DIGITS.sub("#", normalise(expression))


def _rejection_of(result: ComputeResult, what: str) -> Rejection | None:
    """A rejection when the checker could not compute `what` of a proposal."""
    if result.status == "ok" and result.value is not None:
        if _UNRESOLVED.search(result.value):
            return Rejection("not_computable", f"{what} is undefined or has no closed form: {result.value[:200]}")
        return None
    reason = {"parse_error": "parse_error", "timeout": "timeout"}.get(result.status, "not_computable")
    return Rejection(reason, f"{what}: {result.reason}"[:500])


def _verdict_of(result: ComputeResult) -> Verdict | None:
    """The verdict when the checker could not apply an operation to a solver's answer (None when it could)."""
    if result.status == "ok" and result.value is not None:
        return None
    if result.status == "parse_error":
        return Verdict("format_error", result.reason[:300])
    return Verdict("wrong", f"{result.status}: {result.reason}"[:300])


def _read_answer(text: str) -> str:
    """The solver's answer: the ```answer block, or the whole <answer> when it holds no fence."""
    return single_block(extract_answer(text), "answer", allow_bare=True)


def _is_set(result: str) -> bool:
    """Whether a result text is a solution set (`{-1, 2}`, `EmptySet`)."""
    return result.startswith("{") or result == "EmptySet"


def _absent_integer(text: str) -> str:
    """An integer with more digits than any number in `text`, so not equal to any of its rational values."""
    return str(10 ** max((len(run) for run in _DIGITS.findall(text)), default=0) + 1)


def _block(answer: str, tag: str) -> str | None:
    """The one ```tag block, None when there is none. Raises FormatError on two."""
    found = fenced_blocks(answer).get(tag, [])
    if len(found) > 1:
        raise FormatError(f"more than one ```{tag} block")
    return found[0].strip() if found else None


# ------------------------------------------------------------------------------------------- shared base


class MathFamily(TaskFamily):
    """What the math modes share: bounds, batched checker calls and answer verification.

    A subclass says which checker requests test one answer (`_answer_requests`) and which (gold,
    produced) pairs must then be equal (`_answer_pairs`); `verify` batches both over all answers.
    """

    domain = "math"
    config_class = MathFamilyConfig
    config: MathFamilyConfig

    def __init__(self, config: MathFamilyConfig | None = None, verifiers: Any = None, rails: Any = None) -> None:
        """Resolves `config.operations` against the rails: none given means every operation they allow."""
        super().__init__(config, verifiers, rails)
        allowed = tuple(self.rails.math_operations)
        chosen = self.config.operations or allowed
        forbidden = sorted(set(chosen) - set(allowed))
        if forbidden:
            raise ValueError(f"{self.name}: operations {forbidden} are not in rails.math_operations {list(allowed)}")
        self.config = replace(self.config, operations=tuple(chosen))

    # --- subclass hooks ------------------------------------------------------------------------------
    def _answer_requests(self, task: Task, answer: str) -> list[ComputeRequest]:
        """Checker computations on the (extracted) answer that verification needs."""
        raise NotImplementedError

    def _answer_pairs(
        self, task: Task, answer: str, results: Sequence[ComputeResult]
    ) -> list[tuple[str, str]] | Verdict:
        """(gold, prediction) pairs that must all be equal for the answer to be correct, or a final verdict.
        `results` answer `_answer_requests` and all computed fine."""
        raise NotImplementedError

    def _seed_proposals(self) -> Sequence[Mapping[str, Any]]:
        """Parsed proposals of the zero-data seed tasks."""
        raise NotImplementedError

    def seed_tasks(self) -> list[Task]:
        """The seed proposals, validated like any proposal (so every text in them is exactly SymPy's)."""
        seeds = self._seed_proposals()
        tasks = self.validate_proposals(seeds)
        rejected = [(seed, item) for seed, item in zip(seeds, tasks, strict=True) if isinstance(item, Rejection)]
        if rejected:
            raise RuntimeError(f"{self.name}: seed proposals rejected: {rejected}")
        return tasks  # type: ignore[return-value]

    # --- checker access ------------------------------------------------------------------------------
    def _compute(self, requests: Sequence[ComputeRequest]) -> list[ComputeResult]:
        return list(self.verifiers.math.compute_many(list(requests))) if requests else []

    # --- bounds --------------------------------------------------------------------------------------
    def _bounds_rejection(self, texts: Iterable[str], what: str) -> Rejection | None:
        """Digit and exponent bounds, read from the text (no parsing, so they can run before any computation)."""
        for text in texts:
            digits = max((len(run) for run in _DIGITS.findall(text)), default=0)
            if digits > self.rails.max_digits:
                return Rejection("number_too_large", f"{what}: a number with {digits} > {self.rails.max_digits} digits")
            degree = max((int(power) for power in _EXPONENT.findall(text)), default=0)
            if degree > self.rails.max_degree:
                return Rejection("degree_too_high", f"{what}: power {degree} > {self.rails.max_degree}")
        return None

    def _size_rejection(self, size: int) -> Rejection | None:
        if size > self.rails.max_expression_nodes:
            return Rejection("too_large", f"{size} > {self.rails.max_expression_nodes} expression nodes")
        return None

    def _answer_rejection(self, value: str, what: str) -> Rejection | None:
        if len(value) > self.config.max_answer_chars:
            return Rejection("answer_too_long", f"{what}: {len(value)} > {self.config.max_answer_chars} chars")
        return self._bounds_rejection([value], what)

    def _self_checked(self, built: list[Task | Rejection]) -> list[Task | Rejection]:
        """Rejects new tasks whose own reference answer does not verify (e.g. SymPy's factor output that
        SymPy would factor differently), so every task in a buffer is solvable as posed."""
        index = [i for i, item in enumerate(built) if isinstance(item, Task)]
        tasks: list[Task] = [built[i] for i in index]  # type: ignore[misc]
        verdicts = self.verify(tasks, [self.reference_answer(task) for task in tasks]) if tasks else []
        for i, verdict in zip(index, verdicts, strict=True):
            if not verdict.correct:
                built[i] = Rejection("unverifiable", f"the reference answer is {verdict.status}: {verdict.reason}")
        return built

    # --- solving -------------------------------------------------------------------------------------
    def verify(self, tasks: Sequence[Task], answers: Sequence[str]) -> list[Verdict]:
        """Read every answer, run all checker computations in one batch, then all comparisons in another."""
        verdicts: list[Verdict | None] = []
        pending: list[tuple[int, str, list[ComputeRequest]]] = []
        for task, text in zip(tasks, answers, strict=True):
            try:
                answer = _read_answer(text)
            except FormatError as error:
                verdicts.append(Verdict("format_error", str(error)))
                continue
            pending.append((len(verdicts), answer, self._answer_requests(task, answer)))
            verdicts.append(None)
        results = iter(self._compute([request for _, _, requests in pending for request in requests]))
        checks: list[tuple[int, list[tuple[str, str]]]] = []
        for i, answer, requests in pending:
            computed = [next(results) for _ in requests]
            failed = next((v for v in map(_verdict_of, computed) if v is not None), None)
            judged = failed if failed is not None else self._answer_pairs(tasks[i], answer, computed)
            if isinstance(judged, Verdict):
                verdicts[i] = judged
            else:
                checks.append((i, judged))
        flat = [pair for _, pairs in checks for pair in pairs]
        outcomes = iter(self.verifiers.math.check_many(flat) if flat else [])
        for i, pairs in checks:
            found = [next(outcomes) for _ in pairs]
            verdicts[i] = self._combine(found)
        return verdicts  # type: ignore[return-value]

    @staticmethod
    def _combine(outcomes: Sequence[Any]) -> Verdict:
        """One verdict from the `MathVerdict`s of an answer's comparisons: correct only if all are equal."""
        for outcome in outcomes:
            if outcome.verdict == "parse_error":
                return Verdict("format_error", outcome.reason[:300])
            if not outcome.equal:
                return Verdict("wrong", f"{outcome.verdict}: {outcome.reason}"[:300])
        return Verdict("correct")

    def complexity(self, task: Task) -> int:
        """Node count of the task's input expression."""
        return int(task.payload["size"])


# ------------------------------------------------------------------------------ deduction and abduction


def _canonical_request(expression: str) -> ComputeRequest:
    """SymPy's reading of an expression (`evaluate` without substitutions): its canonical text and size."""
    return ComputeRequest("evaluate", expression, VARIABLE)


def _operation_request(payload: Mapping[str, Any], expression: str) -> ComputeRequest:
    return ComputeRequest(payload["operation"], expression, VARIABLE, dict(payload["params"]))


def _is_antiderivative(payload: Mapping[str, Any]) -> bool:
    """Indefinite integration: answers are compared through their derivatives (any constant counts)."""
    return payload["operation"] == "integrate" and not _is_definite(payload["params"])


def _is_definite(params: Mapping[str, str]) -> bool:
    return bool({"lower", "upper"} & set(params))


def _describe(payload: Mapping[str, Any], template: str) -> str:
    """An operation's description (`Operation.forward` / `.inverse`) filled in for one task."""
    params = dict(payload["params"])
    bounds = f" from {params['lower']} to {params['upper']}" if _is_definite(params) else " (up to a constant)"
    direction = {"+": " from above", "-": " from below"}.get(params.get("dir", ""), "")
    values = {
        "order": "1",
        "point": "0",
        "index": VARIABLE,
        "domain": "complex",
        **params,
        "expression": f"`{payload['expression']}`",
        "result": f"`{payload.get('result', '')}`",
        "substitutions": ", ".join(f"{k} = {v}" for k, v in sorted(params.items())) or "nothing",
        "bounds": bounds,
        "direction": direction,
    }
    return template.format_map(values)


def _params_text(params: Mapping[str, str]) -> str:
    return "\n".join(f"{key}: {value}" for key, value in sorted(params.items()))


def operation_proposal_blocks(payload: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The answer blocks of a deduction/abduction proposal (operation, expression, params when any)."""
    blocks = [("operation", payload["operation"]), ("expression", payload["expression"])]
    if payload["params"]:
        blocks.append(("params", _params_text(payload["params"])))
    return blocks


class _OperationFamily(MathFamily):
    """Tasks made of one operation, one expression and the result SymPy computed (deduction and abduction)."""

    challenge: ClassVar[str]
    """What the solver will have to do, in the proposer prompt."""

    def _seed_proposals(self) -> Sequence[Mapping[str, Any]]:
        return [seed for seed in SEED_PROPOSALS if seed["operation"] in self.config.operations]

    def example_proposals(self) -> list[tuple[Prompt, str]]:
        prompt = self.proposer_prompt(self.seed_tasks(), random.Random(0))
        examples = [example for example in EXAMPLE_PROPOSALS if example["operation"] in self.config.operations]
        return [(prompt, format_answer(*operation_proposal_blocks(example))) for example in examples]

    def proposer_prompt(self, references: Sequence[Task], rng: random.Random) -> Prompt:
        shown = "\n\n".join(
            format_blocks(*operation_proposal_blocks(task.payload))
            for task in references
            if "operation" in task.payload
        )
        operations = "\n".join(
            f"- `{name}`" + (f": params {OPERATION_INFO[name].params_help}" if OPERATION_INFO[name].params_help else "")
            for name in self.config.operations
        )
        example = format_answer(("operation", "..."), ("expression", "..."), think="...")
        text = (
            "## Task: create a math problem that SymPy can compute\n\n"
            + self.instructions(
                f"Choose one operation and an expression, different from the references, {self.challenge}"
            )
            + self.instructions(
                f"Operations:\n{operations}\n\n{EXPRESSION_RULES}\n"
                f"Bounds: at most {self.rails.max_expression_nodes} expression nodes, integer powers up to "
                f"{self.rails.max_degree}, numbers of at most {self.rails.max_digits} digits (the result too), and "
                "the result must differ from the expression.\n"
                "Write the operation name in an ```operation block, the expression in an ```expression block and, "
                "only when the operation takes parameters, one `name: value` per line in a ```params block."
            )
            + f"### Reference problems\n{shown or '(none yet)'}\n\n### Answer format\n"
            + self.instructions(FORMAT_RULES, end="\n")
            + example
        )
        return Prompt(text=text, context={"references": [task.task_id for task in references]})

    def parse_proposal(self, text: str, prompt: Prompt) -> Mapping[str, Any] | Rejection:
        try:
            answer = extract_answer(text)
            operation = single_block(answer, "operation").strip()
            expression = single_block(answer, "expression").strip()
            params_block = _block(answer, "params")
        except FormatError as error:
            return Rejection("parse_error", str(error))
        params: dict[str, str] = {}
        for line in (params_block or "").splitlines():
            if not line.strip():
                continue
            match = _PARAM_LINE.fullmatch(line.strip())
            if match is None or match.group(1) in params:
                return Rejection("bad_params", f"not a distinct `name: value` line: {line[:100]!r}")
            params[match.group(1)] = match.group(2).strip()
        return {"operation": operation, "expression": expression, "params": params}

    def warmup_proposal(self, prompt: Prompt, rng: random.Random) -> str:
        operation, expression, params = math_problem(rng, self.config.operations)
        return format_answer(
            *operation_proposal_blocks({"operation": operation, "expression": expression, "params": params})
        )

    def _precheck(self, proposal: Mapping[str, Any]) -> Rejection | None:
        operation, expression, params = proposal.get("operation"), proposal.get("expression"), proposal.get("params")
        if not isinstance(expression, str) or not isinstance(params, Mapping):
            return Rejection("parse_error", "a proposal needs an expression text and a params mapping")
        if not all(isinstance(value, str) for value in params.values()):
            return Rejection("bad_params", "parameter values must be texts")
        if operation not in self.config.operations:
            return Rejection("operation_not_allowed", f"{str(operation)[:50]!r} is not one of {self.config.operations}")
        accepted = OPERATION_INFO[operation].params
        unknown = sorted(set(proposal["params"]) - set(accepted)) if accepted is not None else []
        if unknown:
            return Rejection("bad_params", f"{operation} takes {accepted or 'no parameters'}, not {unknown}")
        return self._bounds_rejection([proposal["expression"], *proposal["params"].values()], "input")

    def validate_proposals(self, proposals: Sequence[Mapping[str, Any]]) -> list[Task | Rejection]:
        """Compute each gold result and the canonical input in one batch, the facts about the results in a
        second one, then build tasks and self-check them."""
        built: list[Task | Rejection | None] = [self._precheck(proposal) for proposal in proposals]
        todo = [i for i, item in enumerate(built) if item is None]
        first = iter(
            self._compute(
                [
                    request
                    for i in todo
                    for request in (
                        _operation_request(proposals[i], proposals[i]["expression"]),
                        _canonical_request(proposals[i]["expression"]),
                    )
                ]
            )
        )
        payloads: dict[int, dict[str, Any]] = {}
        for i in todo:
            gold, canonical = next(first), next(first)
            rejection = (
                _rejection_of(canonical, "input")
                or _rejection_of(gold, proposals[i]["operation"])
                or self._size_rejection(canonical.size)
                or self._bounds_rejection([canonical.value], "input")  # type: ignore[list-item]
                or self._answer_rejection(gold.value, "result")  # type: ignore[arg-type]
            )
            if rejection is None and normalise(gold.value) == normalise(canonical.value):  # type: ignore[arg-type]
                rejection = Rejection("trivial", f"the result is the input itself: {canonical.value}")
            if rejection is not None:
                built[i] = rejection
                continue
            payloads[i] = {
                **proposals[i],
                "params": dict(proposals[i]["params"]),
                "canonical": canonical.value,
                "size": canonical.size,
                "result": gold.value,
            }
        self._add_result_facts(payloads, built)
        for i, payload in payloads.items():
            if built[i] is None:
                built[i] = self.make_task(payload)
        return self._self_checked(built)  # type: ignore[arg-type]

    def _add_result_facts(self, payloads: dict[int, dict[str, Any]], built: list[Task | Rejection | None]) -> None:
        """What verification needs to know about a result: its size for simplify (which must shrink the
        input), its derivative for an antiderivative."""
        facts: list[tuple[int, str, ComputeRequest]] = []
        for i, payload in payloads.items():
            if payload["operation"] == "simplify":
                facts.append((i, "result_size", _canonical_request(payload["result"])))
            if _is_antiderivative(payload):
                facts.append((i, "derivative", ComputeRequest("differentiate", payload["result"], VARIABLE)))
        for (i, fact, _), result in zip(facts, self._compute([request for _, _, request in facts]), strict=True):
            payloads[i][fact] = result.size if fact == "result_size" else result.value
            built[i] = _rejection_of(result, f"{fact} of the result") or self._shrink_rejection(payloads[i])

    @staticmethod
    def _shrink_rejection(payload: Mapping[str, Any]) -> Rejection | None:
        if payload["operation"] == "simplify" and payload["result_size"] >= payload["size"]:
            return Rejection("trivial", f"simplify does not shrink the input: {payload['result']}")
        return None

    def dedup_key(self, payload: Mapping[str, Any]) -> str:
        """The operation, SymPy's canonical form of the input and the parameters with their defaults filled
        in and rational values in lowest terms (`order: 1` is no `order`; `x: 6/2` is `x: 3`)."""
        params = _canonical_params(payload["operation"], payload["params"])
        return json.dumps([payload["operation"], normalise(payload["canonical"]), sorted(params.items())])

    def structure_key(self, payload: Mapping[str, Any]) -> str:
        """The operation, the canonical input with every number abstracted, and the parameter names."""
        params = _canonical_params(payload["operation"], payload["params"])
        return json.dumps([payload["operation"], _abstract_numbers(payload["canonical"]), sorted(params)])


@register_family
class MathDeduction(_OperationFamily):
    """Given an operation and an expression, give the result (the math analogue of AZR's ``code_o``).

    The answer must equal SymPy's result; antiderivatives are compared through their derivatives, and for
    simplify / expand / factor the answer must also be in the asked-for form (see `_answer_requests`)."""

    name = "math_deduction"
    env_name = "MathDeduction"
    mode = "deduction"
    challenge = "whose result takes careful step-by-step work to compute by hand."

    def solver_prompt(self, task: Task) -> Prompt:
        question = _describe(task.payload, OPERATION_INFO[task.payload["operation"]].forward)
        example = format_answer(("answer", "..."), think="...")
        text = (
            f"## Task: compute the result\n\n{question}\n\n"
            + self.instructions(f"{EXPRESSION_RULES} {ANSWER_RULES}")
            + self.instructions(FORMAT_RULES, end="\n")
            + example
        )
        return Prompt(text=text)

    def _answer_requests(self, task: Task, answer: str) -> list[ComputeRequest]:
        """Antiderivative: the answer's derivative. Expand / factor: the answer as read, and the operation
        applied to it (a correct answer is a fixed point). Simplify: the answer as read (for its size)."""
        operation = task.payload["operation"]
        if _is_antiderivative(task.payload):
            return [ComputeRequest("differentiate", answer, VARIABLE)]
        if operation in FIXED_POINT_OPERATIONS:
            return [_canonical_request(answer), _operation_request(task.payload, answer)]
        if operation == "simplify":
            return [_canonical_request(answer)]
        return []

    def _answer_pairs(
        self, task: Task, answer: str, results: Sequence[ComputeResult]
    ) -> list[tuple[str, str]] | Verdict:
        payload = task.payload
        if _is_antiderivative(payload):
            return [(payload["derivative"], results[0].value)]  # type: ignore[list-item]
        operation = payload["operation"]
        if operation in FIXED_POINT_OPERATIONS and normalise(results[0].value) != normalise(results[1].value):  # type: ignore[arg-type]
            return Verdict("wrong", f"not in {operation}ed form: {operation} gives {results[1].value}")
        if operation == "simplify" and results[0].size > payload["result_size"]:
            return Verdict("wrong", f"not simplified: {results[0].size} > {payload['result_size']} nodes")
        return [(payload["result"], answer)]

    def reference_answer(self, task: Task) -> str:
        return format_answer(("answer", task.payload["result"]))

    def wrong_answer(self, task: Task) -> str:
        """The result plus a term the comparison must notice: `x` for antiderivatives (a constant would be
        fine), a new element for solution sets, a finite value for infinite limits."""
        result = task.payload["result"]
        if _is_set(result):
            elements = result.strip("{}").strip() if result != "EmptySet" else ""
            wrong = "{" + ", ".join(filter(None, [elements, _absent_integer(result)])) + "}"
        elif result in ("oo", "-oo"):
            wrong = "0"
        else:
            wrong = f"{result} + {VARIABLE if _is_antiderivative(task.payload) else 1}"
        return format_answer(("answer", wrong))


@register_family
class MathAbduction(_OperationFamily):
    """Given an operation and its result, give an input that produces it (the math analogue of ``code_i``).

    Any input counts: the operation is applied to the answer and the outcome compared with the result.
    Antiderivatives are checked the honest inverse way (the answer must equal the result's derivative), and
    an answer that is the result itself (as SymPy reads both) is wrong."""

    name = "math_abduction"
    env_name = "MathAbduction"
    mode = "abduction"
    challenge = "such that finding an input that produces its result takes careful reasoning backwards."

    def solver_prompt(self, task: Task) -> Prompt:
        question = _describe(task.payload, OPERATION_INFO[task.payload["operation"]].inverse)
        example = format_answer(("answer", "..."), think="...")
        text = (
            f"## Task: find an input\n\n{question}\n\n"
            + self.instructions(
                f"Any such input is accepted, except {task.payload['result']} itself. {EXPRESSION_RULES} {ANSWER_RULES}"
            )
            + self.instructions(FORMAT_RULES, end="\n")
            + example
        )
        return Prompt(text=text)

    def _answer_requests(self, task: Task, answer: str) -> list[ComputeRequest]:
        """The answer as read (to refuse a copy of the result) and, unless the result is an antiderivative,
        the operation applied to it."""
        if _is_antiderivative(task.payload):
            return [_canonical_request(answer)]
        return [_canonical_request(answer), _operation_request(task.payload, answer)]

    def _answer_pairs(
        self, task: Task, answer: str, results: Sequence[ComputeResult]
    ) -> list[tuple[str, str]] | Verdict:
        payload = task.payload
        if normalise(results[0].value) == normalise(payload["result"]):  # type: ignore[arg-type]
            return Verdict("wrong", "the answer is the result itself")
        if _is_antiderivative(payload):
            return [(payload["derivative"], results[0].value)]  # type: ignore[list-item]
        return [(payload["result"], results[1].value)]  # type: ignore[list-item]

    def reference_answer(self, task: Task) -> str:
        return format_answer(("answer", task.payload["expression"]))

    def wrong_answer(self, task: Task) -> str:
        """The result itself, which the task excludes; for a solution set, an equation with another root."""
        result = task.payload["result"]
        return format_answer(("answer", f"{VARIABLE} - {_absent_integer(result)}" if _is_set(result) else result))


# ------------------------------------------------------------------------------------------------ induction


@register_family
class MathInduction(InductionFamily, MathFamily):
    """Given a message and half of the (x, f(x)) pairs, write ``f`` (the math analogue of ``code_f``).

    The proposer is shown a function (from the prompt's references; a seed function when there are none)
    and writes rational inputs, each in its own ```input block, and one ```message block; it may replace
    the function with its own ```expression block. The checker computes f at every input exactly; the pairs
    are split half/half into visible and hidden by a generator seeded with the task id, and the solver's
    expression, evaluated exactly at every input, must give every value, the hidden ones included.
    """

    name = "math_induction"
    env_name = "MathInduction"
    mode = "induction"

    def _seed_proposals(self) -> Sequence[Mapping[str, Any]]:
        return INDUCTION_SEEDS

    def proposer_prompt(self, references: Sequence[Task], rng: random.Random) -> Prompt:
        expressions = [
            task.payload["expression"] for task in references if isinstance(task.payload.get("expression"), str)
        ]
        expression = rng.choice(expressions) if expressions else INDUCTION_SEEDS[0]["expression"]
        n = self.config.n_inputs
        example = format_answer(("input", "..."), ("input", "..."), ("message", "..."), think="...")
        text = (
            f"## Task: write {n} inputs and a message for a function\n\n"
            + self.instructions(
                f"A test subject will see your message and about half of the pairs (x, f(x)) of the function f "
                f"below, but not its formula, and must write a formula that gives exactly f(x) at all {n} inputs, "
                "the unseen ones included. Choose distinct inputs that together pin down f, and a short message "
                "that hints at it without giving the formula away."
            )
            + self.instructions(
                f"- Write each input in its own ```input block: an integer or a fraction such as `-3/2`, at most "
                f"{self.rails.max_digits} digits.\n- Write the message in one ```message block.\n"
                f"- To use your own function instead, add it in an ```expression block ({EXPRESSION_RULES} At most "
                f"{self.rails.max_expression_nodes} nodes and powers up to {self.rails.max_degree}.)"
            )
            + f"f(x) = {expression}\n\n### Answer format\n"
            + self.instructions(FORMAT_RULES, end="\n")
            + example
        )
        return Prompt(
            text=text, context={"expression": expression, "references": [task.task_id for task in references]}
        )

    def parse_proposal(self, text: str, prompt: Prompt) -> Mapping[str, Any] | Rejection:
        try:
            answer = extract_answer(text)
            message = single_block(answer, "message").strip()
            expression = _block(answer, "expression") or prompt.context.get("expression")
        except FormatError as error:
            return Rejection("parse_error", str(error))
        if not isinstance(expression, str) or not expression:
            return Rejection("parse_error", "no ```expression block and the prompt carries no function")
        if not message or len(message) > self.config.max_message_chars:
            return Rejection("bad_message", f"the message must have 1..{self.config.max_message_chars} chars")
        inputs = [text.strip() for text in fenced_blocks(answer).get("input", [])]
        return {"expression": expression, "inputs": inputs, "message": message}

    def example_proposals(self) -> list[tuple[Prompt, str]]:
        prompt = self.proposer_prompt(self.seed_tasks(), random.Random(0))
        inputs = [("input", str(x)) for x in range(-2, 6)]
        return [
            (prompt, format_answer(*inputs, ("message", "A polynomial."))),
            (prompt, format_answer(*inputs, ("message", "A cubic."), ("expression", "x**3 - x"))),
        ]

    def warmup_proposal(self, prompt: Prompt, rng: random.Random) -> str:
        """`min_inputs` integers and a hint, for the shown function or (half the time) a new one."""
        blocks = [("input", x) for x in rational_inputs(rng, self.config.min_inputs)]
        blocks.append(("message", rng.choice(MESSAGES)))
        if rng.random() < 0.5:
            blocks.append(("expression", math_function(rng)))
        return format_answer(*blocks)

    def _precheck(self, proposal: Mapping[str, Any]) -> list[str] | Rejection:
        """The canonical, distinct inputs (fractions in lowest terms), or why they do not do."""
        raw = proposal["inputs"]
        if len(raw) > self.config.n_inputs:
            return Rejection("too_many_inputs", f"{len(raw)} > {self.config.n_inputs}")
        rejection = self._bounds_rejection([proposal["expression"], *raw], "input")
        if rejection is not None:
            return rejection
        inputs: list[str] = []
        for text in raw:
            if not _RATIONAL.fullmatch(text):
                return Rejection("bad_input", f"not an integer or a fraction: {text[:50]!r}")
            value = str(Fraction(text))
            if value not in inputs:
                inputs.append(value)
        if len(inputs) < self.config.min_inputs:
            return Rejection("too_few_inputs", f"{len(inputs)} distinct < {self.config.min_inputs}")
        return inputs

    def validate_proposals(self, proposals: Sequence[Mapping[str, Any]]) -> list[Task | Rejection]:
        """Read each function and compute it at every input in one batch, then build tasks and self-check them."""
        checked = [self._precheck(proposal) for proposal in proposals]
        todo = [i for i, item in enumerate(checked) if not isinstance(item, Rejection)]
        requests = [
            request
            for i in todo
            for request in (
                _canonical_request(proposals[i]["expression"]),
                *(ComputeRequest("evaluate", proposals[i]["expression"], VARIABLE, {VARIABLE: x}) for x in checked[i]),
            )
        ]
        results = iter(self._compute(requests))
        built: list[Task | Rejection] = [item if isinstance(item, Rejection) else None for item in checked]  # type: ignore[misc]
        for i in todo:
            inputs: list[str] = checked[i]  # type: ignore[assignment]
            canonical, values = next(results), [next(results) for _ in inputs]
            built[i] = self._build(proposals[i], canonical, inputs, values)
        return self._self_checked(built)

    def _build(
        self, proposal: Mapping[str, Any], canonical: ComputeResult, inputs: list[str], values: list[ComputeResult]
    ) -> Task | Rejection:
        rejection = (
            _rejection_of(canonical, "function")
            or self._size_rejection(canonical.size)
            or self._bounds_rejection([canonical.value], "function")  # type: ignore[list-item]
        )
        for x, value in zip(inputs, values, strict=True):
            rejection = rejection or _rejection_of(value, f"f({x})") or self._answer_rejection(value.value, f"f({x})")  # type: ignore[arg-type]
        if rejection is not None:
            return rejection
        outputs = [value.value for value in values]
        if len(set(outputs)) == 1:
            return Rejection("trivial", f"f is constant on the inputs: {outputs[0]}")
        payload = {
            "expression": proposal["expression"],
            "canonical": canonical.value,
            "size": canonical.size,
            "message": proposal["message"],
            "inputs": inputs,
            "outputs": outputs,
        }
        return self.make_task(payload)

    def solver_prompt(self, task: Task) -> Prompt:
        payload = task.payload
        pairs = "\n".join(f"f({payload['inputs'][i]}) = {payload['outputs'][i]}" for i in payload["visible"])
        example = format_answer(("answer", "..."), think="...")
        text = (
            "## Task: find the function\n\n"
            + self.instructions(
                "Write a formula for f(x) that gives exactly the values below. It is also evaluated exactly at "
                "hidden inputs, so find the general rule."
            )
            + f"Message from the task author:\n{payload['message']}\n\n{pairs}\n\n"
            + self.instructions(f"{EXPRESSION_RULES} {ANSWER_RULES} Write only the formula (no `f(x) =`).")
            + self.instructions(FORMAT_RULES, end="\n")
            + example
        )
        return Prompt(text=text)

    def _answer_requests(self, task: Task, answer: str) -> list[ComputeRequest]:
        return [ComputeRequest("evaluate", answer, VARIABLE, {VARIABLE: x}) for x in task.payload["inputs"]]

    def _answer_pairs(
        self, task: Task, answer: str, results: Sequence[ComputeResult]
    ) -> list[tuple[str, str]] | Verdict:
        """Every pair, visible and hidden; an exact value compared with an exact value (no tolerance)."""
        return [(gold, result.value) for gold, result in zip(task.payload["outputs"], results, strict=True)]  # type: ignore[misc]

    def reference_answer(self, task: Task) -> str:
        return format_answer(("answer", task.payload["expression"]))

    def wrong_answer(self, task: Task) -> str:
        return format_answer(("answer", f"{task.payload['canonical']} + 1"))

    def dedup_key(self, payload: Mapping[str, Any]) -> str:
        return json.dumps([normalise(payload["canonical"]), sorted(payload["inputs"])])

    def structure_key(self, payload: Mapping[str, Any]) -> str:
        return _abstract_numbers(payload["canonical"])

    def triviality(self, task: Task) -> Rejection | None:
        if task.payload["outputs"] == task.payload["inputs"]:
            return Rejection("trivial", "f(x) = x on every input")
        return None
