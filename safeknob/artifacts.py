"""The experiment folder: paths, manifests and atomic writes.

Layout (``data/<experiment>/``): ``config.toml``, ``experts/{reckless,safe}/``,
``demos/{reckless,safe}/``, ``rewards/``, ``blends/<method>/alpha-A/``, ``eval/``,
``report/``. Every artifact folder carries a ``meta.json`` (or ``manifest.json``) with the
schema version, stage, resolved config, seed, package versions, git commit, command line,
wall time and input checksums. Folders are built in a temporary sibling and renamed into
place, so an interrupted stage leaves the previous artifact or none.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
ROLES = ("reckless", "safe")


class ArtifactError(RuntimeError):
    """A required artifact is missing, corrupt, or from the wrong stage/schema."""


@dataclass(frozen=True)
class ExperimentPaths:
    """Where each stage of one experiment reads and writes."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    def expert(self, role: str) -> Path:
        return self.root / "experts" / role

    def demos(self, role: str) -> Path:
        return self.root / "demos" / role

    def rewards(self, role: str) -> Path:
        return self.root / "rewards" / role

    @property
    def blends(self) -> Path:
        return self.root / "blends"

    def blend(self, method: str, alpha: float) -> Path:
        return self.blends / method / alpha_dir(alpha)

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def cache(self) -> Path:
        return self.root / "cache"


def alpha_dir(alpha: float) -> str:
    return f"alpha-{alpha:.2f}"


def experiment_paths(data_dir: Path | str, name: str) -> ExperimentPaths:
    return ExperimentPaths(Path(data_dir) / name)


# ---------------------------------------------------------------------------- provenance
def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in ("safeknob", "numpy", "torch", "gymnasium", "stable-baselines3", "imitation"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def git_commit() -> str | None:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def checksum(path: Path) -> str:
    """sha256 of a file, or of a folder's files (names and contents, sorted)."""
    h = hashlib.sha256()
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def make_meta(
    stage: str,
    config: dict[str, Any],
    seed: int,
    inputs: dict[str, Path] | None = None,
    wall_seconds: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The provenance record every artifact carries."""
    return {
        "schema": SCHEMA_VERSION,
        "stage": stage,
        "config": config,
        "seed": seed,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "wall_seconds": wall_seconds,
        "inputs": {k: checksum(v) for k, v in (inputs or {}).items()},
        **extra,
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
    os.replace(tmp, path)


def write_text(path: Path, text: str | bytes) -> None:
    """Write a file atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    mode = "wb" if isinstance(text, bytes) else "w"
    with os.fdopen(fd, mode) as fh:
        fh.write(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Build a folder in a temporary sibling and swap it into place on success.

    On any exception (or a kill) the previous ``final`` is untouched and the temporary
    folder is removed (or left as a ``.tmp-*`` sibling that the next run cleans).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for pattern in (f".tmp-{final.name}-*", f".old-{final.name}-*"):  # left by a killed run
        for stale in final.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{final.name}-"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.parent / f".old-{final.name}-{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def read_meta(folder: Path, stage: str, fix: str, name: str = "meta.json") -> dict[str, Any]:
    """Read and check an artifact's meta; raise ArtifactError naming the fixing command."""
    path = Path(folder) / name
    if not path.is_file():
        raise ArtifactError(f"{folder} is missing ({name} not found); run `{fix}` first")
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise ArtifactError(f"{path} is corrupt; re-run `{fix} --force`") from None
    if not isinstance(meta, dict) or meta.get("stage") != stage:
        got = meta.get("stage") if isinstance(meta, dict) else None
        raise ArtifactError(f"{path} is from stage {got!r}, expected {stage!r}; run `{fix}`")
    if meta.get("schema") != SCHEMA_VERSION:
        raise ArtifactError(
            f"{path} has schema {meta.get('schema')}, expected {SCHEMA_VERSION}; "
            f"re-run `{fix} --force`"
        )
    return meta
