"""The ground floor: what every other part uses and nothing of the kit's own.

    errors.py    KitError: a problem the user can fix, printed as one line (exit 2)
    atomic.py    writes to a temporary file, then a rename: nothing half-written survives
    console.py   log lines that spare the progress bars, and one-line messages
    blas.py      how many BLAS threads a process uses (one fixed rule)
    machine.py   what the machine is: CPU, cores, Python, NumPy, BLAS; recorded with every run
    mnist.py     the data's shape: 28x28 images as rows of 784 pixels, 10 classes
    version.py   the kit's version

May import: nothing of the kit
"""
