"""service/tensors.py makes the TensorProtos TensorFlow makes and reads them back as TensorFlow does."""

from __future__ import annotations

import numpy as np
import pytest

from service import tensors
from service.grpc._generated.tensorflow.core.framework import tensor_pb2, types_pb2

tf = pytest.importorskip("tensorflow")

SHAPES = [(), (1,), (3,), (2, 3), (0,), (0, 4), (2, 1, 3), (1, 21, 3), (4, 2, 2, 1)]
DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
          np.uint32, np.uint64, np.bool_]


def sample(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    rng = np.random.default_rng(len(shape) * 31 + np.dtype(dtype).num)
    values = np.asarray(rng.normal(0, 50, size=shape))
    if np.dtype(dtype).kind == "b":
        return np.asarray(values > 0)
    if np.dtype(dtype).kind == "u":
        values = np.abs(values)
    return np.asarray(values.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_numeric_tensors_are_tensorflows(shape: tuple[int, ...], dtype: type) -> None:
    array = sample(shape, dtype)
    ours, theirs = tensors.make_tensor_proto(array), tf.make_tensor_proto(array)
    assert ours.SerializeToString() == theirs.SerializeToString()
    back = tensors.make_ndarray(tensor_pb2.TensorProto.FromString(theirs.SerializeToString()))
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, tf.make_ndarray(theirs))


@pytest.mark.parametrize("values", [[b"a"], [b"x", b"", b"\xff\x00"], [], ["text", "\u00e9"]])
def test_string_tensors_are_tensorflows(values: list) -> None:
    ours = tensors.make_tensor_proto(values)
    theirs = tf.make_tensor_proto(values, dtype=tf.string, shape=[len(values)])
    assert ours.SerializeToString() == theirs.SerializeToString()
    assert tensors.make_ndarray(ours).tolist() == tf.make_ndarray(theirs).tolist()


def test_string_shape_given() -> None:
    ours = tensors.make_tensor_proto([b"a", b"b", b"c", b"d"], shape=[2, 2])
    theirs = tf.make_tensor_proto([b"a", b"b", b"c", b"d"], dtype=tf.string, shape=[2, 2])
    assert ours.SerializeToString() == theirs.SerializeToString()
    assert tensors.make_ndarray(ours).tolist() == [[b"a", b"b"], [b"c", b"d"]]


def proto(dtype: int, shape: list[int], **fields: object) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape={"dim": [{"size": d} for d in shape]}, **fields)


@pytest.mark.parametrize("tensor", [
    proto(types_pb2.DT_FLOAT, [2, 3], float_val=[1.5]),  # one value fills the shape
    proto(types_pb2.DT_FLOAT, [2, 3], float_val=[1, 2, 3]),  # padded with the last value
    proto(types_pb2.DT_INT64, [3], int64_val=[7, 8]),
    proto(types_pb2.DT_INT32, [2, 2]),  # no values: zeros
    proto(types_pb2.DT_BOOL, [3], bool_val=[True, False, True]),
    proto(types_pb2.DT_HALF, [2], half_val=[15360, 16384]),  # 1.0, 2.0
    proto(types_pb2.DT_STRING, [3], string_val=[b"a", b"b"]),
    proto(types_pb2.DT_DOUBLE, [2], tensor_content=np.array([1.0, -2.0]).tobytes()),
])
def test_read_as_tensorflow_reads(tensor: tensor_pb2.TensorProto) -> None:
    ours = tensors.make_ndarray(tensor)
    theirs = tf.make_ndarray(tf.make_tensor_proto(0).__class__.FromString(tensor.SerializeToString()))
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert ours.tolist() == theirs.tolist()


@pytest.mark.parametrize("tensor, message", [
    (proto(types_pb2.DT_FLOAT, [2], float_val=[1, 2, 3]), "do not fit"),
    (proto(types_pb2.DT_FLOAT, [2, 2], tensor_content=b"\0" * 12), "tensor_content holds 12 bytes"),
    (proto(types_pb2.DT_FLOAT, [-1, 3], float_val=[1]), "not fully defined"),
    (proto(types_pb2.DT_FLOAT, [1 << 40, 1 << 40], float_val=[1]), "at most 1000"),
])
def test_tensors_that_cannot_be_read(tensor: tensor_pb2.TensorProto, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tensors.make_ndarray(tensor, max_elements=1000)


def test_unsupported_dtypes() -> None:
    with pytest.raises(TypeError, match="DT_COMPLEX64"):
        tensors.make_ndarray(proto(types_pb2.DT_COMPLEX64, [1], scomplex_val=[1, 2]))
    with pytest.raises(TypeError, match="unknown tensor dtype 999"):
        tensors.make_ndarray(proto(999, [1]))
    with pytest.raises(TypeError, match="complex64"):
        tensors.make_tensor_proto(np.zeros(2, np.complex64))


def test_big_endian_arrays_are_sent_little_endian() -> None:
    array = np.arange(6, dtype=">f4").reshape(2, 3)
    back = tensors.make_ndarray(tensors.make_tensor_proto(array))
    np.testing.assert_array_equal(back, array)
    assert tensors.make_tensor_proto(array).tensor_content == array.astype("<f4").tobytes()
