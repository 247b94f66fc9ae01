"""The competition on Kaggle: the official client, and the archive it downloads.

    auth.py      which credentials the client will use, found before it is loaded
    client.py    the client with timeouts, retries and one-line errors
    commands.py  `make data` (download, check, install) and `make upload` (score read back)
    archive.py   the competition archive checked and installed into data/ atomically

May import: core, data
"""
