"""A run: training a config into a run folder, and using what was trained.

    model.py     Model: the trained networks of one config, saved as one .npz; build_network
    trainer.py   Trainer: epochs of shuffled batches through the network's step; fit (best epoch)
    train.py     train_run: data, run folder, ensemble members, refit, the finished run
    resume.py    what a stopped run needs to continue exactly (resume.npz)
    folders.py   run folders: naming, checkpoints, saving, the latest run, finding a model
    predict.py   `make submit` and `make validate`
    parallel.py  several runs at once in processes (joblib), and the one worker function

May import: core, nn, data, config
"""
