"""Which pods the rendered NetworkPolicies let talk to which, worked out offline.

Follows the NetworkPolicy semantics: a connection needs the sender's egress and the receiver's
ingress to allow it; a pod that no policy of a direction selects is open in that direction; rules of
all policies selecting a pod add up. Peers are the rendered workloads (in the namespace they are
rendered into), a client outside the cluster, the cluster's DNS (CoreDNS, labelled
k8s-app=kube-dns in kube-system) and a Prometheus of another namespace (labelled
app.kubernetes.io/name=prometheus in namespace monitoring, as kube-prometheus runs it).
"""

from dataclasses import dataclass

from tests.deploy.manifests import (
    WORKLOAD_KINDS,
    Doc,
    container_ports,
    namespace_of,
    of_kind,
    pod_labels,
    selects,
)

Port = tuple[str | None, int, str]  # name, number, protocol

MICROSHOP_SERVICES = frozenset({"api-gateway", "order-service", "payment-service", "db"})
EXPECTED_CONNECTIONS = frozenset(
    {
        ("outside", "api-gateway"),
        ("api-gateway", "order-service"),
        ("api-gateway", "payment-service"),
        ("api-gateway", "db"),  # GET /status asks db's /readyz
        ("order-service", "payment-service"),
        ("order-service", "db"),
        ("payment-service", "db"),
        ("db", "postgresql"),
        ("load-generator", "api-gateway"),
        # components/observability: Prometheus scrapes, the services send spans, Grafana asks both.
        *(("prometheus", service) for service in MICROSHOP_SERVICES),
        *((service, "jaeger") for service in MICROSHOP_SERVICES),
        ("grafana", "prometheus"),
        ("grafana", "jaeger"),
    }
)
"""Who may call whom in the shop's namespace; besides these, every pod may ask the cluster's DNS."""
SCRAPED = MICROSHOP_SERVICES
"""What a Prometheus in namespace monitoring may reach when the prometheus-operator component's
ServiceMonitors are there."""


@dataclass(frozen=True)
class Peer:
    """A pod, or (namespace None) a client outside the cluster."""

    name: str
    namespace: str | None
    labels: tuple[tuple[str, str], ...]
    ports: tuple[Port, ...]

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


OUTSIDE = Peer("outside", None, (), ())
CLUSTER_DNS = Peer(
    "cluster-dns", "kube-system", (("k8s-app", "kube-dns"),), ((None, 53, "UDP"), (None, 53, "TCP"))
)
PROMETHEUS = Peer(
    "monitoring/prometheus", "monitoring", (("app.kubernetes.io/name", "prometheus"),), ()
)


def shop_namespace(docs: list[Doc]) -> str:
    """Where the rendered pods run: their namespace, or `default` when they name none."""
    return namespace_of(docs) or "default"


def peers(docs: list[Doc]) -> list[Peer]:
    namespace = shop_namespace(docs)
    found = []
    for workload in of_kind(docs, *WORKLOAD_KINDS):
        ports = tuple(
            (port.get("name"), port["containerPort"], port.get("protocol", "TCP"))
            for port in container_ports(workload)
        )
        labels = tuple(sorted(pod_labels(workload).items()))
        found.append(Peer(workload["metadata"]["name"], namespace, labels, ports))
    return found


def peer_matches(rule_peer: Doc, policy_namespace: str, peer: Peer) -> bool:
    """One entry of a rule's `from` or `to` against a peer."""
    if "ipBlock" in rule_peer:
        return peer.namespace is None or rule_peer["ipBlock"]["cidr"] in ("0.0.0.0/0", "::/0")
    if peer.namespace is None:
        return False
    if "namespaceSelector" in rule_peer:
        namespace_labels = {"kubernetes.io/metadata.name": peer.namespace}
        if not selects(rule_peer["namespaceSelector"], namespace_labels):
            return False
    elif peer.namespace != policy_namespace:
        return False
    return "podSelector" not in rule_peer or selects(rule_peer["podSelector"], peer.label_map)


def port_matches(rule: Doc, port: Port) -> bool:
    if not rule.get("ports"):
        return True
    name, number, protocol = port
    for allowed in rule["ports"]:
        if allowed.get("protocol", "TCP") != protocol:
            continue
        if "port" not in allowed or allowed["port"] in (number, name):
            return True
    return False


def side_allows(
    policies: list[Doc], namespace: str, pod: Peer, other: Peer, direction: str, port: Port
) -> bool:
    """Whether the policies (of the shop's `namespace`) selecting `pod` let it send to (Egress) or
    receive from (Ingress) `other` on the receiver's `port`."""
    if pod.namespace != namespace:
        return True  # the shop's policies do not govern pods elsewhere
    rules_field, peers_field = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    selecting = [
        policy
        for policy in policies
        if direction in policy["spec"].get("policyTypes", ["Ingress"])
        and selects(policy["spec"].get("podSelector") or {}, pod.label_map)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(rules_field) or []:
            rule_peers = rule.get(peers_field)
            if port_matches(rule, port) and (
                not rule_peers or any(peer_matches(p, namespace, other) for p in rule_peers)
            ):
                return True
    return False


def allowed_connections(docs: list[Doc]) -> set[tuple[str, str]]:
    """(sender, receiver) pairs the NetworkPolicies let through on some port of the receiver."""
    policies = of_kind(docs, "NetworkPolicy")
    namespace = shop_namespace(docs)
    pods = peers(docs)
    allowed = set()
    for sender in [OUTSIDE, PROMETHEUS, *pods]:
        for receiver in [*pods, CLUSTER_DNS]:
            involves_the_shop = namespace in (sender.namespace, receiver.namespace)
            if sender == receiver or not involves_the_shop:
                continue
            if any(
                side_allows(policies, namespace, sender, receiver, "Egress", port)
                and side_allows(policies, namespace, receiver, sender, "Ingress", port)
                for port in receiver.ports
            ):
                allowed.add((sender.name, receiver.name))
    return allowed


def expected_connections(docs: list[Doc]) -> set[tuple[str, str]]:
    """EXPECTED_CONNECTIONS among the workloads present, DNS for each of them, and Prometheus to
    what it scrapes (with ServiceMonitors), or else only to the gateway, which anyone may call."""
    pods = {workload["metadata"]["name"] for workload in of_kind(docs, *WORKLOAD_KINDS)}
    scraped = SCRAPED if of_kind(docs, "ServiceMonitor") else {"api-gateway"}
    return (
        {
            (sender, receiver)
            for sender, receiver in EXPECTED_CONNECTIONS
            if receiver in pods and sender in pods | {"outside"}
        }
        | {(pod, CLUSTER_DNS.name) for pod in pods}
        | {(PROMETHEUS.name, pod) for pod in scraped & pods}
    )


def network_problems(docs: list[Doc]) -> list[str]:
    allowed, expected = allowed_connections(docs), expected_connections(docs)
    return [f"missing {pair}" for pair in sorted(expected - allowed)] + [
        f"unexpected {pair}" for pair in sorted(allowed - expected)
    ]
