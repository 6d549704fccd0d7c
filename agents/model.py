"""Policy models: the locally built tiny model for CPU tests and smoke runs, and hub/local checkpoints.

The tiny model (`TINY_MODEL`) needs no network: its byte-level BPE tokenizer is trained with the
`tokenizers` library on a small built-in corpus (the R1 prompt template, the source of a few stdlib
modules read from this Python's installation, digits and math/LaTeX symbols) and its weights are a
randomly initialised two-layer Qwen2. It is built once per recipe and cached under
``$FLYWHEEL_CACHE`` (default ``~/.cache/flywheel``) as ``tiny-<hash>``, where the hash covers the
model config, the corpus text, the seed and the library versions.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

TINY_MODEL = "flywheel/tiny"
"""Sentinel name for the locally built tiny model."""

MARKER_FILE = "flywheel_tiny.json"
"""Written into every tiny-model directory (last, so its presence means the build is complete).
`load_policy` uses it to load the tokenizer as `PreTrainedTokenizerFast`: transformers 5's
`AutoTokenizer` would re-create a Qwen2 tokenizer from the model type, with different ids."""

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
BOS_TOKEN = "<|startoftext|>"
TAG_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")
"""Added as ordinary (non-special) tokens: one id each, and kept when decoding with
``skip_special_tokens=True`` so parsers see them."""

_RECIPE_VERSION = 1
_VOCAB_SIZE = 2048
_MODEL_CONFIG: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": True,
}
_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_CORPUS_MODULES = ("textwrap", "heapq", "bisect", "fractions", "statistics", "string", "functools")

_R1_EXAMPLE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
    "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. "
    "User: What does f(3) return?\nAssistant: <think> f adds one, so 4. </think> <answer>\n```output\n4\n```\n"
    "</answer>\n"
)
_MATH_TEXT = (
    "0 1 2 3 4 5 6 7 8 9 10 42 100 3.14 -7 1e-3 0x1F\n"
    "+ - * / // % ** = == != < > <= >= ( ) [ ] { } ^ _ | & ~ ! ? : ; , . ' \" ` # @ $ \\\n"
    "$x^2 + y^2 = z^2$ \\frac{a}{b} \\sqrt{2} \\pi \\cdot \\times \\leq \\geq \\neq \\infty \\sum_{i=1}^{n} i "
    "\\int_0^1 x\\,dx \\boxed{12} \\left( \\right) \\alpha \\beta \\theta \\in \\mathbb{R}\n"
)


def cache_root() -> Path:
    """Where tiny models are cached: ``$FLYWHEEL_CACHE`` or ``~/.cache/flywheel``."""
    return Path(os.environ.get("FLYWHEEL_CACHE") or Path.home() / ".cache" / "flywheel")


def tiny_corpus() -> str:
    """The tokenizer training text. Stdlib sources come from this interpreter's installation, so a
    different Python version gives a different corpus (and so a different cache entry)."""
    parts = [_R1_EXAMPLE, _MATH_TEXT]
    parts += [inspect.getsource(importlib.import_module(name)) for name in _CORPUS_MODULES]
    return "\n".join(parts)


def _recipe_hash(corpus: str, seed: int) -> str:
    import tokenizers
    import torch
    import transformers

    recipe = {
        "recipe": _RECIPE_VERSION,
        "vocab_size": _VOCAB_SIZE,
        "model": _MODEL_CONFIG,
        "seed": seed,
        "corpus": hashlib.sha256(corpus.encode()).hexdigest(),
        "versions": [tokenizers.__version__, transformers.__version__, torch.__version__.split("+")[0]],
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def _train_tokenizer(corpus: str) -> PreTrainedTokenizerBase:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    # Qwen2's split: words with their leading space, digits one by one (numbers tokenise uniformly,
    # which suits arithmetic), punctuation runs, newlines; then bytes to printable characters.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    specials = [EOS_TOKEN, PAD_TOKEN, BOS_TOKEN]
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE - len(TAG_TOKENS),
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus.splitlines(keepends=True), trainer=trainer)
    tokenizer.add_tokens([AddedToken(tag, normalized=False, special=False) for tag in TAG_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        padding_side="left",
        model_max_length=_MODEL_CONFIG["max_position_embeddings"],
    )


def _build_into(directory: Path, corpus: str, seed: int, recipe_hash: str) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = _train_tokenizer(corpus)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **_MODEL_CONFIG,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    marker = {
        "name": TINY_MODEL,
        "recipe_hash": recipe_hash,
        "seed": seed,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (directory / MARKER_FILE).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")


def is_tiny_model_dir(path: str | Path) -> bool:
    """Whether `path` is a complete tiny-model build (it holds the marker file)."""
    return (Path(path) / MARKER_FILE).is_file()


def build_tiny_model(path: str | Path | None = None, *, seed: int = 0) -> Path:
    """Build the tiny model and its tokenizer into `path` (default: the cache) and return the directory.

    Reuses an existing build of the same recipe. Safe under concurrent callers (pytest-xdist): each
    builds in a private temporary directory that is renamed into place; a loser of the race
    discards its copy. Given `seed`, the files are identical across builds on one installation.
    """
    corpus = tiny_corpus()
    recipe_hash = _recipe_hash(corpus, seed)
    target = Path(path) if path is not None else cache_root() / f"tiny-{recipe_hash}"
    if is_tiny_model_dir(target):
        existing = json.loads((target / MARKER_FILE).read_text())
        if existing.get("recipe_hash") != recipe_hash:
            raise FileExistsError(f"{target} holds a tiny model of another recipe or seed; choose another path")
        return target
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not a tiny-model build; refusing to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    scratch.chmod(0o755)  # mkdtemp makes it private; the build is a readable cache entry
    try:
        _build_into(scratch, corpus, seed, recipe_hash)
        try:
            os.replace(scratch, target)  # atomic; fails if another worker already put a build there
        except OSError:
            if not is_tiny_model_dir(target):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _uses_fast_tokenizer_class(directory: Path) -> bool:
    """Tiny builds, and checkpoints saved from them, declare `PreTrainedTokenizerFast`; load those
    as such rather than letting `AutoTokenizer` map the model type to another tokenizer class."""
    if is_tiny_model_dir(directory):
        return True
    config_file = directory / "tokenizer_config.json"
    if not config_file.is_file():
        return False
    try:
        declared = json.loads(config_file.read_text()).get("tokenizer_class")
    except (OSError, ValueError):
        return False
    return declared in ("PreTrainedTokenizerFast", "TokenizersBackend")


def load_tokenizer(name_or_path: str | Path = TINY_MODEL) -> PreTrainedTokenizerBase:
    """The tokenizer of `load_policy`, alone, with a pad token and left padding."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    source = _resolve(name_or_path)
    try:
        if Path(source).is_dir() and _uses_fast_tokenizer_class(Path(source)):
            tokenizer = PreTrainedTokenizerFast.from_pretrained(source)
        else:
            tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as error:
        raise _not_found(str(name_or_path), error) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def _resolve(name_or_path: str | Path) -> str:
    """`TINY_MODEL` -> its built directory; `SMOLLM_MODEL` -> its converted directory (see
    `flywheel.agents.smollm`); an existing path -> that path; anything written as a path (absolute,
    ``./``, ``~``, more than one ``/``) but missing -> `FileNotFoundError`; else a hub id."""
    from flywheel.agents.smollm import SMOLLM_MODEL, converted_smollm

    text = str(name_or_path)
    if text == TINY_MODEL:
        return str(build_tiny_model())
    if text == SMOLLM_MODEL:
        return str(converted_smollm())
    local = Path(text).expanduser()
    if local.exists():
        if not local.is_dir():
            raise NotADirectoryError(f"model path {text!r} is not a directory")
        return str(local)
    if isinstance(name_or_path, Path) or text.startswith(("/", ".", "~")) or text.count("/") > 1:
        raise FileNotFoundError(f"model directory {text!r} does not exist")
    return text


