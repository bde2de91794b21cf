"""The worklist's patient pseudonym: HMAC-SHA256 of PatientID under a site secret, so that a
numeric MRN cannot be recovered by hashing every candidate. The secret comes from
CXR_PSEUDONYM_KEY, else from a key file the node creates once with owner-only permissions
(keep it: a new key gives every patient a new pseudonym)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from pydicom import Dataset

from cxr.errors import CxrError

KEY_ENV = "CXR_PSEUDONYM_KEY"
KEY_FILE = "pseudonym.key"
MIN_KEY_CHARS = 32


class PseudonymKeyError(CxrError):
    """The site secret is too short or its file is readable by others."""


def site_key(folder: Path) -> tuple[bytes, str]:
    """(secret, where it came from, for the start-up line)."""
    given = os.environ.get(KEY_ENV)
    if given is not None:
        if len(given) < MIN_KEY_CHARS:
            raise PseudonymKeyError(f"{KEY_ENV}: at least {MIN_KEY_CHARS} characters")
        return given.encode(), f"${KEY_ENV}"
    path = Path(folder) / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PseudonymKeyError(f"{path}: readable by others; chmod 600 it") from None
        return _checked(path), str(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return _checked(path), str(path)


def _checked(path: Path) -> bytes:
    """The key in `path`; a file cut short (a kill between creating and writing it) or edited to
    a few characters would key every pseudonym with almost nothing."""
    key = path.read_bytes().strip()
    if len(key) < MIN_KEY_CHARS:
        raise PseudonymKeyError(
            f"{path}: holds {len(key)} characters, at least {MIN_KEY_CHARS}; if it was never "
            "used, delete it and a new one is made (pseudonyms made with a key change with it)"
        )
    return key


def pseudonym(key: bytes, header: Dataset) -> str | None:
    patient = str(header.get("PatientID", "") or "").strip()
    if not patient:
        return None
    return "p-" + hmac.new(key, patient.encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:24]
