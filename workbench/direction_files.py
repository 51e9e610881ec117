"""Directions as artifacts: one vector per layer plus the metadata of where it came from.

A direction is two files with the same stem: `NAME.safetensors` (tensors `layer.L`, float32 [hidden])
and `NAME.json` (the metadata: model identity, layers, site, position policy, method, the content hash
of the sets it came from, library versions). The user's live in `$WORKBENCH_HOME/directions/`; the
ones shipped with the checkout in `data/directions/` (the user's win on a name clash).

The content hash covers the vectors and the layers only, so a direction's identity in a steered
model's cache key changes when its numbers change, and never when a note is edited.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError
from workbench.home import checkout_data_dir, workbench_home

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")
NAME_RULE = "letters, digits, '-' and '_' (at most 80, starting with a letter or digit)"
# The largest vector a direction file may hold: files are shared like prompt folders, so an untrusted one
# cannot make the workbench allocate without bound.
MAX_HIDDEN = 65_536
MAX_LAYERS = 512
MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass
class Direction:
    """One vector per layer ([hidden] float32 each) and its provenance."""

    name: str
    vectors: dict[int, np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def layers(self) -> list[int]:
        """The layers it has a vector for, ascending."""
        return sorted(self.vectors)

    @property
    def hidden_size(self) -> int:
        """The length of each vector."""
        return int(next(iter(self.vectors.values())).shape[0])

    @property
    def content_hash(self) -> str:
        """A hash of the vectors and their layers (16 hex digits): a steered model's identity names this."""
        digest = hashlib.sha256()
        for layer in self.layers:
            digest.update(f"layer.{layer}:".encode())
            digest.update(np.ascontiguousarray(self.vectors[layer], dtype="<f4").tobytes())
        return digest.hexdigest()[:16]

    def vector(self, layer: int) -> np.ndarray:
        """The vector for a layer; an error naming the layers it has when it has none there."""
        if layer not in self.vectors:
            raise WorkbenchError(f"direction {self.name!r} has no vector for layer {layer} "
                                 f"(it has {format_layers(self.layers)}); extract it there or pick one of those")
        return self.vectors[layer]


def format_layers(layers: list[int]) -> str:
    """Layers as a short list: '3' or '3, 6, 9' or '0-17'."""
    if len(layers) > 3 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}-{layers[-1]}"
    return ", ".join(str(layer) for layer in layers)


def check_name(name: str) -> str:
    """A direction's name, checked to be safe as a file name and inside a model name (no comma, dot or '@')."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise WorkbenchError(f"direction name {name!r} is not allowed; use {NAME_RULE}")
    return name


def user_directions_dir() -> Path:
    """Where extracted directions are saved: `$WORKBENCH_HOME/directions/`."""
    return workbench_home() / "directions"


def shipped_directions_dir() -> Path | None:
    """The checkout's shipped directions (`data/directions/`), when there is a checkout."""
    data = checkout_data_dir()
    return data / "directions" if data is not None else None


def search_dirs() -> list[Path]:
    """The folders a direction name is looked up in, first match wins."""
    dirs = [user_directions_dir()]
    shipped = shipped_directions_dir()
    if shipped is not None and shipped.resolve() != dirs[0].resolve():
        dirs.append(shipped)
    return dirs


