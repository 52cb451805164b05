"""`GuardConfig`: the guard's one configuration file (`cocina serve --guard guard.yaml`), typed.

Everything the guard does is set here: the scanners on input and output with their actions, privacy mode, the
AI disclosure, the audit log's origin and checkpoint interval, and which `Path` input URLs are allowed — as a
default policy, with overrides per model (glob patterns on `owner/name`, the first that matches wins). API keys
and their limits live in the store (`cocina keys`), not here. docs/guard.md shows a complete file.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from cocina.guard.scanners.base import Action, Scanner
from cocina.guard.scanners.pipeline import Pipeline, Step


class GuardConfigError(ValueError):
    """The guard file is wrong; the message names the key."""


SCANNER_TYPES = (
    "prompt_injection",
    "prompt_injection_model",
    "secrets",
    "pii",
    "banned_substrings",
    "regex",
    "token_limit",
)


@dataclass(frozen=True)
class ScannerSpec:
    """One scanner of a policy: its type, action and options."""

    type: str
    action: Action
    options: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Scanner:
        from cocina.guard.scanners.injection import InjectionScanner
        from cocina.guard.scanners.pii import PIIScanner
        from cocina.guard.scanners.rules import BannedSubstrings, RegexRules, TokenLimit
        from cocina.guard.scanners.secrets import SecretsScanner

        o = self.options
        if self.type == "prompt_injection_model":
            from cocina.guard.scanners.model import ModelInjectionScanner

            if "model" not in o:
                raise ValueError("prompt_injection_model needs `model: /path/to/a/local/model`")
            return ModelInjectionScanner(str(o["model"]), float(o.get("threshold", 0.5)), o.get("label"))
        if self.type == "prompt_injection":
            return InjectionScanner(float(o.get("threshold", 2.0)))
        if self.type == "secrets":
            return SecretsScanner()
        if self.type == "pii":
            kinds = tuple(o.get("kinds", PIIScanner.KINDS))
            return PIIScanner(kinds, tuple(o.get("phone_regions", ("ES", "US", "GB"))))
        if self.type == "banned_substrings":
            return BannedSubstrings([str(w) for w in o.get("words", [])])
        if self.type == "regex":
            return RegexRules([str(p) for p in o.get("patterns", [])])
        return TokenLimit(int(o.get("max_tokens", 4096)))


@dataclass(frozen=True)
class Policy:
    """What the guard does for one model."""

    input: tuple[ScannerSpec, ...] = ()
    output: tuple[ScannerSpec, ...] = ()
    normalize: bool = True  # strip invisible characters and NFKC before the input scanners
    privacy: bool = False  # store keyed hashes of inputs and outputs, never the text
    disclosure: bool = True  # the AI-Disclosure header and metadata marker
    notice: str | None = None  # a visible notice put before each generated answer
    hold_chars: int = 64  # output scanning on a stream: characters held back so split findings are caught

    def input_pipeline(self) -> Pipeline:
        return Pipeline([Step(s.build(), s.action) for s in self.input], normalize_first=self.normalize)

    def output_pipeline(self) -> Pipeline | None:
        if not self.output:
            return None
        return Pipeline([Step(s.build(), s.action) for s in self.output], normalize_first=False)


DEFAULT_INPUT = (
    ScannerSpec("prompt_injection", Action.LOG),
    ScannerSpec("secrets", Action.LOG),
    ScannerSpec("pii", Action.LOG),
)


@dataclass(frozen=True)
class GuardConfig:
    """The guard's settings (see the module's docstring). `data_dir` holds its secret and signing key."""

    default: Policy = Policy(input=DEFAULT_INPUT)
    models: tuple[tuple[str, Policy], ...] = ()
    provider: str = "cocina"
    audit: bool = True
    audit_origin: str = "cocina/audit"
    checkpoint_interval_s: float = 1.0
    allow_private_urls: bool = False
    url_allow_hosts: tuple[str, ...] = ()

    def policy(self, model: str) -> Policy:
        for pattern, policy in self.models:
            if fnmatch.fnmatchcase(model, pattern):
                return policy
        return self.default


def _action(value: Any, where: str, redacts: bool) -> Action:
    try:
        action = Action(str(value))
    except ValueError:
        raise GuardConfigError(f"{where}.action: {value!r} is not one of block, redact, log") from None
    if action is Action.REDACT and not redacts:
        raise GuardConfigError(f"{where}.action: this scanner judges the whole text; use block or log")
    return action


def _scanners(items: Any, where: str) -> tuple[ScannerSpec, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise GuardConfigError(f"{where}: a list of scanners, each {{type: ..., action: ...}}")
    specs = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        if not isinstance(item, dict) or "type" not in item:
            raise GuardConfigError(f"{at}: each scanner is a mapping with a `type`")
        kind = str(item["type"])
        if kind not in SCANNER_TYPES:
            raise GuardConfigError(f"{at}.type: {kind!r} is not one of {', '.join(SCANNER_TYPES)}")
        redacts = kind not in ("prompt_injection", "prompt_injection_model", "token_limit")
        default = "block" if not redacts else "redact"
        options = {k: v for k, v in item.items() if k not in ("type", "action")}
        spec = ScannerSpec(kind, _action(item.get("action", default), at, redacts), options)
        try:
            spec.build()  # bad options (an invalid regex, an unknown PII kind) fail now, not at the first request
        except Exception as exc:
            raise GuardConfigError(f"{at}: {exc}") from None
        specs.append(spec)
    return tuple(specs)


_POLICY_KEYS = {"scanners", "privacy", "disclosure", "normalize"}


def _policy(data: Any, where: str, base: Policy) -> Policy:
    if not isinstance(data, dict):
        raise GuardConfigError(f"{where}: a mapping")
    unknown = set(data) - _POLICY_KEYS
    if unknown:
        raise GuardConfigError(f"{where}.{sorted(unknown)[0]}: unknown key; keys are {', '.join(sorted(_POLICY_KEYS))}")
    policy = base
    scanners = data.get("scanners")
    if scanners is not None:
        if not isinstance(scanners, dict) or set(scanners) - {"input", "output", "hold_chars"}:
            raise GuardConfigError(f"{where}.scanners: a mapping with `input` and/or `output` lists (and hold_chars)")
        if "input" in scanners:
            policy = replace(policy, input=_scanners(scanners["input"], f"{where}.scanners.input"))
        if "output" in scanners:
            policy = replace(policy, output=_scanners(scanners["output"], f"{where}.scanners.output"))
        if "hold_chars" in scanners:
            policy = replace(policy, hold_chars=int(scanners["hold_chars"]))
    if "privacy" in data:
        policy = replace(policy, privacy=bool(data["privacy"]))
    if "normalize" in data:
        policy = replace(policy, normalize=bool(data["normalize"]))
    disclosure = data.get("disclosure")
    if isinstance(disclosure, bool):
        policy = replace(policy, disclosure=disclosure)
    elif isinstance(disclosure, dict):
        policy = replace(policy, disclosure=bool(disclosure.get("enabled", True)), notice=disclosure.get("notice"))
    elif disclosure is not None:
        raise GuardConfigError(f"{where}.disclosure: true, false, or {{enabled: ..., notice: ...}}")
    return policy


_TOP_KEYS = {"scanners", "privacy", "disclosure", "normalize", "models", "provider", "audit", "urls"}


def parse_guard_config(data: Any) -> GuardConfig:
    """A `GuardConfig` from the parsed YAML; `GuardConfigError` naming the key otherwise."""
    if data is None:
        return GuardConfig()
    if not isinstance(data, dict):
        raise GuardConfigError("the guard file is a mapping")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise GuardConfigError(f"{sorted(unknown)[0]}: unknown key; keys are {', '.join(sorted(_TOP_KEYS))}")
    default = _policy({k: v for k, v in data.items() if k in _POLICY_KEYS}, "guard", Policy(input=DEFAULT_INPUT))
    models = []
    for pattern, body in (data.get("models") or {}).items():
        models.append((str(pattern), _policy(body, f"models.{pattern}", default)))
    audit = data.get("audit", {}) or {}
    urls = data.get("urls", {}) or {}
    if not isinstance(audit, dict) or not isinstance(urls, dict):
        raise GuardConfigError("audit and urls are mappings")
    interval = float(audit.get("checkpoint_interval_s", 1.0))
    if interval <= 0:
        raise GuardConfigError("audit.checkpoint_interval_s must be > 0")
    return GuardConfig(
        default=default,
        models=tuple(models),
        provider=str(data.get("provider", "cocina")),
        audit=bool(audit.get("enabled", True)),
        audit_origin=str(audit.get("origin", "cocina/audit")),
        checkpoint_interval_s=interval,
        allow_private_urls=bool(urls.get("allow_private", False)),
        url_allow_hosts=tuple(str(h) for h in urls.get("allow_hosts", [])),
    )


def load_guard_config(path: Path) -> GuardConfig:
    """Read and check a guard file."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise GuardConfigError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise GuardConfigError(f"{path}: not valid YAML ({exc})") from None
    try:
        return parse_guard_config(data)
    except GuardConfigError as exc:
        raise GuardConfigError(f"{path}: {exc}") from None
