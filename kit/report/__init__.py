"""Looking at what was trained: a run's report page and the table of all runs.

    page.py        `make report`: report.html with curves, confusion matrix, mistakes, test rows
    gather.py      what the report shows, read from the run folder and predicted again
    plots.py       the report's pictures (matplotlib, Agg)
    runs_table.py  `make runs`: every run with its validation and public leaderboard scores

May import: core, nn, data, config, run
"""
