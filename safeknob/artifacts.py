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
import errno
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

from safeknob.errors import ArtifactError

SCHEMA_VERSION = 1
ROLES = ("reckless", "safe")


class DiskFullError(ArtifactError):
    """A write ran out of disk space (or quota); nothing half-written was kept."""


_NEARLY_FULL = 64 * 1024
"""Bytes left below which a failed write is put down to a full disk (see :func:`_disk_full`)."""


def _disk_full(exc: BaseException, where: Path) -> bool:
    """Whether ``exc`` comes from a full disk: ENOSPC or EDQUOT, or an error raised while the
    file system of ``where`` has (almost) no room left (``torch.save`` reports ENOSPC as a
    RuntimeError "unexpected pos ..." without errno)."""
    if isinstance(exc, DiskFullError):
        return True
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if not isinstance(exc, OSError | RuntimeError):
        return False
    try:
        st = os.statvfs(where)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < _NEARLY_FULL


@contextlib.contextmanager
def _full_disk_as_error(where: Path, path: Path) -> Iterator[None]:
    """Re-raise a failure that a full disk under ``where`` caused as :class:`DiskFullError`
    naming ``path``; any other failure unchanged."""
    try:
        yield
    except BaseException as exc:
        if _disk_full(exc, where):
            raise _disk_full_error(path) from exc
        raise


def _disk_full_error(path: Path) -> DiskFullError:
    return DiskFullError(
        f"no space left on device while writing {path}; nothing half-written was kept (what "
        "was there before is unchanged). Free some space, or pass --data on another disk, "
        "and re-run"
    )


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
    """Folder name of one alpha: two decimals when they say it exactly (``alpha-0.50``),
    else the shortest exact decimal (``alpha-0.125``), so distinct alphas never share a
    folder; ``-0.0`` is 0."""
    alpha = float(alpha) + 0.0  # -0.0 -> 0.0
    two = f"{alpha:.2f}"
    return f"alpha-{two}" if float(two) == alpha else f"alpha-{alpha!r}"


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
    with _atomic_file(path) as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")


def write_text(path: Path, text: str | bytes) -> None:
    """Write a file atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _atomic_file(path, "wb" if isinstance(text, bytes) else "w") as fh:
        fh.write(text)


@contextlib.contextmanager
def _atomic_file(path: Path, mode: str = "w") -> Iterator[Any]:
    """An open temporary sibling of ``path``, renamed onto it on success and removed on any
    failure; a full disk becomes :class:`DiskFullError`."""
    with _full_disk_as_error(path.parent, path):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, mode) as fh:
                yield fh
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Build a folder in a temporary sibling and swap it into place on success.

    On any exception (or a kill) the previous ``final`` is untouched and the temporary
    folder is removed (or left as a ``.tmp-*`` sibling that the next run cleans). A write that
    fails for want of disk space is raised as :class:`DiskFullError` (one line in the CLI).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for pattern in (f".tmp-{final.name}-*", f".old-{final.name}-*"):  # left by a killed run
        for stale in final.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)
    with _full_disk_as_error(final.parent, final):
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{final.name}-"))
    try:
        yield tmp
    except BaseException as exc:
        full = _disk_full(exc, tmp)  # before the cleanup frees what filled the disk
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            raise _disk_full_error(final) from exc
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
    if not isinstance(meta, dict):
        raise ArtifactError(
            f"{path} holds {type(meta).__name__} {str(meta)[:30]!r}, expected a JSON object; "
            f"remake it with `{fix} --force`"
        )
    if meta.get("stage") != stage:
        got = meta.get("stage")
        raise ArtifactError(f"{path} is from stage {got!r}, expected {stage!r}; run `{fix}`")
    if meta.get("schema") != SCHEMA_VERSION:
        raise ArtifactError(
            f"{path} has schema {meta.get('schema')}, expected {SCHEMA_VERSION}; "
            f"re-run `{fix} --force`"
        )
    return meta


def stage_config(exp: Any, *sections: str) -> dict[str, Any]:
    """The parts of an experiment config (an ``ExperimentConfig``) an artifact depends on,
    recorded in its meta for up-to-date checks."""
    full = exp.to_dict()
    out = {"name": exp.name, "seed": exp.seed}
    for s in sections:
        out[s] = full[s]
    if "blend" in out:  # an agent depends on its own seed (train_seed), not on the list
        out["blend"] = {k: v for k, v in out["blend"].items() if k != "seeds"}
        if not out["blend"].get("batched", False):  # its default: records made before it match
            out["blend"].pop("batched", None)
    return out


def up_to_date(meta_path: Path, config: dict[str, Any], force: bool, fix: str) -> bool:
    """True when an artifact exists with the same config (skip the work).

    Raises ArtifactError when it exists with a different config and ``force`` is False.
    """
    if force or not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False  # corrupt: redo
    if normalize(meta.get("config")) == normalize(config):
        return True
    raise ArtifactError(
        f"{meta_path.parent} was made with a different config; re-run with `{fix} --force` "
        "to replace it"
    )


def normalize(x: Any) -> Any:
    """``x`` as JSON would give it back (sorted keys, tuples as lists): comparable to a meta."""
    return json.loads(json.dumps(x, sort_keys=True, default=str))
