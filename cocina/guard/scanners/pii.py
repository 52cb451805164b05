"""Personal data: e-mail addresses, phone numbers, IBANs, payment cards (Luhn) and Spanish DNI/NIE numbers.

Each kind is a regular expression for candidates and a validator that rejects look-alikes: python-stdnum's
checksums (Luhn for cards, ISO 7064 for IBANs, the DNI/NIE control letter) and Google's libphonenumber
(`phonenumbers`) for phone numbers. This is what presidio's analyzer does without an NLP model (its `no_op`
engine: pattern recognizers plus checksums); presidio itself is not used because it needs spaCy installed even
then (~300 MB with its dependencies), fetches the public-suffix list at first use unless told not to, and its
pipeline costs several milliseconds per kilobyte, over this scanner's budget. Names and addresses, which need a
model, are not detected.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from cocina.guard.scanners.base import Finding

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
_DNI = re.compile(r"\b\d{8}[- ]?[A-Za-z]\b")
_NIE = re.compile(r"\b[XYZxyz][- ]?\d{7}[- ]?[A-Za-z]\b")
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,4}(?!\w)")


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _card(text: str) -> bool:
    from stdnum import luhn

    d = _digits(text)
    return 13 <= len(d) <= 19 and d[0] in "3456" and luhn.is_valid(d)


def _iban(text: str) -> bool:
    from stdnum import iban

    return bool(iban.is_valid(text))


def _dni(text: str) -> bool:
    from stdnum.es import dni

    return bool(dni.is_valid(text.replace(" ", "")))


def _nie(text: str) -> bool:
    from stdnum.es import nie

    return bool(nie.is_valid(text.replace(" ", "")))


class PIIScanner:
    """Finds personal data (redactable spans). `kinds` limits it (default: all); `phone_regions` are the
    countries whose national phone formats are recognised besides international `+NN` numbers."""

    name = "pii"
    redacts = True
    KINDS = ("email", "phone", "iban", "credit_card", "es_dni", "es_nie")

    def __init__(self, kinds: tuple[str, ...] = KINDS, phone_regions: tuple[str, ...] = ("ES", "US", "GB")) -> None:
        unknown = set(kinds) - set(self.KINDS)
        if unknown:
            raise ValueError(f"unknown PII kind {sorted(unknown)[0]!r}; kinds are {', '.join(self.KINDS)}")
        self.kinds = kinds
        self.phone_regions = phone_regions
        checks: list[tuple[str, re.Pattern[str], Callable[[str], bool]]] = [
            ("email", _EMAIL, lambda s: True),
            ("iban", _IBAN, _iban),
            ("credit_card", _CARD, _card),
            ("es_dni", _DNI, _dni),
            ("es_nie", _NIE, _nie),
            ("phone", _PHONE, self._phone),
        ]
        self._checks = [c for c in checks if c[0] in kinds]

    def _phone(self, text: str) -> bool:
        import phonenumbers

        if len(_digits(text)) < 7:
            return False
        regions = (None,) if text.startswith("+") else self.phone_regions
        for region in regions:
            try:
                number = phonenumbers.parse(text, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                return True
        return False

    def find(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        taken: list[tuple[int, int]] = []
        has_at = "@" in text
        has_digit = any(c.isdigit() for c in text)
        for kind, pattern, valid in self._checks:
            if kind == "email" and not has_at:
                continue
            if kind != "email" and not has_digit:
                continue
            for m in pattern.finditer(text):
                s, e = m.span()
                if any(s < te and ts < e for ts, te in taken):
                    continue  # already part of something found first (a card is not also a phone)
                if valid(m.group()):
                    found.append(Finding(kind, s, e))
                    taken.append((s, e))
        return found
