"""`cxr keygen` and `cxr sign`: who made a model file, checked where `$CXR_TRUSTED_KEY` is set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from cxr.cli.common import ModelFile, app, in_file, out_folder, say


@app.command("keygen")
def keygen_command(
    out: Annotated[Path, out_folder("The new folder for the key pair")],
) -> None:
    """A new Ed25519 key pair: cxr-signing.key (keep it with whoever trains; owner-only
    permissions) and cxr-signing.pub (give it to every server: $CXR_TRUSTED_KEY).

    Example: cxr keygen --out keys
    """
    from cxr.models.signing import TRUSTED_KEY_ENV, new_key_pair

    private, public = new_key_pair(out)
    say(f"wrote {private} (secret: never copy it to a server) and {public}")
    say(f"servers that must only load your models: export {TRUSTED_KEY_ENV}={public.resolve()}")


@app.command("sign")
def sign_command(
    model: ModelFile,
    key: Annotated[Path, in_file("The signing key `cxr keygen` wrote (cxr-signing.key).")],
) -> None:
    """Sign a model file (.pt or .onnx): a detached MODEL.sig beside it, over the file's exact
    bytes. With $CXR_TRUSTED_KEY set, serve, listen and every other command refuse models that
    are unsigned, changed after signing or signed with another key.

    Example: cxr sign runs/quick/model.pt --key keys/cxr-signing.key
    """
    from cxr.models.signing import sign

    say(f"wrote {sign(model, key)}")
