"""The sha256 of a file's every byte: what a model bundle's checksums, a small input's
fingerprint and a scene held in memory are compared by; and of a package's Python sources,
what code made a result. A leaf module, so that every layer that hashes a file can import it
without importing the others."""

import hashlib

CHUNK = 2**20


def file_sha256(path):
    """Hex sha256 of every byte of file ``path``; OSError where it cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sources_sha256(package, parts=("",)):
    """Hex sha256 of the Python sources under ``parts`` (folders or files) of the folder
    ``package``, with their relative names: another build of the code has another."""
    from pathlib import Path

    package = Path(package)
    digest = hashlib.sha256()
    for part in parts:
        top = package / part
        for path in sorted(top.rglob("*.py") if top.is_dir() else [top]):
            digest.update(path.relative_to(package).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()
