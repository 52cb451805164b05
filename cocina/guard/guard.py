"""`Guard`: keys, limits, scanners, disclosure, privacy and the audit log behind serving's `Gate`.

The server builds one `Guard(GuardConfig, data_dir)` and hands it to `Serving`; admission calls it (see
`cocina.serving.gate`), and the server's auth middleware calls `authenticate`. It imports no HTTP.

Its secret (`<data_dir>/guard/secret`, 32 random bytes, mode 0600) keys the hashes of API keys and, under
another label, the privacy hashes of inputs and outputs; the audit log's Ed25519 key is
`<data_dir>/guard/audit.key` (its public half, for verifiers, is printed by `cocina audit key`). Both are created
on first use. They are kept out of the store on purpose: a copy of the database alone can neither check key
guesses nor forge checkpoints.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cocina.guard.audit.log import AuditLog, canonical
from cocina.guard.audit.note import Signer
from cocina.guard.config import GuardConfig, Policy
from cocina.guard.keys import KeyHasher, Keys, Principal
from cocina.guard.limits import Limiter, Reservation
from cocina.guard.scanners.base import Verdict
from cocina.guard.scanners.pipeline import Pipeline, ScanResult, StreamScanner
from cocina.serving.errors import ModelNotFound
from cocina.serving.gate import AccessDenied, OutputFilter, Ticket
from cocina.store import KeyRecord, PredictionRecord, Store

if TYPE_CHECKING:
    from cocina.serving.admission import AdmissionRequest
    from cocina.serving.model import ServedModel

log = logging.getLogger("cocina.guard")

PRIVACY_NOTE = "privacy mode: only keyed hashes are stored"


def _read_or_create(path: Path, make: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = make()
        # O_EXCL: two processes starting at once must not write two different secrets.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
        return str(value)


class GuardSecrets:
    """The guard's secret and signing key, in `<data_dir>/guard/`."""

    def __init__(self, data_dir: Path) -> None:
        folder = data_dir / "guard"
        master = bytes.fromhex(_read_or_create(folder / "secret", lambda: secrets.token_hex(32)))
        self.key_hashing = hmac.new(master, b"cocina api keys", "sha256").digest()
        self.privacy = hmac.new(master, b"cocina privacy", "sha256").digest()
        self.signer = Signer.parse(_read_or_create(folder / "audit.key", lambda: Signer.generate("cocina").encode()))


class GuardMetrics:
    """Counts for `/metrics`: verdicts by scanner, action and outcome; refusals by reason."""

    def __init__(self) -> None:
        self.verdicts: Counter[tuple[str, str, str, str]] = Counter()  # (stage, scanner, action, flagged|clean)
        self.refusals: Counter[str] = Counter()

    def verdict(self, stage: str, v: Verdict) -> None:
        self.verdicts[(stage, v.scanner, v.action.value, "flagged" if v.flagged else "clean")] += 1

    def refused(self, reason: str) -> None:
        self.refusals[reason] += 1


def _texts(value: Any, surface: str, skip: set[str]) -> list[tuple[list[Any], str]]:
    """(path, text) of every string the scanners read in an input: an OpenAI request's prompt and message
    contents; a prediction's string fields (not file URLs or choices)."""
    out: list[tuple[list[Any], str]] = []

    def walk(v: Any, path: list[Any]) -> None:
        if isinstance(v, str):
            out.append((path, v))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, [*path, i])
        elif isinstance(v, dict):
            for k, x in v.items():
                if surface == "openai" and path and path[0] == "messages" and k != "content":
                    continue
                walk(x, [*path, k])

    for key, v in value.items():
        if surface == "openai" and key not in ("prompt", "messages"):
            continue
        if key in skip:
            continue
        walk(v, [key])
    return out


def _put(value: Any, path: list[Any], new: str) -> None:
    for p in path[:-1]:
        value = value[p]
    value[path[-1]] = new


