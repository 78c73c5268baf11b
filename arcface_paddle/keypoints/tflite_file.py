"""Read the constant tensors and the operators of a `.tflite` flatbuffer (the `tflite` package
holds the generated schema classes); no TensorFlow or interpreter is needed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ArcFaceError

_NUMPY_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64, 9: np.int8}


@dataclass(frozen=True)
class TfliteOp:
    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    #: stride of convolutions and pools (1 for other operators)
    stride: int = 1
    #: "SAME" or "VALID" for convolutions and pools
    padding: str = ""


@dataclass(frozen=True)
class TfliteGraph:
    ops: list[TfliteOp]
    #: tensor name -> its constant data, float16 weights widened to float32
    constants: dict[str, np.ndarray]


def _op_names() -> dict[int, str]:
    from tflite.BuiltinOperator import BuiltinOperator

    return {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}


def _geometry(op, kind: str) -> tuple[int, str]:
    import tflite

    option_class = {"CONV_2D": tflite.Conv2DOptions,
                    "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
                    "MAX_POOL_2D": tflite.Pool2DOptions}.get(kind)
    table = op.BuiltinOptions()
    if option_class is None or table is None:
        return 1, ""
    options = option_class()
    options.Init(table.Bytes, table.Pos)
    if options.StrideW() != options.StrideH():
        raise ArcFaceError(f"{kind}: unequal strides are not supported")
    return int(options.StrideW()), ("SAME" if options.Padding() == 0 else "VALID")


def read_tflite(path: Path) -> TfliteGraph:
    """The first subgraph of a `.tflite` file: its operators in order and its constants."""
    try:
        import tflite
    except ImportError:
        raise ArcFaceError("reading .tflite files needs the `tflite` package "
                           "(pip install -r requirements.txt)") from None
    data = path.read_bytes()
    if data[4:8] != b"TFL3":
        raise ArcFaceError(f"{path}: not a TensorFlow Lite flatbuffer")
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        graph = model.Subgraphs(0)
        names = _op_names()
        tensors = [graph.Tensors(i) for i in range(graph.TensorsLength())]

        def tensor_name(index: int) -> str:
            return tensors[index].Name().decode("utf-8")

        constants = {}
        for tensor in tensors:
            buffer = model.Buffers(tensor.Buffer())
            if buffer is None or buffer.DataLength() == 0:
                continue
            dtype = _NUMPY_TYPES.get(tensor.Type())
            if dtype is None:
                continue
            shape = tuple(int(v) for v in tensor.ShapeAsNumpy())
            array = buffer.DataAsNumpy().view(dtype).reshape(shape)
            constants[tensor.Name().decode("utf-8")] = (
                array.astype(np.float32) if dtype == np.float16 else array.copy())
        ops = []
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
            stride, padding = _geometry(op, kind)
            ops.append(TfliteOp(kind, tuple(tensor_name(j) for j in op.InputsAsNumpy() if j >= 0),
                                tuple(tensor_name(j) for j in op.OutputsAsNumpy()),
                                stride, padding))
    except (IndexError, ValueError, AttributeError, UnicodeDecodeError) as exc:
        raise ArcFaceError(f"{path}: damaged TensorFlow Lite file ({exc})") from None
    return TfliteGraph(ops, constants)
