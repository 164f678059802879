"""The registry's signing key: loaded (or created) at startup, its public half published beside it."""

from __future__ import annotations

import logging
from pathlib import Path

from modelfleet_common.signing import ArtifactSigner

logger = logging.getLogger("modelfleet.registry")


def load_signer(path: Path) -> ArtifactSigner:
    """The key at `path`, created if missing; makes sure `<path>.pub` holds its public key.

    Logs the key id and where the public key is, so operators can add it to every verifier's
    trusted-keys file; the private key is never logged.
    """
    signer = ArtifactSigner.load_or_create(path)
    public = path.with_name(path.name + ".pub")
    if not public.exists() or public.read_text().strip() != signer.public_key_b64:
        public.write_text(signer.public_key_b64 + "\n")
    logger.info(
        "signing key loaded: add its public key to FLEET_TRUSTED_KEYS_FILE of every verifier",
        extra={"signing_key_id": signer.key_id, "public_key_file": str(public.resolve())},
    )
    return signer
