"""Who made this model file: Ed25519 signatures, optional, checked wherever a model is loaded.

The checksum inside a model file proves it is intact, not who wrote it: anyone can edit the card
(swap the classes, lower the threshold) and seal it again. A signature made with a key only the
training team holds can't be redone that way. The serving side keeps only the public key, so a
stolen server cannot sign. Signatures are detached (`model.pt.sig`, like GPG's) so signing never
rewrites the model file, and they cover the file's exact bytes, .pt and .onnx alike.

Checked when `$CXR_TRUSTED_KEY` names a public key: then every command that loads a model (serve,
listen, predict, evaluate...) refuses one that is unsigned or signed by another key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cxr.errors import CxrError
from cxr.outputs import must_be_new

TRUSTED_KEY_ENV = "CXR_TRUSTED_KEY"
SIGNATURE_SUFFIX = ".sig"
ALGORITHM = "ed25519"
PRIVATE_NAME, PUBLIC_NAME = "cxr-signing.key", "cxr-signing.pub"


def signature_path(model: Path) -> Path:
    return model.with_name(model.name + SIGNATURE_SUFFIX)


def new_key_pair(folder: Path) -> tuple[Path, Path]:
    """A signing key (owner read/write only) and its public key in a new folder."""
    folder.mkdir(parents=True)
    private, public = folder / PRIVATE_NAME, folder / PUBLIC_NAME
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def sign(model: Path, private_key: Path) -> Path:
    """Write `model`'s detached signature beside it; refused if one is already there."""
    key = _load(private_key, serialization.load_pem_private_key, Ed25519PrivateKey, "signing")
    out = signature_path(model)
    must_be_new(out, "remove it to sign again")
    digest = _file_digest(model)
    body = {
        "algorithm": ALGORITHM,
        "file": model.name,
        "sha256": digest,
        "signature": base64.b64encode(key.sign(bytes.fromhex(digest))).decode(),
        "public_key": _fingerprint(key.public_key()),
    }
    out.write_text(json.dumps(body, indent=1) + "\n")
    return out


def verify(model: Path, public_key: Path) -> str:
    """The signer's key fingerprint if `model` carries a valid signature by `public_key`, else a
    CxrError saying what is missing or wrong."""
    key = _load(public_key, serialization.load_pem_public_key, Ed25519PublicKey, "public")
    sig = signature_path(model)
    if not sig.is_file():
        raise CxrError(
            f"{model}: not signed ({sig.name} missing), and ${TRUSTED_KEY_ENV} requires signed "
            f"models; sign it with `cxr sign {model.name} --key {PRIVATE_NAME}`"
        )
    try:
        body = json.loads(sig.read_text())
        signature = base64.b64decode(body["signature"], validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise CxrError(f"{sig}: not a cxr signature file") from exc
    if body.get("algorithm") != ALGORITHM:
        raise CxrError(f"{sig}: unknown signature algorithm {body.get('algorithm')!r}")
    digest = _file_digest(model)
    try:
        key.verify(signature, bytes.fromhex(digest))
    except InvalidSignature as exc:
        raise CxrError(
            f"{model}: the signature does not match: the file was changed after signing, or it "
            f"was signed by another key than {public_key.name} ({_fingerprint(key)})"
        ) from exc
    return _fingerprint(key)


def trusted_key() -> Path | None:
    """The public key models must be signed with, if this installation requires one."""
    value = os.environ.get(TRUSTED_KEY_ENV)
    return Path(value).expanduser() if value else None


def check_trusted(model: Path) -> None:
    """Verify `model` when a trusted key is configured; nothing otherwise."""
    if (key := trusted_key()) is not None:
        verify(model, key)


def _load(path: Path, loader, kind: type, what: str):
    try:
        key = loader(Path(path).read_bytes(), **({"password": None} if what == "signing" else {}))
    except FileNotFoundError as exc:
        raise CxrError(f"{path}: no such {what} key file") from exc
    except (ValueError, TypeError, OSError) as exc:
        raise CxrError(f"{path}: not a PEM {what} key ({type(exc).__name__})") from exc
    if not isinstance(key, kind):
        raise CxrError(f"{path}: not an Ed25519 {what} key")
    return key


def _file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]
