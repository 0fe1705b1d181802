"""The Grafana dashboard queries only metrics the services really export."""

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from microshop.common.settings import Settings
from microshop.services.db.app import create as create_db
from microshop.services.gateway.app import create as create_gateway
from microshop.services.orders.app import create as create_orders
from microshop.services.payments.app import create as create_payments

DASHBOARD = (
    Path(__file__).parents[2] / "deploy/k8s/components/prometheus-operator/microshop-dashboard.json"
)
PROMQL_FUNCTIONS = {"sum", "rate", "max", "by", "histogram_quantile", "le"}


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


def test_every_dashboard_query_names_an_exported_metric(tmp_path: Path) -> None:
    exported = exported_sample_names(tmp_path)
    dashboard = json.loads(DASHBOARD.read_text())
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            queried.update(re.findall(r"\b([a-z_]+)\{", target["expr"]))
    assert queried - PROMQL_FUNCTIONS
    assert queried - PROMQL_FUNCTIONS <= exported, queried - PROMQL_FUNCTIONS - exported
