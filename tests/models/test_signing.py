"""Model signatures: with $CXR_TRUSTED_KEY set, only files signed by that key load, whichever
command loads them; a re-sealed file (card edited, checksum redone) is refused although its
checksum is valid, which the checksum alone cannot do."""

import os
import stat
import subprocess
import sys

import pytest
import torch

from cxr.errors import CxrError
from cxr.inference.export import export_onnx
from cxr.inference.predictor import load_predictor
from cxr.models.io import digest
from cxr.models.signing import TRUSTED_KEY_ENV, new_key_pair, sign, signature_path, verify
from tests.conftest import save_tiny_model


def _cxr(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "cxr", *map(str, args)],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    return new_key_pair(folder / "ours"), new_key_pair(folder / "theirs")


def test_keygen_and_sign_from_the_cli(tmp_path):
    model = save_tiny_model(tmp_path / "model.pt")
    made = _cxr("keygen", "--out", tmp_path / "k")
    assert made.returncode == 0, made.stdout + made.stderr
    private = tmp_path / "k" / "cxr-signing.key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    signed = _cxr("sign", model, "--key", private)
    assert signed.returncode == 0 and "model.pt.sig" in signed.stdout
    again = _cxr("sign", model, "--key", private)
    assert again.returncode == 2 and "never overwrites" in again.stdout
    trusted = {TRUSTED_KEY_ENV: str(tmp_path / "k" / "cxr-signing.pub")}
    unsigned = save_tiny_model(tmp_path / "unsigned.pt")
    refused = _cxr("predict", unsigned, tmp_path / "k", env=trusted)
    assert refused.returncode == 2 and "not signed" in refused.stdout, refused.stdout


def test_only_files_signed_by_the_trusted_key_load(keys, tmp_path, monkeypatch):
    (ours, our_public), (theirs, _) = keys
    good = save_tiny_model(tmp_path / "good.pt")
    sign(good, ours)
    stranger = save_tiny_model(tmp_path / "stranger.pt")
    sign(stranger, theirs)
    unsigned = save_tiny_model(tmp_path / "unsigned.pt")
    monkeypatch.setenv(TRUSTED_KEY_ENV, str(our_public))
    assert load_predictor(good).card.classes == ("NORMAL", "PNEUMONIA")
    with pytest.raises(CxrError, match="signed by another key"):
        load_predictor(stranger)
    with pytest.raises(CxrError, match="not signed"):
        load_predictor(unsigned)


def test_a_resealed_file_with_swapped_classes_is_refused(keys, tmp_path, monkeypatch):
    """The attack the checksum cannot stop: classes swapped, checksum recomputed."""
    (ours, our_public), _ = keys
    model = save_tiny_model(tmp_path / "model.pt")
    sign(model, ours)
    payload = torch.load(model, weights_only=True)
    payload["card"]["classes"] = ["PNEUMONIA", "NORMAL"]
    payload["sha256"] = digest(payload)
    torch.save(payload, model)
    assert load_predictor(model).card.classes == ("PNEUMONIA", "NORMAL")  # no key: it loads
    monkeypatch.setenv(TRUSTED_KEY_ENV, str(our_public))
    with pytest.raises(CxrError, match="changed after signing"):
        load_predictor(model)


def test_an_onnx_export_is_signed_the_same_way(keys, tmp_path):
    (ours, our_public), _ = keys
    onnx_file = export_onnx(save_tiny_model(tmp_path / "m.pt"), tmp_path / "m.onnx")
    sign(onnx_file, ours)
    assert verify(onnx_file, our_public).startswith("ed25519:")
    raw = bytearray(onnx_file.read_bytes())
    raw[-1] ^= 1
    onnx_file.write_bytes(bytes(raw))
    with pytest.raises(CxrError, match="does not match"):
        verify(onnx_file, our_public)


def test_broken_signatures_and_keys_are_one_clear_error(keys, tmp_path):
    (ours, our_public), _ = keys
    model = save_tiny_model(tmp_path / "model.pt")
    signature_path(model).write_text("{not json")
    with pytest.raises(CxrError, match="not a cxr signature file"):
        verify(model, our_public)
    with pytest.raises(CxrError, match="not a PEM public key"):
        verify(model, ours)  # the private key where the public one belongs
    with pytest.raises(CxrError, match="no such public key file"):
        verify(model, tmp_path / "missing.pub")