class _OutputScan:
    """The gate's `OutputFilter`: output scanners per choice on a stream, and the optional visible notice."""

    def __init__(self, guard: Guard, ticket: Ticket, pipeline: Pipeline | None, policy: Policy) -> None:
        self.guard = guard
        self.ticket = ticket
        self.pipeline = pipeline
        self.notice = policy.notice
        self.hold = policy.hold_chars
        self.streams: dict[int, StreamScanner] = {}
        self.noticed: set[int] = set()
        self.blocked_by: str | None = None
        self.verdicts: dict[str, Verdict] = {}

    def _with_notice(self, choice: int, text: str) -> str:
        if self.notice and choice not in self.noticed and text:
            self.noticed.add(choice)
            return f"{self.notice}\n\n{text}"
        return text

    def _stream(self, choice: int) -> StreamScanner:
        assert self.pipeline is not None
        if choice not in self.streams:
            self.streams[choice] = StreamScanner(self.pipeline, self.hold)
        return self.streams[choice]

    def _blocked(self, scanner: StreamScanner | None) -> tuple[str, bool]:
        self.blocked_by = (scanner.blocked_by if scanner else None) or self.blocked_by or "output"
        return "", True

    def text(self, choice: int, text: str) -> tuple[str, bool]:
        if self.pipeline is None:
            return self._with_notice(choice, text), False
        s = self._stream(choice)
        released, blocked = s.push(text)
        if blocked:
            return self._blocked(s)
        return self._with_notice(choice, released), False

    def flush(self, choice: int) -> tuple[str, bool]:
        if self.pipeline is None:
            return "", False
        s = self._stream(choice)
        rest, blocked = s.flush()
        for v in s.verdicts.values():
            self.verdicts[v.scanner] = v
        if blocked:
            return self._blocked(s)
        return self._with_notice(choice, rest), False

    def value(self, value: Any) -> tuple[Any, bool]:
        if isinstance(value, str):
            if self.pipeline is not None:
                result = self.pipeline.scan(value)
                for v in result.verdicts:
                    self.verdicts[v.scanner] = v
                if result.blocked_by is not None:
                    self.blocked_by = result.blocked_by
                    return None, True
                value = result.text
            return self._with_notice(0, value), False
        return value, False


