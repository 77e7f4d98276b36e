"""The versioned model bundle on disk: ``models/<version>/{model.joblib,bundle.json}`` and
``models/CURRENT``. Written atomically (temporary folder renamed into place), read and verified
by the API and read for its reference profile by the drift worker."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import joblib

ARTIFACT_FILE = "model.joblib"
BUNDLE_FILE = "bundle.json"
CURRENT_FILE = "CURRENT"
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class BundleError(Exception):
    """A bundle that is missing, unreadable or fails verification."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def publish(model_dir: Path, version: str, model: Any, metadata: dict[str, Any]) -> Path:
    """Write ``model`` and ``metadata`` as bundle ``version`` and make it CURRENT.

    ``metadata`` gets the artifact's sha256 added. Readers never see a half-written bundle:
    both files go to a temporary folder that is renamed into place, then CURRENT is replaced.
    """
    if not VERSION_PATTERN.match(version):
        raise BundleError(f"invalid version name {version!r}")
    model_dir.mkdir(parents=True, exist_ok=True)
    target = model_dir / version
    if target.exists():
        raise BundleError(f"bundle {version} already exists in {model_dir}")
    staging = Path(tempfile.mkdtemp(dir=model_dir, prefix=f".{version}."))
    try:
        staging.chmod(0o755)
        joblib.dump(model, staging / ARTIFACT_FILE)
        bundle = {**metadata, "version": version, "artifact": {
            "file": ARTIFACT_FILE, "sha256": sha256_file(staging / ARTIFACT_FILE)}}
        (staging / BUNDLE_FILE).write_text(json.dumps(bundle, indent=2) + "\n")
        for name in (ARTIFACT_FILE, BUNDLE_FILE):
            with open(staging / name, "rb") as handle:
                os.fsync(handle.fileno())
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(model_dir)
    _write_file_atomically(model_dir / CURRENT_FILE, version + "\n")
    return target


def current_version(model_dir: Path) -> str:
    try:
        version = (model_dir / CURRENT_FILE).read_text().strip()
    except OSError as exc:
        raise BundleError(f"no published model: cannot read {model_dir / CURRENT_FILE} ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise BundleError(f"{model_dir / CURRENT_FILE} is not text") from exc
    if not VERSION_PATTERN.match(version):
        raise BundleError(f"{model_dir / CURRENT_FILE} names an invalid version {version!r}")
    return version


def read_metadata(model_dir: Path, version: str) -> dict[str, Any]:
    if not VERSION_PATTERN.match(version):
        raise BundleError(f"invalid version name {version!r}")
    path = model_dir / version / BUNDLE_FILE
    try:
        metadata = json.loads(path.read_text())
    except UnicodeDecodeError as exc:
        raise BundleError(f"{path} is not UTF-8 text") from exc
    except OSError as exc:
        raise BundleError(f"cannot read {path} ({exc.strerror})") from exc
    except ValueError as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(metadata, dict) or metadata.get("version") != version:
        raise BundleError(f"{path} does not describe version {version}")
    return metadata


def load_model(model_dir: Path, version: str, *, allow_sklearn_mismatch: bool = False) -> tuple[Any, dict[str, Any]]:
    """Load a bundle's model after checking its sha256 and the scikit-learn version it was trained with."""
    import sklearn

    metadata = read_metadata(model_dir, version)
    artifact = model_dir / version / ARTIFACT_FILE
    try:
        expected = metadata["artifact"]["sha256"]
        trained_with = metadata["versions"]["sklearn"]
    except (KeyError, TypeError) as exc:
        raise BundleError(f"bundle {version} lacks field {exc}") from exc
    try:
        actual = sha256_file(artifact)
    except OSError as exc:
        raise BundleError(f"cannot read {artifact} ({exc.strerror})") from exc
    if actual != expected:
        raise BundleError(f"{artifact} sha256 {actual} does not match bundle.json ({expected}): refusing to load")
    if trained_with != sklearn.__version__ and not allow_sklearn_mismatch:
        raise BundleError(
            f"bundle {version} was trained with scikit-learn {trained_with} but {sklearn.__version__} is "
            "installed: refusing to load (set API_ALLOW_SKLEARN_MISMATCH=true to override)"
        )
    try:
        model = joblib.load(artifact)
    except Exception as exc:  # a corrupt pickle can raise nearly anything
        raise BundleError(f"cannot unpickle {artifact}: {type(exc).__name__}: {exc}") from exc
    return model, metadata
