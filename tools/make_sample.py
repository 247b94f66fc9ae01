"""Rebuild data/sample/digit-recognizer-sample.zip from a full competition archive.

    python tools/make_sample.py path/to/digit-recognizer.zip

A stratified 5,000-row subset of train.csv, the first 1,000 rows of test.csv and a matching
sample_submission.csv, in Kaggle's exact layout, deflate-compressed. Seeded: the same archive
gives the same sample.
"""

import sys
import zipfile

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

N_TRAIN, N_TEST, SEED = 5000, 1000, 20121


def main(source: str, target: str = "data/sample/digit-recognizer-sample.zip") -> None:
    with zipfile.ZipFile(source) as archive:
        train = pd.read_csv(archive.open("train.csv"))
        test = pd.read_csv(archive.open("test.csv"), nrows=N_TEST)
    subset, _ = train_test_split(train, train_size=N_TRAIN, stratify=train["label"], random_state=SEED)
    subset = subset.sort_index()
    sample = pd.DataFrame({"ImageId": np.arange(1, N_TEST + 1), "Label": 0})
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, frame in (("train.csv", subset), ("test.csv", test), ("sample_submission.csv", sample)):
            archive.writestr(name, frame.to_csv(index=False, lineterminator="\n"))
    print(
        f"wrote {target}: train {len(subset)} rows {np.bincount(subset['label']).tolist()}, test "
        f"{len(test)} rows"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
