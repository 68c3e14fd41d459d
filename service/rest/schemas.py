"""Pydantic models of the native REST replies (they drive the OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class HandOutSchema(BaseModel):
    box: list[float] = Field(min_length=4, max_length=4, description="x_min, y_min, x_max, y_max around the "
                             "landmarks, in pixels of the picture as sent, turned upright by its EXIF orientation")
    landmarks: list[list[float]] = Field(min_length=21, max_length=21, description="21 points (x, y, z) in "
                                         "MediaPipe's order (0 wrist, 1-4 thumb, 5-8 index, 9-12 middle, 13-16 "
                                         "ring, 17-20 little); z on x's scale, negative towards the camera")
    handedness: Literal["Left", "Right"] = Field(description="As for a mirrored (selfie) picture")
    score: float = Field(description="The landmark model's hand presence, 0 to 1")


class PredictionOut(BaseModel):
    label: str = Field(description="The most likely class")
    confidence: float = Field(description="Probability of that class")
    scores: dict[str, float] = Field(description="Probability of every class, in label order")
    path: Literal["pose", "cnn"] = Field(description="What answered: pose (the version's pose classifier on "
                                         "the hand found) or cnn (the image classifier: no hand found, or the "
                                         "version has no pose classifier)")
    hand: HandOutSchema | None = Field(description="The hand found, when the hand stage ran and found one")


class PredictResponse(BaseModel):
    model_name: str
    model_version: int
    predictions: list[PredictionOut] = Field(description="One per image, in request order")


class ErrorResponse(BaseModel):
    error: str


class VersionOut(BaseModel):
    version: int
    state: str
    error: str | None = None
    labels: list[str] = Field(default_factory=list, description="Class names, in score order")
    val_accuracy: float | None = None
    created: str | None = None
    recipe: str | None = Field(None, description="Training recipe (model card)")
    arch: str | None = Field(None, description="Network (model card)")
    trained_on: str | None = Field(None, description="What the version learned from (model card)")
    validation: str | None = Field(None, description="What val_accuracy was measured on")
    reallike_accuracy: float | None = Field(
        None, description="The real-like check: unseen hands in unseen scenes at webcam sizes")
    reallike_seen_hands_accuracy: float | None = Field(
        None, description="The real-like check of a version trained on every hand (nothing held out): "
                          "hands it trained on, in unseen scenes")
    provenance: str | None = Field(None, description="Where the version comes from and how to rebuild it")
    runtime: str | None = Field(None, description="What answers this version: tensorflow, litert (int8), "
                                "litert-float or tfserving")
    runtime_note: str | None = Field(None, description="Why that runtime (IMGCLF_RUNTIME and the int8 gate)")
    int8: dict[str, Any] | None = Field(
        None, description="The int8 model's measured top-1 beside fp32's, per set (model card)")
    pose: dict[str, Any] | None = Field(
        None, description="The pose classifier's figures, when the version has one (model card): "
                          "held_out_by_hand_accuracy, hand_found_rate, pictures, hands, ...")
    hand_stage: bool = Field(False, description="The hand stage reads this version's pictures (IMGCLF_HANDS): "
                             "its answers' `hand` is then null only when no hand was found")


class ModelsResponse(BaseModel):
    name: str
    ready: bool
    default_version: int | None
    version_labels: dict[str, int]
    versions: list[VersionOut]
    models: list[str] = Field(description="Every model this server serves (pick one with ?model=)")
    teach: bool = Field(False, description="The teach endpoints are on (IMGCLF_TEACH): examples, fine-tunes, "
                                           "rollback")


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in [(400, "Bad input"), (404, "Unknown model, version or label"),
                       (413, "Body or image count over the limit"),
                       (429, "Queue full; see Retry-After"), (503, "No version loaded"),
                       (504, "Deadline exceeded")]
}
