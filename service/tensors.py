"""TensorProto <-> numpy without TensorFlow, as `tf.make_tensor_proto` and `tf.make_ndarray` do it for the
dtypes TF Serving's Predict carries here (strings, floats, ints, bools): the same fields, so a tensor made
here is byte for byte the one TensorFlow makes (tests/service/test_tensors.py compares them)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.grpc._generated.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

TensorProto = tensor_pb2.TensorProto

# DataType -> (numpy dtype, the repeated field that holds it when tensor_content does not)
_NUMERIC: dict[types_pb2.DataType, tuple[np.dtype, str]] = {
    types_pb2.DT_HALF: (np.dtype(np.float16), "half_val"),
    types_pb2.DT_FLOAT: (np.dtype(np.float32), "float_val"),
    types_pb2.DT_DOUBLE: (np.dtype(np.float64), "double_val"),
    types_pb2.DT_INT8: (np.dtype(np.int8), "int_val"),
    types_pb2.DT_INT16: (np.dtype(np.int16), "int_val"),
    types_pb2.DT_INT32: (np.dtype(np.int32), "int_val"),
    types_pb2.DT_INT64: (np.dtype(np.int64), "int64_val"),
    types_pb2.DT_UINT8: (np.dtype(np.uint8), "int_val"),
    types_pb2.DT_UINT16: (np.dtype(np.uint16), "int_val"),
    types_pb2.DT_UINT32: (np.dtype(np.uint32), "uint32_val"),
    types_pb2.DT_UINT64: (np.dtype(np.uint64), "uint64_val"),
    types_pb2.DT_BOOL: (np.dtype(np.bool_), "bool_val"),
}
_BY_NUMPY = {dtype: enum for enum, (dtype, _) in _NUMERIC.items()}
# TensorFlow packs these into tensor_content when a tensor has more than one element (bool, uint16 never)
_PACKED = frozenset(_NUMERIC) - {types_pb2.DT_BOOL, types_pb2.DT_UINT16}


def _shape_proto(shape: Sequence[int]) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d))
                                                  for d in shape])


def make_tensor_proto(values: np.ndarray | Sequence[bytes] | Sequence[str],
                      shape: Sequence[int] | None = None) -> TensorProto:
    """A numpy array (of a dtype above) or a sequence of byte/text strings (DT_STRING, shape [n] unless
    given) as a TensorProto."""
    if isinstance(values, np.generic):
        values = np.asarray(values)
    if not isinstance(values, np.ndarray):
        strings = [v.encode() if isinstance(v, str) else bytes(v) for v in values]
        return TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=_shape_proto(shape or [len(strings)]),
                           string_val=strings)
    array = values if shape is None else values.reshape(shape)
    enum = _BY_NUMPY.get(array.dtype.newbyteorder("="))
    if enum is None:
        raise TypeError(f"no TensorProto dtype for numpy {array.dtype}")
    proto = TensorProto(dtype=enum, tensor_shape=_shape_proto(array.shape))
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    if enum in _PACKED and array.size > 1:
        proto.tensor_content = little.tobytes()
    elif enum == types_pb2.DT_HALF:
        proto.half_val.extend(little.ravel().view(np.uint16).tolist())
    else:
        getattr(proto, _NUMERIC[enum][1]).extend(little.ravel().tolist())
    return proto


def make_ndarray(tensor: TensorProto, max_elements: int | None = None) -> np.ndarray:
    """The numpy array a TensorProto holds (DT_STRING: an object array of bytes). As TensorFlow, a value
    list shorter than the shape is padded with its last value; ValueError when the values cannot fill the
    shape (too many, a tensor_content of the wrong size) or the shape holds more than `max_elements` (a few
    bytes must not make the server allocate gigabytes), TypeError for a dtype not above."""
    shape = [d.size for d in tensor.tensor_shape.dim]
    if any(d < 0 for d in shape):
        raise ValueError(f"tensor_shape {shape} is not fully defined")
    count = 1
    for d in shape:  # in Python integers: a product of int64 dims must not wrap around
        count *= d
    if max_elements is not None and count > max_elements:
        raise ValueError(f"tensor_shape {shape} holds {count} elements; at most {max_elements} are taken")
    if tensor.dtype == types_pb2.DT_STRING:
        strings = list(tensor.string_val)
        if 0 < len(strings) < count:
            strings += [strings[-1]] * (count - len(strings))
        out = np.empty(len(strings), dtype=object)
        out[:] = strings
        return out.reshape(shape) if strings or count == 0 else np.full(shape, b"", dtype=object)
    if tensor.dtype not in _NUMERIC:
        raise TypeError(f"unsupported tensor dtype {types_pb2.DataType.Name(tensor.dtype)}"
                        if tensor.dtype in types_pb2.DataType.values() else f"unknown tensor dtype {tensor.dtype}")
    dtype, field = _NUMERIC[tensor.dtype]
    little = dtype.newbyteorder("<")
    if tensor.tensor_content:
        if len(tensor.tensor_content) != count * dtype.itemsize:
            raise ValueError(f"tensor_content holds {len(tensor.tensor_content)} bytes, not the "
                             f"{count * dtype.itemsize} of shape {shape}")
        return np.frombuffer(tensor.tensor_content, dtype=little).astype(dtype).reshape(shape)
    if tensor.dtype == types_pb2.DT_HALF:
        values = np.array(tensor.half_val, dtype=np.uint16).view(np.float16)
    else:
        values = np.array(getattr(tensor, field), dtype=dtype)
    if values.size == 0:
        return np.zeros(shape, dtype)
    if values.size > count:
        raise ValueError(f"{values.size} values do not fit shape {shape}")
    if values.size < count:
        values = np.pad(values, (0, count - values.size), "edge")
    return values.reshape(shape)
