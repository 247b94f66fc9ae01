"""`make data`: the competition's files downloaded with the official Kaggle client, checked and
installed into data/ (kit.kaggle.archive), atomically: a failed or interrupted download leaves
data/ as it was. `make data ZIP=` installs an archive you already have, with no network.

The client is loaded only here and in kit.kaggle.upload, lazily, after kit.kaggle.auth has found
credentials; `import kit`, training, `make submit` and the tests need neither credentials nor
network. From the client (kaggle 2.2.4 and 2.2.5): `competition_download_files(competition,
path, force, quiet)` writes `<path>/<competition>.zip`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from kit.core.console import log, note
from kit.core.errors import KitError
from kit.kaggle import archive
from kit.kaggle.archive import COMPETITION_FILES, install_archive, installed_problem
from kit.kaggle.auth import find_credentials
from kit.kaggle.client import call, check_competition, client_version, kaggle_session


def _find_download(folder: Path, competition: str) -> Path:
    expected = folder / f"{competition}.zip"
    if expected.is_file():
        return expected
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.endswith(".kaggle-partial"))
    if len(files) == 1:
        return files[0]
    if all((folder / name).is_file() for name in COMPETITION_FILES):
        return folder  # a client that unpacks by itself
    raise KitError(
        f"the Kaggle client reported success but left {', '.join(p.name for p in files) or 'nothing'} "
        f"in {folder}; "
        "run `make data` again"
    )


def run_data(competition: str, data_dir: Path, force: bool = False, zip_path: Path | None = None) -> None:
    """`kit data`: download the competition's archive with the client (or take ZIP=), check it, install it."""
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise KitError(f"{data_dir}: is a file, not a folder; give another data folder")
    if zip_path is None:
        check_competition(competition)
    if not force:
        problem = installed_problem(data_dir)
        if problem is None:
            log(
                f"{data_dir}/ already holds valid {', '.join(COMPETITION_FILES)}; nothing to do "
                "(FORCE=1 installs them again)"
            )
            return
        if any((data_dir / name).exists() for name in COMPETITION_FILES):
            log(f"{problem}; installing them again")
    if zip_path is not None:
        zip_path = Path(zip_path)
        log(f"checking {zip_path} ...")
        n_train, n_test = install_archive(zip_path, data_dir)
        log(
            f"installed {data_dir}/train.csv ({n_train} rows), test.csv ({n_test} rows), "
            f"sample_submission.csv from {zip_path}"
        )
        return

    creds = find_credentials()
    for line in creds.notes:
        note(line)
    with archive.staging(data_dir) as staging:
        download = staging / "download"
        download.mkdir()
        with kaggle_session(creds, competition, "data") as session:
            log(
                f"downloading {competition} with the Kaggle client {client_version()} using "
                f"{session.creds.describe()} ..."
            )

            def fetch():
                for leftover in download.iterdir():  # a fresh start after a 429
                    if leftover.is_dir():
                        shutil.rmtree(leftover, ignore_errors=True)
                    else:
                        leftover.unlink()
                session.api.competition_download_files(
                    competition, path=str(download), force=True, quiet=False
                )

            call(session, f"downloading {competition}", fetch)
        source = _find_download(download, competition)
        if source.is_file():
            log(f"checking {source.name} ({source.stat().st_size / 1e6:.1f} MB) ...")
        n_train, n_test = archive.install_from(
            source, data_dir, staging, f"the archive downloaded for {competition}"
        )
    log(f"installed {data_dir}/train.csv ({n_train} rows), test.csv ({n_test} rows), sample_submission.csv")
