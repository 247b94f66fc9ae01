"""`make bench`: how fast and how accurate the kit is on this machine, written to bench/.

    speed.py     epochs against the FLOP floor, loading, prediction, memory, start-up
    accuracy.py  each preset trained as `make train` does, over seeds
    onnx.py      NumPy against onnxruntime float and int8
    serve.py     `make serve`: one prediction, and load on loopback
    sweep.py     the sweep backends side by side

May import: core, nn, data, config, run, onnx, serve, sweep
"""
