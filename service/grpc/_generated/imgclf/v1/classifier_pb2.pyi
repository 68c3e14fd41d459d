from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClassifyRequest(_message.Message):
    __slots__ = ("images", "model_name", "version", "version_label", "request_id")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSION_LABEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedScalarFieldContainer[bytes]
    model_name: str
    version: int
    version_label: str
    request_id: str
    def __init__(self, images: _Optional[_Iterable[bytes]] = ..., model_name: _Optional[str] = ..., version: _Optional[int] = ..., version_label: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("label", "confidence", "scores", "path", "hand")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    HAND_FIELD_NUMBER: _ClassVar[int]
    label: str
    confidence: float
    scores: _containers.RepeatedScalarFieldContainer[float]
    path: str
    hand: Hand
    def __init__(self, label: _Optional[str] = ..., confidence: _Optional[float] = ..., scores: _Optional[_Iterable[float]] = ..., path: _Optional[str] = ..., hand: _Optional[_Union[Hand, _Mapping]] = ...) -> None: ...

class Hand(_message.Message):
    __slots__ = ("box", "landmarks", "handedness", "score")
    BOX_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    HANDEDNESS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    box: _containers.RepeatedScalarFieldContainer[float]
    landmarks: _containers.RepeatedCompositeFieldContainer[Landmark]
    handedness: str
    score: float
    def __init__(self, box: _Optional[_Iterable[float]] = ..., landmarks: _Optional[_Iterable[_Union[Landmark, _Mapping]]] = ..., handedness: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class Landmark(_message.Message):
    __slots__ = ("x", "y", "z")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    Z_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    z: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., z: _Optional[float] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("model_name", "model_version", "labels", "predictions", "request_id")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    request_id: str
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ..., predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ModelStatusRequest(_message.Message):
    __slots__ = ("model_name",)
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    def __init__(self, model_name: _Optional[str] = ...) -> None: ...

class VersionStatus(_message.Message):
    __slots__ = ("version", "state", "error", "labels")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    version: int
    state: str
    error: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[int] = ..., state: _Optional[str] = ..., error: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class ModelStatusResponse(_message.Message):
    __slots__ = ("model_name", "ready", "versions")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    ready: bool
    versions: _containers.RepeatedCompositeFieldContainer[VersionStatus]
    def __init__(self, model_name: _Optional[str] = ..., ready: _Optional[bool] = ..., versions: _Optional[_Iterable[_Union[VersionStatus, _Mapping]]] = ...) -> None: ...
