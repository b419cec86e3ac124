"""Typed configs: dataclasses loadable from YAML and overridable on the
command line, saved beside each experiment.

A config is a (possibly nested) dataclass with documented defaults::

    @dataclass
    class DecodeConfig:
        beam: float = 13.0          # decoding beam
        lmwt: List[int] = field(default_factory=lambda: [7, 8, 9])

    cfg = parse_config(DecodeConfig, ["--config", "conf.yaml", "--beam", "10"])
    save_config(cfg, "exp/decode/config.yaml")

Overrides: ``--name value`` or ``--name=value``; nested fields as
``--section.name value``; booleans as ``--flag true|false`` (or ``--flag``
alone for true, ``--no-flag`` for false); lists as ``--name 1,2,3``. Values
are converted to the field's annotated type, and an unknown key is an error
that lists the known ones, so a config key can never silently do nothing.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Type, TypeVar

import yaml

__all__ = ["parse_config", "load_config", "save_config", "config_to_dict", "apply_overrides",
           "ConfigError"]

T = TypeVar("T")


class ConfigError(ValueError):
    """An unknown key or a value that does not fit its field's type."""


def _fields(cls) -> Dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _hints(cls) -> Dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union:
        non_none = [a for a in args if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in non_none:
            try:
                return _convert(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: cannot convert {value!r} to {tp}")
    if origin in (list, List, tuple, Sequence) or tp in (list, tuple):
        item = args[0] if args else Any
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip() != ""]
        if not isinstance(value, (list, tuple)):
            value = [value]
        out = [_convert(v, item, where) for v in value]
        return tuple(out) if origin is tuple or tp is tuple else out
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return _from_dict(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp in (int, float, str):
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from None
    if isinstance(tp, type) and issubclass(tp, Path):
        return Path(value)
    return value


def _from_dict(cls: Type[T], data: Dict[str, Any], where: str = "") -> T:
    known = _fields(cls)
    hints = _hints(cls)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(where + k for k in unknown)} for "
                          f"{cls.__name__}; known: {', '.join(sorted(known))}")
    kwargs = {k: _convert(v, hints[k], where + k) for k, v in data.items()}
    return cls(**kwargs)


def config_to_dict(cfg: Any) -> Dict[str, Any]:
    """Plain dict (YAML-safe: lists, not tuples; str for paths)."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v
    return plain(cfg)


def apply_overrides(cfg: T, overrides: Dict[str, Any]) -> T:
    """A copy of ``cfg`` with dotted-key overrides applied (type-checked)."""
    data = config_to_dict(cfg)
    for key, value in overrides.items():
        parts = key.split(".")
        node, cls = data, type(cfg)
        for i, part in enumerate(parts):
            known = _fields(cls)
            if part not in known:
                raise ConfigError(f"unknown config key {key!r} ({'.'.join(parts[:i + 1])}); "
                                  f"known at that level: {', '.join(sorted(known))}")
            tp = _hints(cls)[part]
            if i == len(parts) - 1:
                node[part] = _convert(value, tp, key)
                if dataclasses.is_dataclass(node[part]):
                    node[part] = config_to_dict(node[part])
            else:
                if not dataclasses.is_dataclass(tp):
                    raise ConfigError(f"config key {'.'.join(parts[:i + 1])} is not a section")
                node, cls = node[part], tp
    return _from_dict(type(cfg), data)


def load_config(cls: Type[T], path) -> T:
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping")
    return _from_dict(cls, data)


def save_config(cfg: Any, path) -> None:
    """Write the config as YAML (atomically: temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def parse_config(cls: Type[T], argv: Optional[Sequence[str]] = None,
                 description: Optional[str] = None) -> T:
    """Defaults, then ``--config file.yaml``, then ``--key value`` overrides.
    ``--help`` prints every key with its default and exits."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(description or (cls.__doc__ or cls.__name__).strip())
        print("\noptions (--key value; nested as --section.key value):")
        for key, value in _flat(config_to_dict(cls())).items():
            print(f"  --{key} (default: {value})")
        raise SystemExit(0)
    cfg = cls()
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise ConfigError("--config needs a file name")
        cfg = load_config(cls, argv[i + 1])
        del argv[i:i + 2]
    overrides: Dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r} (options are --key value)")
        key = arg[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value = argv[i + 1]
            i += 2
        else:
            value, i = "true", i + 1
            if key.startswith("no-"):
                key, value = key[3:], "false"
        overrides[key.replace("-", "_")] = value
    return apply_overrides(cfg, overrides)


def _flat(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out
