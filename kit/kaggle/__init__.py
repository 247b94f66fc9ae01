"""The competition on Kaggle: the official client, and the archive it downloads.

    download.py  `make data`: the archive downloaded, checked and installed (or ZIP= offline)
    upload.py    `make upload`: a submission checked, sent, its score read back and recorded
    client.py    the client with timeouts, retries and one-line errors
    auth.py      which credentials the client will use, found before it is loaded
    archive.py   the competition archive checked and installed into data/ atomically

May import: core, data
"""
