"""Secrets in text: API keys, tokens and private keys, found with detect-secrets' own patterns.

detect-secrets (Yelp) keeps the patterns of ~25 providers (AWS, GitHub, GitLab, Slack, Stripe, OpenAI, JWT,
SendGrid, Twilio, PyPI, npm, private keys, ...). Its line scanner is made for source files: run over prose it
flags every ordinary word as a high-entropy string and costs ~3.6 ms a line, so this scanner takes only its
regex-based plugins' patterns (`denylist`), skips the entropy and keyword plugins, and runs each pattern only
when a cheap literal that every match must contain is present (the IBM/Cloudant ones cost ~0.2 ms each over 1 KB
otherwise). Private keys are redacted whole (BEGIN to END), and cocina's own keys are recognised by their
checksum.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from cocina.guard.keys import looks_like_key
from cocina.guard.scanners.base import Finding

# Literals (lower-cased) at least one of which every match of the plugin's patterns contains.
_TRIGGERS: dict[str, tuple[str, ...]] = {
    "AWS Access Key": ("akia", "asia", "abia", "acca", "a3t", "aws"),
    "Artifactory Credentials": ("akc", "ap"),
    "Azure Storage Account access key": ("accountkey=",),
    "Basic Auth Credentials": ("://",),
    "Cloudant Credentials": ("cloudant", "cl_", "cl-", "clou"),
    "Discord Bot Token": (".",),
    "GitHub Token": ("gh",),
    "GitLab Token": ("gl", "gr1348941"),
    "IBM COS HMAC Credentials": ("cos", "hmac"),
    "IBM Cloud IAM Key": ("iam",),
    "JSON Web Token": ("eyj",),
    "Mailchimp Access Key": ("-us",),
    "NPM tokens": ("_authtoken",),
    "OpenAI Token": ("t3blbkfj",),
    "Private Key": ("private key",),
    "PyPI Token": ("pypi-",),
    "SendGrid API Key": ("sg.",),
    "Slack Token": ("xox", "hooks.slack.com"),
    "SoftLayer Credentials": ("softlayer", "sl_", "sl-"),
    "Square OAuth Secret": ("sq0csp-",),
    "Stripe Access Key": ("k_live_",),
    "Telegram Bot Token": (":",),
    "Twilio API Key": ("ac", "sk"),
}
_SKIP = {"Public IP (ipv4)", "Base64 High Entropy String", "Hex High Entropy String", "Secret Keyword"}
_PRIVATE_BLOCK = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\Z)", re.S
)
_COCINA_KEY = re.compile(r"ck_[0-9A-Za-z]{46}")
# Any further provider tokens with a distinctive prefix (OpenAI project keys, Anthropic, Hugging Face).
_EXTRA = (
    ("OpenAI Token", re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{32,}"), ("sk-",)),
    ("Anthropic Token", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{32,}"), ("sk-ant-",)),
    ("Hugging Face Token", re.compile(r"\bhf_[A-Za-z]{34}\b"), ("hf_",)),
)


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    triggers: tuple[str, ...]


def _kind(secret_type: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", secret_type.lower()).strip("_")


@functools.cache
def _rules() -> tuple[_Rule, ...]:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins.base import RegexBasedDetector

    rules = []
    mapping: dict[str, type] = dict(get_mapping_from_secret_type_to_class())
    for secret_type, cls in sorted(mapping.items()):
        if secret_type in _SKIP or not issubclass(cls, RegexBasedDetector) or secret_type == "Private Key":
            continue
        for pattern in cls().denylist:  # the plugin's own compiled patterns
            rules.append(_Rule(_kind(secret_type), pattern, _TRIGGERS.get(secret_type, ())))
    rules += [_Rule(_kind(t), p, trig) for t, p, trig in _EXTRA]
    return tuple(rules)


class SecretsScanner:
    """Finds secrets; redactable (each finding is the secret's span)."""

    name = "secrets"
    redacts = True

    def __init__(self) -> None:
        self.rules = _rules()

    def find(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        lowered = text.lower()
        if "private key" in lowered:
            found += [Finding("private_key", m.start(), m.end()) for m in _PRIVATE_BLOCK.finditer(text)]
        if "ck_" in text:
            found += [Finding("cocina_key", m.start(), m.end()) for m in _COCINA_KEY.finditer(text)
                      if looks_like_key(m.group())]
        for rule in self.rules:
            if rule.triggers and not any(t in lowered for t in rule.triggers):
                continue
            for m in rule.pattern.finditer(text):
                if m.lastindex and m.start(1) > m.start():  # the secret is a group after a label (`aws_key="…"`)
                    start, end = m.span(1)
                else:
                    start, end = m.span()
                if end > start:
                    found.append(Finding(rule.kind, start, end))
        return found
