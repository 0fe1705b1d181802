"""The Grafana dashboard queries only metrics the services really export, and shows throughput,
errors, latency and active faults per service."""

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from microshop.common.settings import Settings
from microshop.services.db.app import create as create_db
from microshop.services.gateway.app import create as create_gateway
from microshop.services.orders.app import create as create_orders
from microshop.services.payments.app import create as create_payments

DASHBOARD = Path(__file__).parents[2] / "deploy/observability/dashboard/microshop-dashboard.json"
PROMQL_FUNCTIONS = {"sum", "rate", "max", "by", "histogram_quantile", "le"}
FAULT_GAUGES = {"fault_latency_seconds", "fault_error_rate", "fault_storage_latency_seconds"}
"""The gauges of the faults injected into a service; the "Active faults" panel shows them."""


def exported_sample_names(tmp_path: Path) -> set[str]:
    names: set[str] = set()
    for create in (create_db, create_gateway, create_orders, create_payments):
        client = TestClient(create(Settings(data_dir=tmp_path)))
        for family in text_string_to_metric_families(client.get("/metrics").text):
            names.update(sample.name for sample in family.samples)
            if family.type == "histogram":
                names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "count", "sum"))
            elif family.type == "counter":  # declared, even before its first increment
                names.add(f"{family.name}_total")
            else:
                names.add(family.name)
    return names


def queried_metrics(panel: dict[str, Any]) -> set[str]:
    names = set()
    for target in panel["targets"]:
        names.update(re.findall(r"\b([a-z_]+)\{", target["expr"]))
    return names - PROMQL_FUNCTIONS


def panels() -> list[dict[str, Any]]:
    dashboard: dict[str, list[dict[str, Any]]] = json.loads(DASHBOARD.read_text())
    return dashboard["panels"]


def test_every_dashboard_query_names_an_exported_metric(tmp_path: Path) -> None:
    exported = exported_sample_names(tmp_path)
    queried = set().union(*(queried_metrics(panel) for panel in panels()))
    assert queried >= FAULT_GAUGES
    assert queried <= exported, queried - exported


def test_the_dashboard_shows_throughput_errors_latency_and_faults_per_service() -> None:
    by_title = {panel["title"].split(":")[0]: panel for panel in panels()}
    assert {"Throughput", "Errors", "Latency", "Active faults"} <= by_title.keys()
    assert queried_metrics(by_title["Active faults"]) == FAULT_GAUGES
    for name in ("Throughput", "Errors", "Latency", "Active faults"):
        for target in by_title[name]["targets"]:
            assert "by (app_kubernetes_io_name" in target["expr"], target["expr"]