class Guard:
    """Implements `cocina.serving.gate.Gate`; `authenticate` for the server's middleware."""

    def __init__(self, config: GuardConfig, data_dir: Path) -> None:
        self.config = config
        self.data_dir = data_dir
        self.secrets = GuardSecrets(data_dir)
        self.metrics = GuardMetrics()
        self._pipelines: dict[str, tuple[Policy, Pipeline, Pipeline | None]] = {}
        self._keyed_at = 0.0
        self._keyed = False
        self.store: Store
        self.keys: Keys
        self.limiter: Limiter
        self.audit: AuditLog | None = None

    # ---- lifecycle

    async def start(self, store: Store) -> None:
        from cocina.guard.scanners.normalize import warm

        self.store = store
        self.keys = Keys(store, KeyHasher(self.secrets.key_hashing))
        self.keys.on_created = self._key_created
        self.limiter = Limiter(store)
        warm()
        if self.config.audit:
            self.audit = AuditLog(store, self.secrets.signer, self.config.audit_origin)
            self.audit.start(self.config.checkpoint_interval_s)

    async def stop(self) -> None:
        if self.audit is not None:
            await self.audit.stop()

    # ---- keys

    def keyed(self) -> bool:
        """Whether any key exists (then every request needs one). Re-read at most once a second (a store round
        trip per request would cost PostgreSQL replicas a tenth of their requests' time), so a key created by
        `cocina keys create` in another process takes effect within a second; one created through this guard
        at once."""
        now = time.monotonic()
        if now - self._keyed_at > 1.0:
            self._keyed = self.store.count_keys() > 0
            self._keyed_at = now
        return self._keyed

    def _key_created(self, rec: KeyRecord) -> None:
        self._keyed = True

    def authenticate(self, token: str) -> Principal | str:
        """The principal of an API key, or the reason it is refused."""
        result = self.keys.authenticate(token)
        if isinstance(result, str):
            self.metrics.refused(f"key_{result}")
        return result

    # ---- policies

    def _policy(self, model: str) -> tuple[Policy, Pipeline, Pipeline | None]:
        cached = self._pipelines.get(model)
        if cached is None:
            policy = self.config.policy(model)
            cached = (policy, policy.input_pipeline(), policy.output_pipeline())
            self._pipelines[model] = cached
        return cached

    def disclosure(self, model: str, version: str | None) -> dict[str, Any] | None:
        """The machine-readable AI-disclosure marker of an answer of `model` (None when turned off)."""
        if not self._policy(model)[0].disclosure:
            return None
        return {"mode": "machine-generated", "model": model, "version": version, "provider": self.config.provider}

    # ---- the gate

    def check(self, req: AdmissionRequest, model: ServedModel) -> Ticket:
        principal = req.principal
        if isinstance(principal, Principal):
            if not principal.allows_model(model.name):
                self.metrics.refused("model_not_allowed")
                if req.deployment is not None:
                    # Answered exactly as a deployment that does not exist: neither it nor its model is revealed.
                    raise ModelNotFound(f"Deployment {req.deployment} not found.", param="deployment")
                raise AccessDenied(f"Model {model.name} not found.", hide=True)
            if not principal.has_scope("predict"):
                self.metrics.refused("scope")
                raise AccessDenied("This API key may not run predictions (it lacks the `predict` scope).")
        ticket = Ticket(principal, model.name, model.version, req.surface)
        disclosure = self.disclosure(model.name, model.version)
        if disclosure is not None:
            ticket.record["ai_disclosure"] = disclosure
        if isinstance(principal, Principal) and principal.key is not None:
            try:
                ticket.limits = self.limiter.charge_request(principal.key)
            except Exception as exc:
                self.metrics.refused(getattr(exc, "reason", "rate"))
                raise
            self.store.touch_key(principal.id, time.time())
        ticket.settings = self._policy(model.name)
        return ticket

    def scan(self, ticket: Ticket, value: dict[str, Any], model: ServedModel) -> dict[str, Any]:
        _, pipeline, _ = ticket.settings
        skip: set[str] = set()
        props = ((model.schema or {}).get("components", {}).get("schemas", {}).get("Input", {}).get("properties", {}))
        for name, prop in props.items():
            if prop.get("format") == "uri" or "enum" in prop or prop.get("items", {}).get("format") == "uri":
                skip.add(name)
        texts = _texts(value, ticket.surface, skip)
        if not texts or (not pipeline.steps and not pipeline.normalize_first):
            return value
        out = json.loads(json.dumps(value))  # a copy to redact in
        verdicts: dict[str, Verdict] = {}
        for path, text in texts:
            result: ScanResult = pipeline.scan(text)
            for v in result.verdicts:
                old = verdicts.get(v.scanner)
                if old is None or (v.flagged and not old.flagged):
                    verdicts[v.scanner] = v if old is None else replace(v, time_ms=old.time_ms + v.time_ms)
                else:
                    verdicts[v.scanner] = replace(old, time_ms=old.time_ms + v.time_ms)
            if result.redacted:
                _put(out, path, result.text)
                ticket.redacted = True
            if result.blocked_by is not None and ticket.blocked is None:
                ticket.blocked_by = result.blocked_by
                ticket.blocked = (
                    f"The input was blocked by the server's {result.blocked_by.replace('_', ' ')} scanner."
                )
        for v in verdicts.values():
            self.metrics.verdict("input", v)
        ticket.record["input_verdicts"] = [v.to_json() for v in verdicts.values()]
        if ticket.blocked is not None:
            self.metrics.refused(f"blocked_{ticket.blocked_by}")
        return out if ticket.redacted else value

    def reserve(self, ticket: Ticket, tokens: int) -> None:
        principal = ticket.principal
        if not isinstance(principal, Principal) or principal.key is None:
            return
        key = principal.key
        if key.tpm is None and key.monthly_tokens is None:
            return
        try:
            reservation, states = self.limiter.reserve(key, tokens)
        except Exception as exc:
            self.metrics.refused(getattr(exc, "reason", "quota"))
            raise
        ticket.reservation = reservation
        ticket.limits = [s for s in ticket.limits if s.name != "tokens"] + states

    def release(self, ticket: Ticket) -> None:
        if isinstance(ticket.reservation, Reservation):
            self.limiter.settle(ticket.reservation, 0)

    def output_filter(self, ticket: Ticket) -> OutputFilter | None:
        policy, _, output = ticket.settings
        if output is None and not policy.notice:
            return None
        f = _OutputScan(self, ticket, output, policy)
        ticket.record["_output"] = f  # read back at the end (not stored: removed in `finished`)
        return f

    def persist(self, rec: PredictionRecord) -> PredictionRecord:
        """Privacy mode: a copy of the record whose input, output and logs are replaced by keyed hashes."""
        policy = self._policy(rec.model or "")[0]
        guard = {k: v for k, v in rec.guard.items() if not k.startswith("_")}
        if not policy.privacy:
            return rec if guard == rec.guard else replace(rec, guard=guard)
        hashed = {**guard, "privacy": True, "input_hmac": self.keyed_hash(rec.input)}
        if rec.output is not None:
            hashed["output_hmac"] = self.keyed_hash(rec.output)
        return replace(
            rec,
            input={"_removed": PRIVACY_NOTE},
            run_input=None,
            output=None if rec.output is None else {"_removed": PRIVACY_NOTE},
            logs="",
            guard=hashed,
        )

    def keyed_hash(self, value: Any) -> str:
        """HMAC-SHA256 of a value's canonical JSON under the privacy key (a plain SHA-256 of a short prompt
        could be found by trying likely prompts; without the key, this cannot)."""
        return hmac.new(self.secrets.privacy, canonical(value), "sha256").hexdigest()

    def finished(self, rec: PredictionRecord, ticket: Ticket | None, tokens_used: int | None) -> None:
        """Settle the token reservation and append the prediction to the audit log."""
        if ticket is not None and isinstance(ticket.reservation, Reservation):
            self.limiter.settle(ticket.reservation, tokens_used or 0)
        elif ticket is not None and isinstance(ticket.principal, Principal) and tokens_used:
            self.limiter.charge_tokens(ticket.principal.id, tokens_used)
        out = ticket.record.get("_output") if ticket is not None else None
        if isinstance(out, _OutputScan):
            rec.guard["output_verdicts"] = [v.to_json() for v in out.verdicts.values()]
            for v in out.verdicts.values():
                self.metrics.verdict("output", v)
            if out.blocked_by is not None:
                rec.guard["output_blocked_by"] = out.blocked_by
        if self.audit is None:
            return
        entry = {
            "t": rec.completed_at,
            "prediction": rec.id,
            "key": rec.principal,
            "model": rec.model,
            "version": rec.version,
            "surface": rec.surface,
            "status": rec.status.value,
            "input_hmac": self.keyed_hash(rec.input),
            "output_hmac": self.keyed_hash(rec.output),
            "verdicts": [
                {"scanner": v["scanner"], "action": v["action"], "flagged": v["flagged"], "kinds": v["kinds"]}
                for stage in ("input_verdicts", "output_verdicts")
                for v in rec.guard.get(stage, [])
                if v["scanner"] != "normalize" or v["flagged"]
            ],
        }
        rec.guard["audit_index"] = self.audit.append(rec.id, entry)

