"""The sha256 of a file's every byte: what a model bundle's checksums, a small input's
fingerprint and a scene held in memory are compared by. A leaf module, so that every layer
that hashes a file can import it without importing the others."""

import hashlib

CHUNK = 2**20


def file_sha256(path):
    """Hex sha256 of every byte of file ``path``; OSError where it cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
