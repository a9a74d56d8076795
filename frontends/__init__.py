"""Importers that turn a model source into a ModelGraph: presets, HF configs, ONNX files.

`load_model` picks the importer by what the source is; `_FILE_IMPORTERS` is the seam for new
file formats (one function and one entry).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from autoplan.errors import ConfigError
from autoplan.frontends.hf_config import model_from_hf_config
from autoplan.types import ModelGraph

__all__ = ["load_model", "model_from_hf_config", "preset_names"]

_PRESETS = "autoplan.frontends.presets"


def preset_names() -> list[str]:
    """Names of the embedded model presets, sorted."""
    files = resources.files(_PRESETS).iterdir()
    return sorted(f.name.removesuffix(".json") for f in files if f.name.endswith(".json"))


def _parse_json(text: str, where: str) -> dict:
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where} is not valid JSON ({e.msg} at line {e.lineno}); fix the file") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{where} must hold a JSON object (a config.json), got {type(cfg).__name__}")
    return cfg


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.__class__.__name__
        raise ConfigError(f"cannot read model file {str(path)!r} ({reason}); check the path") from None


def _from_preset(name: str) -> ModelGraph:
    text = resources.files(_PRESETS).joinpath(f"{name}.json").read_text(encoding="utf-8")
    return model_from_hf_config(_parse_json(text, f"preset {name!r}"), name=name, source=name)


def _from_config_file(path: Path) -> ModelGraph:
    cfg = _parse_json(_read_text(path), str(path))
    name = cfg.get("_name_or_path") or (path.parent.name if path.name == "config.json" else path.stem)
    return model_from_hf_config(cfg, name=str(name), source=str(path))


def _from_onnx_file(path: Path) -> ModelGraph:
    from autoplan.frontends.onnx_graph import model_from_onnx

    return model_from_onnx(path)


_FILE_IMPORTERS: dict[str, Callable[[Path], ModelGraph]] = {
    ".json": _from_config_file,
    ".onnx": _from_onnx_file,
}


def load_model(source: str) -> ModelGraph:
    """A preset name, a path to an HF `config.json` (or its folder), or a path to an `.onnx` file."""
    if source in preset_names():
        return _from_preset(source)
    path = Path(source)
    if path.is_dir():
        path = path / "config.json"
    importer = _FILE_IMPORTERS.get(path.suffix.lower())
    if importer is not None:
        if not path.is_file():
            raise ConfigError(f"model file {str(path)!r} does not exist; check the path")
        return importer(path)
    some = ", ".join(preset_names()[:6])
    raise ConfigError(
        f"unknown model {source!r}: not a preset ({some}, ...; see `autoplan catalog models`) "
        f"nor a .json/.onnx file"
    )
