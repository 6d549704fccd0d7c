"""The agent: one causal LM playing both roles, proposer and solver. It renders prompts and samples
completions; it holds no verification logic (that belongs to the task families)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal, get_args

from flywheel.envs.base import ROLES, Prompt

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Template = Literal["auto", "r1", "plain", "chat"]
Role = Literal["propose", "solve"]

INSTRUCTION = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
    "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>."
)
"""The R1 instruction as used by Absolute Zero Reasoner, for both roles."""

PLAIN_TEMPLATE = "User: {prompt}\nAssistant: <think>"
"""The r1 template without the R1 instruction: for a small model trained from scratch, which learns the
format in its warm start and would spend most of its compute on the instruction's tokens."""
R1_TEMPLATE = INSTRUCTION + " " + PLAIN_TEMPLATE
"""The r1 prompt ends inside the opened ``<think>``; see `Agent.completion_text`."""
TEXT_TEMPLATES = {"r1": R1_TEMPLATE, "plain": PLAIN_TEMPLATE}
"""The plain-text templates, which both end inside the opened ``<think>``."""
TEMPLATES: tuple[Template, ...] = get_args(Template)


class Agent:
    """Renders family prompts for one model and samples completions from it.

    `template`: ``"r1"`` (the plain-text R1 template above), ``"plain"`` (the same without the R1
    instruction), ``"chat"`` (the tokenizer's chat template with `INSTRUCTION` as the system message) or
    ``"auto"`` (chat when the tokenizer has a chat template, else r1). `role_preambles` optionally maps a
    role to text put before the family prompt; by default there is none, as in AZR, where the family
    prompt says what to do.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        template: Template = "auto",
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        role_preambles: Mapping[str, str] | None = None,
    ) -> None:
        if template not in TEMPLATES:
            raise ValueError(f"template must be 'auto', 'r1', 'plain' or 'chat', got {template!r}")
        has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        if template == "chat" and not has_chat_template:
            raise ValueError("template='chat' needs a tokenizer with a chat_template")
        if template == "auto":
            template = "chat" if has_chat_template else "r1"
        unknown = set(role_preambles or {}) - set(ROLES)
        if unknown:
            raise ValueError(f"role_preambles: unknown roles {sorted(unknown)}; roles are {ROLES}")
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer needs a pad token (load it with load_policy)")
        self.model = model
        self.tokenizer = tokenizer
        self.template: Literal["r1", "plain", "chat"] = template
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.role_preambles = dict(role_preambles or {})

    def render(self, prompt: Prompt | str, role: Role) -> str:
        """The full model input for a family prompt in `role` (``"propose"`` or ``"solve"``)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        text = prompt.text if isinstance(prompt, Prompt) else prompt
        preamble = self.role_preambles.get(role, "")
        if preamble:
            text = f"{preamble}\n\n{text}"
        if self.template in TEXT_TEMPLATES:
            return TEXT_TEMPLATES[self.template].format(prompt=text)
        messages = [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": text}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def completion_text(self, raw: str) -> str:
        """What a family parser should read for a generated completion. The r1 and plain prompts
        already opened ``<think>``, so the completion is re-prefixed with it to give the full
        ``<think>…</think><answer>…</answer>``; chat completions are returned unchanged."""
        return "<think>" + raw if self.template in TEXT_TEMPLATES else raw

    def raw_completion(self, text: str) -> str:
        """The inverse of `completion_text`: what the model must generate for a parser to read `text`
        (a supervised target, e.g. a reference answer in the format warm-up)."""
        return text.removeprefix("<think>") if self.template in TEXT_TEMPLATES else text

    def generate(
        self, prompts: Sequence[str], num_samples: int = 1, *, seed: int | None = None, batch_size: int = 32
    ) -> list[list[str]]:
        """Sample `num_samples` completions for each already rendered prompt.

        Returns one list per prompt, in order, of decoded new text only (special tokens skipped;
        pass each through `completion_text` before parsing). Sampling when `temperature` > 0, else
        greedy. With `seed`, results are reproducible for the same inputs and `batch_size`; the
        global torch RNG state is left untouched.
        """
        import torch

        if num_samples < 1 or batch_size < 1:
            raise ValueError("num_samples and batch_size must be at least 1")
        expanded = [text for text in prompts for _ in range(num_samples)]
        device = self.model.device
        rng_devices = [device.index or 0] if device.type == "cuda" else []
        sampling = self.temperature > 0
        options: dict[str, object] = {
            "do_sample": sampling,
            "max_new_tokens": self.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if self.model.generation_config.eos_token_id is None:  # else keep the model's (may be several)
            options["eos_token_id"] = self.tokenizer.eos_token_id
        if sampling:
            options.update(temperature=self.temperature, top_p=self.top_p, top_k=0)
        outputs: list[str] = []
        self.tokenizer.padding_side = "left"
        with torch.no_grad(), torch.random.fork_rng(devices=rng_devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            for start in range(0, len(expanded), batch_size):
                batch = self.tokenizer(
                    expanded[start : start + batch_size],
                    return_tensors="pt",
                    padding=True,
                    add_special_tokens=self.template in TEXT_TEMPLATES,
                ).to(device)
                generated = self.model.generate(**batch, **options)
                new_tokens = generated[:, batch["input_ids"].shape[1] :]
                outputs += self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [outputs[i : i + num_samples] for i in range(0, len(outputs), num_samples)]

    def as_solver(self, family_prompt_role: Role = "solve") -> Callable[[list[str]], list[str]]:
        """A function from raw family prompt texts to one parser-ready completion each (rendered in
        `family_prompt_role`), for environments that need a model in the loop, e.g. ProposeEnv."""

        def solve(texts: list[str]) -> list[str]:
            rendered = [self.render(text, family_prompt_role) for text in texts]
            return [self.completion_text(samples[0]) for samples in self.generate(rendered)]

        return solve
