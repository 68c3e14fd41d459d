"""The shared server answers on both transports."""

import httpx


def test_rest_predict_answers(serving, sample_jpeg):
    r = httpx.post(f"{serving.rest_url}/predict", files={"file": ("hand.jpg", sample_jpeg)})
    assert r.status_code == 200
    body = r.json()
    assert body["model_version"] == 1
    assert abs(sum(body["predictions"][0]["scores"].values()) - 1) < 1e-4
