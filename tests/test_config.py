"""Typed configs: YAML, command-line overrides, unknown keys rejected."""

from dataclasses import dataclass, field
from typing import List, Optional

import pytest

from kbind.config import ConfigError, load_config, parse_config, save_config


@dataclass
class Inner:
    beam: float = 13.0
    max_active: int = 7000


@dataclass
class Cfg:
    name: str = "exp"
    epochs: int = 4
    use_ngsgd: bool = True
    chunk_widths: List[int] = field(default_factory=lambda: [150, 110, 100])
    lr_final: Optional[float] = None
    decode: Inner = field(default_factory=Inner)


def test_defaults_and_overrides():
    cfg = parse_config(Cfg, ["--epochs", "2", "--decode.beam=10.5", "--no-use-ngsgd",
                             "--chunk-widths", "140,100", "--lr_final", "0.001"])
    assert cfg.epochs == 2 and cfg.decode.beam == 10.5 and cfg.use_ngsgd is False
    assert cfg.chunk_widths == [140, 100] and cfg.lr_final == 0.001
    assert cfg.decode.max_active == 7000


def test_yaml_round_trip_then_override(tmp_path):
    cfg = parse_config(Cfg, ["--decode.max_active", "500"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(Cfg, tmp_path / "c.yaml") == cfg
    again = parse_config(Cfg, ["--config", str(tmp_path / "c.yaml"), "--name", "x"])
    assert again.decode.max_active == 500 and again.name == "x"


@pytest.mark.parametrize("argv, message", [
    (["--epoch", "2"], "unknown config key 'epoch'"),
    (["--decode.bean", "2"], "unknown config key 'decode.bean'"),
    (["--epochs", "two"], "expected int"),
    (["--use-ngsgd", "maybe"], "expected true or false"),
    (["--name.x", "1"], "not a section"),
])
def test_bad_keys_and_values(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(Cfg, argv)


def test_unknown_key_in_yaml(tmp_path):
    (tmp_path / "c.yaml").write_text("epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(Cfg, tmp_path / "c.yaml")
