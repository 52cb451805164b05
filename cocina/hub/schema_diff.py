"""What changed in a predictor's schema between two versions, and whether the change breaks callers (as
cog-safe-push checks before a release): an input removed, an input newly required, an input's type changed, a
constraint tightened, a choice removed, or the output's type changed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Change:
    kind: str  # added | removed | retyped | required | optional | constrained | relaxed | output
    name: str
    detail: str
    breaking: bool

    def describe(self) -> str:
        mark = "BREAKING " if self.breaking else ""
        return f"{mark}{self.kind} {self.name}: {self.detail}"


@dataclass
class SchemaDiff:
    changes: list[Change] = field(default_factory=list)

    @property
    def breaking(self) -> bool:
        return any(c.breaking for c in self.changes)

    def describe(self) -> str:
        if not self.changes:
            return "no change in the inputs or the output"
        return "\n".join(c.describe() for c in self.changes)

    def to_json(self) -> dict[str, Any]:
        return {"breaking": self.breaking, "changes": [c.__dict__ for c in self.changes]}


def _schemas(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(doc.get("components", {}).get("schemas", {}))


def _resolve(prop: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """A property with its `allOf: [{$ref}]` (Cog's enums) folded in."""
    out = {k: v for k, v in prop.items() if k != "allOf"}
    for part in prop.get("allOf", []):
        ref = part.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            out.update(schemas.get(ref.rsplit("/", 1)[1], {}))
    return out


def _type(prop: dict[str, Any]) -> str:
    t = prop.get("type", "any")
    if t == "array":
        return f"array of {_type(prop.get('items', {}))}"
    if prop.get("format") in ("uri", "password"):
        return f"{t} ({prop['format']})"
    return str(t)


def diff_schemas(old: dict[str, Any], new: dict[str, Any]) -> SchemaDiff:
    diff = SchemaDiff()
    old_s, new_s = _schemas(old), _schemas(new)
    old_in, new_in = old_s.get("Input", {}), new_s.get("Input", {})
    old_props, new_props = old_in.get("properties", {}), new_in.get("properties", {})
    old_req, new_req = set(old_in.get("required", [])), set(new_in.get("required", []))
    for name in sorted(set(old_props) - set(new_props)):
        diff.changes.append(Change("removed", name, "callers that send it get it ignored", True))
    for name in sorted(set(new_props) - set(old_props)):
        required = name in new_req
        detail = "required: callers must now send it" if required else "optional"
        diff.changes.append(Change("added", name, detail, required))
    for name in sorted(set(old_props) & set(new_props)):
        a, b = _resolve(old_props[name], old_s), _resolve(new_props[name], new_s)
        if _type(a) != _type(b):
            diff.changes.append(Change("retyped", name, f"{_type(a)} -> {_type(b)}", True))
        if name in new_req and name not in old_req:
            diff.changes.append(Change("required", name, "was optional", True))
        elif name in old_req and name not in new_req:
            diff.changes.append(Change("optional", name, "was required", False))
        for bound, tighter in (
            ("minimum", lambda x, y: y > x),
            ("maximum", lambda x, y: y < x),
            ("minLength", lambda x, y: y > x),
            ("maxLength", lambda x, y: y < x),
        ):
            if bound in a or bound in b:
                x, y = a.get(bound), b.get(bound)
                if x == y:
                    continue
                breaking = y is not None and (x is None or tighter(x, y))
                kind = "constrained" if breaking else "relaxed"
                diff.changes.append(Change(kind, name, f"{bound} {x} -> {y}", breaking))
        if "enum" in a or "enum" in b:
            gone = set(a.get("enum", [])) - set(b.get("enum", [])) if "enum" in b else set()
            added = set(b.get("enum", [])) - set(a.get("enum", []))
            if "enum" in b and "enum" not in a:
                diff.changes.append(Change("constrained", name, f"now one of {b['enum']}", True))
            elif gone:
                diff.changes.append(Change("constrained", name, f"choices removed: {sorted(map(str, gone))}", True))
            elif added:
                diff.changes.append(Change("relaxed", name, f"choices added: {sorted(map(str, added))}", False))
        if a.get("default") != b.get("default"):
            diff.changes.append(Change("default", name, f"{a.get('default')!r} -> {b.get('default')!r}", False))
    a_out, b_out = _resolve(old_s.get("Output", {}), old_s), _resolve(new_s.get("Output", {}), new_s)
    if _type(a_out) != _type(b_out) or a_out.get("x-cog-array-type") != b_out.get("x-cog-array-type"):
        streaming = lambda o: " (streamed)" if o.get("x-cog-array-type") == "iterator" else ""  # noqa: E731
        detail = f"{_type(a_out)}{streaming(a_out)} -> {_type(b_out)}{streaming(b_out)}"
        diff.changes.append(Change("output", "output", detail, True))
    return diff