def save_direction(direction: Direction, folder: Path | None = None, overwrite: bool = False) -> Path:
    """Write `NAME.safetensors` and `NAME.json`; refuses to replace an existing one unless asked."""
    from safetensors.numpy import save_file

    check_name(direction.name)
    folder = folder or user_directions_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{direction.name}.safetensors"
    if target.exists() and not overwrite:
        raise WorkbenchError(f"direction {direction.name!r} already exists in {folder}; pick another --name "
                             "or pass --overwrite")
    tensors = {f"layer.{layer}": np.ascontiguousarray(direction.vectors[layer], dtype=np.float32)
               for layer in direction.layers}
    metadata = {**direction.metadata, "name": direction.name, "layers": direction.layers,
                "hidden_size": direction.hidden_size, "content_hash": direction.content_hash}
    staging = folder / f".{direction.name}.partial.safetensors"
    save_file(tensors, str(staging))
    staging.chmod(0o644)  # safetensors writes 0600; a direction is meant to be shared like its JSON
    (folder / f"{direction.name}.json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    staging.replace(target)  # the vectors land last and atomically: a half-written direction is never read
    return target


def find_direction(name: str) -> Path:
    """The safetensors file of a direction by name, or an error listing the known ones."""
    check_name(name)
    for folder in search_dirs():
        path = folder / f"{name}.safetensors"
        if path.is_file():
            return path
    known = ", ".join(sorted(d["name"] for d in list_directions())) or "none yet"
    raise WorkbenchError(f"unknown direction {name!r} (known: {known}); extract one with "
                         f"`workbench directions extract --name {name} ...` or put its files in "
                         f"{user_directions_dir()}")


def read_direction_file(path: Path) -> Direction:
    """A direction from its safetensors file (and the JSON beside it), checked as untrusted input."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    if path.stat().st_size > MAX_FILE_BYTES:
        raise WorkbenchError(f"{path}: {path.stat().st_size} bytes is more than a direction may take "
                             f"({MAX_FILE_BYTES}); is it a direction file?")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WorkbenchError(f"{path}: not a readable safetensors file ({exc}); re-extract or re-export it") from None
    vectors: dict[int, np.ndarray] = {}
    for key, tensor in tensors.items():
        match = re.fullmatch(r"layer\.(\d{1,4})", key)
        if not match or tensor.ndim != 1 or not 0 < tensor.shape[0] <= MAX_HIDDEN:
            raise WorkbenchError(f"{path}: tensor {key!r} of shape {tuple(tensor.shape)} is not a direction's "
                                 "'layer.L' vector; re-extract or re-export it")
        vector = tensor.astype(np.float32)
        if not np.all(np.isfinite(vector)):
            raise WorkbenchError(f"{path}: {key} has non-finite values; re-extract it")
        vectors[int(match.group(1))] = vector
    if not vectors or len(vectors) > MAX_LAYERS or len({v.shape[0] for v in vectors.values()}) != 1:
        raise WorkbenchError(f"{path}: a direction needs 1 to {MAX_LAYERS} 'layer.L' vectors of one length; "
                             "re-extract or re-export it")
    metadata: dict[str, Any] = {}
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            loaded = json.loads(sidecar.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise WorkbenchError(f"{sidecar}: not valid JSON ({exc}); fix or delete it") from None
        if not isinstance(loaded, dict):
            raise WorkbenchError(f"{sidecar}: expected a JSON object of metadata")
        metadata = loaded
    name = path.stem
    check_name(name)
    return Direction(name, vectors, metadata)


def load_direction(name: str) -> Direction:
    """A saved direction by name (the user's first, then the shipped ones)."""
    return read_direction_file(find_direction(name))


_HASHES: dict[tuple[str, int, int], str] = {}


def direction_content_hash(name: str) -> str:
    """A saved direction's content hash, read once per file version (a steered model's identity asks often)."""
    path = find_direction(name)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _HASHES:
        _HASHES[key] = read_direction_file(path).content_hash
    return _HASHES[key]


def list_directions() -> list[dict[str, Any]]:
    """One record per saved direction: name, folder, model, method, site, layers, content hash."""
    seen: set[str] = set()
    rows = []
    for folder in search_dirs():
        for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
            if path.stem in seen or path.name.startswith(".") or not NAME_PATTERN.match(path.stem):
                continue
            seen.add(path.stem)
            try:
                meta = json.loads(path.with_suffix(".json").read_text())
            except (OSError, json.JSONDecodeError, UnicodeDecodeError):
                meta = {}
            meta = meta if isinstance(meta, dict) else {}
            rows.append({"name": path.stem, "folder": str(folder), "model": meta.get("model", "?"),
                         "method": meta.get("method", "?"), "site": meta.get("site", "?"),
                         "positions": meta.get("positions", "?"), "layers": meta.get("layers", []),
                         "content_hash": meta.get("content_hash", "?")})
    return rows


__all__ = [
    "Direction",
    "check_name",
    "direction_content_hash",
    "find_direction",
    "format_layers",
    "list_directions",
    "load_direction",
    "read_direction_file",
    "save_direction",
    "search_dirs",
    "shipped_directions_dir",
    "user_directions_dir",
]
