"""Checking the competition's archive and installing its three CSVs into data/ (no network).

Used by `make data ZIP=`, by the download (kit/kaggle/download.py) and by `make demo`. The install is
atomic: the archive is unpacked into a temporary folder beside data/, every file is checked,
and only then are the three CSVs renamed into data/ (the old ones are put back if a rename
fails). A failed or interrupted install leaves data/ as it was.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from kit.core.console import one_line
from kit.core.errors import KitError
from kit.data.load import is_cached, parse_csv
from kit.data.submission import SUBMISSION_HEADER, read_submission

COMPETITION_FILES = ("train.csv", "test.csv", "sample_submission.csv")
SAMPLE_HEADER = ",".join(SUBMISSION_HEADER)
MAX_UNPACKED_BYTES = 2 * 1024**3  # the real three CSVs are about 130 MB
STALE_STAGING_SECONDS = 24 * 3600

# A check of the three unpacked CSVs: (folder, label for messages) -> (train rows, test rows).
Check = Callable[[Path, str], tuple[int, int]]


def _unsafe_entry(name: str) -> bool:
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return True
    return ".." in re.split(r"[/\\]", name)


def unpack(archive: Path, dest: Path, label: str) -> None:
    """Unpack the three CSVs of `archive` into `dest`, refusing anything suspicious."""
    corrupt = (
        f"{label}: the archive is truncated or corrupt ({{}}); download it again "
        "(make data FORCE=1, or a fresh copy for ZIP=)"
    )
    try:
        handle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, EOFError, ValueError) as error:
        raise KitError(corrupt.format(one_line(error, 80))) from None
    except OSError as error:
        raise KitError(f"{label}: cannot be read ({error.strerror or error})") from None
    with handle:
        infos = handle.infolist()
        for info in infos:
            if _unsafe_entry(info.filename):
                raise KitError(
                    f"{label}: entry {info.filename!r} has an absolute path or '..'; refusing to unpack "
                    "this archive"
                )
        found: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename[2:] if info.filename.startswith("./") else info.filename
            if name in COMPETITION_FILES and not info.is_dir():
                if name in found:
                    raise KitError(f"{label}: holds {name} twice; refusing an ambiguous archive")
                found[name] = info
        missing = [name for name in COMPETITION_FILES if name not in found]
        if missing:
            held = ", ".join(info.filename for info in infos[:6]) or "nothing"
            raise KitError(
                f"{label}: {', '.join(missing)} missing from the archive (it holds {held}); "
                "is this the competition's archive?"
            )
        if sum(info.file_size for info in found.values()) > MAX_UNPACKED_BYTES:
            raise KitError(
                f"{label}: the CSVs would unpack to more than {MAX_UNPACKED_BYTES >> 30} GB; not the "
                "competition's files"
            )
        dest.mkdir(parents=True, exist_ok=True)
        for name, info in found.items():
            try:
                with handle.open(info) as source, open(dest / name, "wb") as target:
                    shutil.copyfileobj(source, target, 1 << 20)
            except (
                zipfile.BadZipFile,
                EOFError,
                zlib.error,
                NotImplementedError,
                RuntimeError,
                ValueError,
            ) as error:
                raise KitError(corrupt.format(f"{name}: {one_line(error, 80)}")) from None
            except OSError as error:
                raise KitError(
                    f"{label}: cannot unpack {name} into {dest} ({error.strerror or error})"
                ) from None


def check_files(folder: Path, label: str) -> tuple[int, int]:
    """Strict checks of the three CSVs in `folder`; messages name `label` instead of the temporary path.

    Returns (train rows, test rows).
    """

    def relabel(error: KitError, name: str) -> KitError:
        text = str(error).replace(str(folder / name), f"{label}: {name}")
        return KitError(f"{text} (data/ was left unchanged)")

    counts = []
    for name, has_label in (("train.csv", True), ("test.csv", False)):
        try:
            x, _ = parse_csv(folder / name, has_label)
        except KitError as error:
            raise relabel(error, name) from None
        counts.append(len(x))
    sample = folder / "sample_submission.csv"
    with open(sample, encoding="utf-8-sig", errors="replace") as handle:
        header = handle.readline().strip()
    if header.replace(" ", "") != SAMPLE_HEADER:
        raise KitError(
            f"{label}: sample_submission.csv, line 1: header is {header[:60]!r}; it must be {SAMPLE_HEADER}"
        )
    try:
        ids, _ = read_submission(sample)
    except KitError as error:
        raise relabel(error, "sample_submission.csv") from None
    n_test = counts[1]
    if len(ids) != n_test or list(ids) != list(range(1, n_test + 1)):
        raise KitError(
            f"{label}: sample_submission.csv has {len(ids)} rows (ImageId 1..N expected) but test.csv "
            f"has {n_test}; "
            "the archive's files do not belong together"
        )
    return counts[0], counts[1]


def installed_problem(data_dir: Path) -> str | None:
    """None when data_dir holds the three valid files, else what is missing or wrong (one line)."""
    data_dir = Path(data_dir)
    missing = [name for name in COMPETITION_FILES if not (data_dir / name).is_file()]
    if missing:
        return f"{data_dir}/ lacks {', '.join(missing)}"
    try:
        for name, has_label in (("train.csv", True), ("test.csv", False)):
            path = data_dir / name
            if not is_cached(path, has_label):  # a valid cache means the CSV was checked
                parse_csv(path, has_label)  # no cache written: data/ stays exactly as it is
        with open(data_dir / "sample_submission.csv", encoding="utf-8-sig", errors="replace") as handle:
            if handle.readline().strip().replace(" ", "") != SAMPLE_HEADER:
                return f"{data_dir}/sample_submission.csv does not start with {SAMPLE_HEADER}"
    except KitError as error:
        return str(error)
    except OSError as error:
        return f"{data_dir}: {error.strerror or error}"
    return None


def _remove_stale_staging(parent: Path, prefix: str) -> None:
    """Temporary folders left by a run that was killed outright (kill -9, power cut), a day old or more."""
    with contextlib.suppress(OSError):
        for path in parent.glob(f"{prefix}*"):
            if path.is_dir() and time.time() - path.stat().st_mtime > STALE_STAGING_SECONDS:
                shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def staging(data_dir: Path):
    """A temporary folder beside data_dir (same file system, so the final renames are atomic)."""
    parent = data_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(parent, f".{data_dir.name}.download-")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.download-", dir=parent))
    except OSError as error:
        raise KitError(
            f"{parent}: cannot create a temporary folder there ({error.strerror or error})"
        ) from None
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def move_into_place(unpacked: Path, data_dir: Path, backup: Path) -> None:
    """Rename the three files into data_dir; if any rename fails, put the old files back."""
    created = not data_dir.exists()
    backup.mkdir()
    done: list[str] = []
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        for name in COMPETITION_FILES:
            target = data_dir / name
            if target.is_file():
                try:
                    os.link(target, backup / name)
                except OSError:
                    shutil.copy2(target, backup / name)
            os.replace(unpacked / name, target)
            done.append(name)
    except BaseException as error:
        for name in reversed(done):
            with contextlib.suppress(OSError):
                if (backup / name).exists():
                    os.replace(backup / name, data_dir / name)
                else:
                    (data_dir / name).unlink()
        if created:
            with contextlib.suppress(OSError):
                data_dir.rmdir()
        if isinstance(error, OSError):
            raise KitError(
                f"{data_dir}: cannot move the files into place ({error.strerror or error}); "
                "data/ was left unchanged"
            ) from None
        raise


def install_from(
    source: Path, data_dir: Path, staging_dir: Path, label: str, check: Check = check_files
) -> tuple[int, int]:
    """Install from a .zip archive, or from a folder that already holds the three CSVs, using staging_dir."""
    if source.is_dir():
        unpacked = source
    else:
        unpacked = staging_dir / "unpacked"
        unpack(source, unpacked, label)
    counts = check(unpacked, label)
    move_into_place(unpacked, data_dir, staging_dir / "previous")
    return counts


def install_archive(
    archive: str | os.PathLike,
    data_dir: str | os.PathLike,
    label: str | None = None,
    check: Check = check_files,
) -> tuple[int, int]:
    """Check a competition archive and install its three CSVs into data_dir atomically (no network).

    Returns (train rows, test rows). Raises KitError, leaving data_dir untouched, when the archive is
    not a zip, is truncated, has an entry with an absolute path or '..', lacks a CSV, or a CSV fails
    the checks. `check` is the check of the unpacked CSVs (replaceable so that an interruption
    in the middle of an install can be tested).
    """
    archive, data_dir = Path(archive), Path(data_dir)
    label = label or str(archive)
    if not archive.exists():
        raise KitError(f"{archive}: no such file; give the path of the competition's .zip archive")
    if archive.is_dir():
        raise KitError(f"{archive}: is a folder; give the path of the competition's .zip archive")
    if data_dir.exists() and not data_dir.is_dir():
        raise KitError(f"{data_dir}: is a file, not a folder; give another data folder")
    with staging(data_dir) as staging_dir:
        return install_from(archive, data_dir, staging_dir, label, check)
