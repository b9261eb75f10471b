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
    """Hex sha256 of the Python sources under ``parts`` (folders or files) of ``package``, a
    folder or ``importlib.resources.files`` of a package (one imported from a zip, as Dask's
    ``upload_file`` ships it, too), with their relative names: another build has another."""
    from pathlib import Path

    package = Path(package) if isinstance(package, str) else package
    digest = hashlib.sha256()
    for part in parts:
        top = package.joinpath(*part.split("/")) if part else package
        for name, source in sorted(_sources(top, part)):
            digest.update(name.encode() + b"\0")
            digest.update(source.read_bytes() + b"\0")
    return digest.hexdigest()


def _sources(top, name):
    """(relative name, entry) of each ``.py`` file at or under ``top``, named ``name``."""
    if not top.is_dir():
        return [(name, top)]
    return [found for entry in top.iterdir() if entry.is_dir() or entry.name.endswith(".py")
            for found in _sources(entry, f"{name}/{entry.name}" if name else entry.name)]
