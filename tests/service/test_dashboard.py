"""The Grafana dashboard (deploy/grafana) asks only for metrics this server really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}


def exported_names(text: str) -> set[str]:
    """Every series name the exposition can hold, including families with no sample yet."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, [""]))
    return names


def test_dashboard_queries_use_exported_metrics(serving, sample_jpeg):
    assert httpx.post(f"{serving.rest_url}/predict", content=sample_jpeg,
                      headers={"content-type": "image/jpeg"}).status_code == 200
    exported = exported_names(httpx.get(f"{serving.rest_url}/metrics").text)
    dashboard = json.loads((GRAFANA / "dashboards" / "imgclf.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"\bimgclf_[a-z_]+\b", e)}
    assert used and used <= exported, f"not exported: {sorted(used - exported)}"
    # the operator's questions each have a panel
    for metric in ("imgclf_requests_total", "imgclf_request_latency_seconds_bucket", "imgclf_batch_size_bucket",
                   "imgclf_queue_depth", "imgclf_images_total"):
        assert metric in used, metric
    assert any('status=~"429' in e for e in exprs)
    # every label a query groups or filters by exists on the metric it reads
    text = httpx.get(f"{serving.rest_url}/metrics").text
    labels = {s.name: set(s.labels) for f in text_string_to_metric_families(text) for s in f.samples}
    for e in exprs:
        for metric, selector in re.findall(r"(imgclf_[a-z_]+)\{([^}]*)\}", e):
            if metric in labels:
                for label in re.findall(r"(\w+)=~?\"", selector):
                    assert label in labels[metric], f"{metric} has no label {label!r}: {e}"


def test_dashboard_is_provisioned_with_the_compose_prometheus():
    dashboard = json.loads((GRAFANA / "dashboards" / "imgclf.json").read_text())
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasource["datasources"]
    assert source["url"] == "http://prometheus:9090" and source["type"] == "prometheus"
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {source["uid"]}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    assert grafana["profiles"] == ["monitoring"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "imgclf.yml").read_text())
    assert mounts["./deploy/grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
