"""The model outside the kit: one ONNX graph, an int8 copy, and onnxruntime.

    graph.py    the model's networks as one ONNX graph (opset 17), each layer mapped
    export.py   `make export`: model.onnx and, with QUANTIZE=1, model.int8.onnx
    predict.py  an exported model in onnxruntime; `make submit ONNX=`

May import: core, nn, data, config, run
"""
