"""The model outside the kit: one ONNX graph, an int8 copy, and onnxruntime.

    export.py   `make export`: the run's networks as ONNX (opset 17), QUANTIZE=1 for int8
    predict.py  an exported model in onnxruntime; `make submit ONNX=`

May import: core, nn, data, config, run
"""
