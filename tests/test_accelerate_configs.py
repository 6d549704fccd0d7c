"""The launch configs in recipes/accelerate/ parse with accelerate's own config loader, and the docs show each."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.utils import DistributedType

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "recipes" / "accelerate"
EXPECTED = {
    "ddp.yaml": DistributedType.MULTI_GPU,
    "zero2.yaml": DistributedType.DEEPSPEED,
    "zero3.yaml": DistributedType.DEEPSPEED,
    "fsdp2.yaml": DistributedType.FSDP,
    "cpu_gloo.yaml": DistributedType.MULTI_GPU,  # torchrun; MULTI_CPU would need mpirun (see the file)
}


def test_every_config_is_listed() -> None:
    assert sorted(path.name for path in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_parses_and_is_documented(name: str) -> None:
    config = load_config_from_file(str(CONFIGS / name))
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type == EXPECTED[name]
    assert config.num_processes >= 2
    assert not config.use_cpu, "use_cpu makes accelerate launch start a single process"
    launch = f"accelerate launch --config_file recipes/accelerate/{name}"
    assert launch in (CONFIGS / name).read_text()
    assert launch in (ROOT / "docs" / "training.md").read_text()


def test_sharding_settings() -> None:
    stages = {
        name: load_config_from_file(str(CONFIGS / name)).deepspeed_config["zero_stage"]
        for name in ("zero2.yaml", "zero3.yaml")
    }
    assert stages == {"zero2.yaml": 2, "zero3.yaml": 3}
    assert load_config_from_file(str(CONFIGS / "fsdp2.yaml")).fsdp_config["fsdp_version"] == 2


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    """The loader is strict, so a typo in a config fails here rather than being ignored at launch."""
    broken = tmp_path / "broken.yaml"
    broken.write_text((CONFIGS / "ddp.yaml").read_text() + "num_proceses: 2\n")
    with pytest.raises(ValueError, match="num_proceses"):
        load_config_from_file(str(broken))
