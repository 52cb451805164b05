"""Signed notes and checkpoints, in the C2SP formats (c2sp.org/signed-note, c2sp.org/tlog-checkpoint), with
Ed25519 from `cryptography`.

A checkpoint is the note text `<origin>\\n<tree size>\\n<base64 root hash>\\n`; a signed note is that text, a
blank line, and one line per signature: `— <key name> <base64(4-byte key id ‖ signature)>`. The key id of an
Ed25519 key is SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]. Verifiers ignore signatures by unknown keys and
refuse a note that no known key signed. Keys are written as Go's `golang.org/x/mod/sumdb/note` writes them
(`PRIVATE+KEY+<name>+<hex id>+<base64>` and the verifier key `<name>+<hex id>+<base64>`), so that other tools
of the ecosystem read them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = 0x01
_DASH = "\u2014"  # the em dash that starts every signature line


class NoteError(ValueError):
    """A note, checkpoint or key that is malformed or does not verify; the message says what is wrong."""


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def key_id(name: str, public_key: bytes) -> bytes:
    """C2SP signed-note key id of an Ed25519 key."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:4]


@dataclass(frozen=True)
class Verifier:
    """A public key that verifies notes: its name, key id and Ed25519 key."""

    name: str
    id: bytes
    key: Ed25519PublicKey

    @classmethod
    def parse(cls, text: str) -> Verifier:
        """A verifier key `<name>+<hex id>+<base64(0x01 ‖ key)>`."""
        parts = text.strip().split("+", 2)  # base64 may itself hold '+'
        if len(parts) != 3 or not _valid_name(parts[0]):
            raise NoteError("a verifier key is <name>+<hex key id>+<base64 key>")
        name, hex_id, b64 = parts
        try:
            raw = base64.b64decode(b64, validate=True)
            kid = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError):
            raise NoteError("the verifier key is not valid hex/base64") from None
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("the verifier key is not an Ed25519 key")
        if kid != key_id(name, raw[1:]):
            raise NoteError("the verifier key's id does not match its name and key")
        return cls(name, kid, Ed25519PublicKey.from_public_bytes(raw[1:]))

    def encode(self) -> str:
        raw = self.key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return f"{self.name}+{self.id.hex()}+{base64.b64encode(bytes([ALG_ED25519]) + raw).decode()}"


@dataclass(frozen=True)
class Signer:
    """A private key that signs notes."""

    name: str
    key: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str) -> Signer:
        if not _valid_name(name):
            raise NoteError(f"a key name must be non-empty, without spaces or '+': {name!r}")
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def parse(cls, text: str) -> Signer:
        """A signer key `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`."""
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"] or not _valid_name(parts[2]):
            raise NoteError("a signer key is PRIVATE+KEY+<name>+<hex key id>+<base64 key>")
        try:
            raw = base64.b64decode(parts[4], validate=True)
        except binascii.Error:
            raise NoteError("the signer key is not valid base64") from None
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("the signer key is not an Ed25519 key")
        signer = cls(parts[2], Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.verifier().id.hex() != parts[3]:
            raise NoteError("the signer key's id does not match its name and key")
        return signer

    def encode(self) -> str:
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        seed = self.key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        kid = self.verifier().id.hex()
        return f"PRIVATE+KEY+{self.name}+{kid}+{base64.b64encode(bytes([ALG_ED25519]) + seed).decode()}"

    def verifier(self) -> Verifier:
        public = self.key.public_key()
        return Verifier(self.name, key_id(self.name, public.public_bytes(Encoding.Raw, PublicFormat.Raw)), public)

    def sign(self, text: str) -> str:
        """The signed note of `text` (which must end with a newline)."""
        if not text.endswith("\n"):
            raise NoteError("a note's text ends with a newline")
        sig = self.key.sign(text.encode())
        v = self.verifier()
        return f"{text}\n{_DASH} {self.name} {base64.b64encode(v.id + sig).decode()}\n"


def open_note(note: str, verifiers: list[Verifier]) -> tuple[str, list[str]]:
    """The text of a signed note and the names of the known keys whose signatures verified; raises `NoteError`
    when the note is malformed, a known key's signature is bad, or no known key signed it."""
    text, sep, sigs = note.rpartition("\n\n")
    if not sep:
        raise NoteError("the note has no signature block")
    text += "\n"
    lines = sigs.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise NoteError("the note has no signatures")
    if len(lines) > 100:
        raise NoteError("the note has too many signatures")
    known = {(v.name, v.id): v for v in verifiers}
    verified: list[str] = []
    for line in lines:
        head, _, rest = line.partition(" ")
        name, _, b64 = rest.partition(" ")
        if head != _DASH or not name or not b64 or " " in b64:
            raise NoteError(f"a malformed signature line: {line[:60]!r}")
        try:
            raw = base64.b64decode(b64, validate=True)
        except binascii.Error:
            raise NoteError(f"the signature of {name} is not valid base64") from None
        if len(raw) < 5:
            raise NoteError(f"the signature of {name} is too short")
        v = known.get((name, raw[:4]))
        if v is None:
            continue  # a key we do not know (a cosigner): ignored, as the spec says
        try:
            v.key.verify(raw[4:], text.encode())
        except InvalidSignature:
            raise NoteError(f"the signature of {name} does not verify: the note was altered or forged") from None
        verified.append(name)
    if not verified:
        raise NoteError("no known key signed this note (a forged checkpoint, or the wrong verifier key)")
    return text, verified


@dataclass(frozen=True)
class Checkpoint:
    """A log's state: its origin, size and root hash (the body of a C2SP tlog-checkpoint)."""

    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("a checkpoint has an origin, a size and a root hash, each on its own line")
        origin, size_text, root_b64 = lines[0], lines[1], lines[2]
        if not origin:
            raise NoteError("the checkpoint has no origin")
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise NoteError(f"the checkpoint's size is not a decimal number: {size_text!r}")
        try:
            root = base64.b64decode(root_b64, validate=True)
        except binascii.Error:
            raise NoteError("the checkpoint's root hash is not valid base64") from None
        if len(root) != 32:
            raise NoteError("the checkpoint's root hash is not 32 bytes")
        return cls(origin, int(size_text), root)


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> str:
    """The signed note of a checkpoint."""
    return signer.sign(checkpoint.text())


def open_checkpoint(note: str, verifiers: list[Verifier], origin: str | None = None) -> Checkpoint:
    """A checkpoint from a signed note that a known key signed (and of `origin`, when given)."""
    text, _ = open_note(note, verifiers)
    cp = Checkpoint.parse(text)
    if origin is not None and cp.origin != origin:
        raise NoteError(f"the checkpoint is of the log {cp.origin!r}, not {origin!r}")
    return cp