def _not_found(name: str, error: Exception) -> OSError:
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    hint = (
        "HF_HUB_OFFLINE is set, so only models already in the Hugging Face cache can be loaded"
        if offline
        else "check the hub id, your network and your access to the repository"
    )
    return OSError(
        f"cannot load model {name!r}: it is not a local model directory and could not be fetched from the "
        f"Hugging Face hub ({hint}). Use {TINY_MODEL!r} for the built-in tiny model. Cause: {error}"
    )


def load_policy(
    name_or_path: str | Path = TINY_MODEL, *, dtype: str = "auto", device: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer (pad token set, left padding for generation).

    `name_or_path`: `TINY_MODEL` (built or taken from the cache), a local directory, or a hub id such
    as ``Qwen/Qwen2.5-Coder-1.5B``. `dtype`: ``"auto"`` (the checkpoint's) or a torch dtype name
    (``"bfloat16"``, ``"float32"``). `device`: where to put the model; default CUDA if available,
    else CPU. A hub id that cannot be found raises `OSError` with the reason, without retrying.
    """
    import torch
    from transformers import AutoModelForCausalLM

    source = _resolve(name_or_path)
    tokenizer = load_tokenizer(source)
    torch_dtype: Any = dtype if dtype == "auto" else getattr(torch, dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
    except OSError as error:
        raise _not_found(str(name_or_path), error) from error
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op CPU threads and return the number set. Default 1: on small CPU machines
    where verifier subprocesses run beside generation, one thread is far faster than several that
    contend for cores (see docs/agent.md for the measurements). ``$FLYWHEEL_TORCH_THREADS`` overrides
    the default."""
    import torch

    if num_threads is None:
        num_threads = int(os.environ.get("FLYWHEEL_TORCH_THREADS", "1"))
    if num_threads < 1:
        raise ValueError(f"num_threads must be at least 1, got {num_threads}")
    torch.set_num_threads(num_threads)
    return num_threads
