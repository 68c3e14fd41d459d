"""Dynamic batching with the real model, observed through /metrics."""

from __future__ import annotations

import asyncio

import httpx

from tests.service.conftest import metric_value


def test_32_concurrent_requests_use_far_fewer_model_calls(tmp_path, trained_model_root, sample_jpeg,
                                                          start_server):
    server = start_server(trained_model_root, max_batch_delay_ms=20, max_batch_size=32)
    before = httpx.get(f"{server.rest_url}/metrics").text

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.rest_url, timeout=60) as client:
            return await asyncio.gather(*(
                client.post("/predict", content=sample_jpeg, headers={"content-type": "image/jpeg"})
                for _ in range(32)))

    replies = asyncio.run(burst())
    assert [r.status_code for r in replies] == [200] * 32
    after = httpx.get(f"{server.rest_url}/metrics").text
    def delta(name: str) -> float:
        return (metric_value(after, name, model="rps", version="1")
                - metric_value(before, name, model="rps", version="1"))

    calls, images = delta("imgclf_model_calls_total"), delta("imgclf_images_total")
    assert images == 32
    assert calls <= 8, f"32 requests took {calls} model calls"
    assert 'imgclf_batch_size_bucket{le="32.0",model="rps",version="1"}' in after
