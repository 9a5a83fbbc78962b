"""The agent's Prometheus metrics: probe outcomes and this node's health, under `serveplane_agent_`.

Called by the agent. Each agent has its own registry (no global state, so tests can build several); the process
collector adds the agent's own CPU, memory and file descriptors as serveplane_agent_process_*.
Ray's own metrics are not here: Ray serves them on --metrics-port.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

from .probes import Decision, ProxyStatus, ReadinessView

NAMESPACE = "serveplane_agent"


class AgentMetrics:
    def __init__(self, *, role: str, node_ip: str, cluster: str = "") -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(namespace=NAMESPACE, registry=self.registry)
        reg = self.registry
        Gauge(f"{NAMESPACE}_info", "Constant 1, labelled with what this node is.", ["cluster", "role", "node_ip"],
              registry=reg).labels(cluster=cluster, role=role, node_ip=node_ip).set(1)
        self.probes = Counter(f"{NAMESPACE}_probe", "Probe answers by probe and result (ok|fail).",
                              ["probe", "result"], registry=reg)
        self.raylet_up = Gauge(f"{NAMESPACE}_raylet_up", "1 while this node's raylet runs.", registry=reg)
        self.gcs_up = Gauge(f"{NAMESPACE}_gcs_up", "1 while the GCS runs (head only; 0 on workers).", registry=reg)
        self.dashboard_up = Gauge(f"{NAMESPACE}_dashboard_up", "1 while the dashboard answers (head only).",
                                  registry=reg)
        self.proxy_healthy = Gauge(f"{NAMESPACE}_proxy_healthy", "1 while this node's Serve proxy answers 200.",
                                   registry=reg)
        self.proxy_status = Gauge(f"{NAMESPACE}_proxy_status", "1 for the Serve proxy's current status.",
                                  ["status"], registry=reg)
        self.ready = Gauge(f"{NAMESPACE}_ready", "1 while /readyz answers 200.", registry=reg)
        self.draining = Gauge(f"{NAMESPACE}_draining", "1 once /drain was called.", registry=reg)
        self.proxy_connections = Gauge(f"{NAMESPACE}_proxy_connections",
                                       "Established client connections to the Serve proxy's HTTP port.",
                                       registry=reg)
        self.drain_seconds = Histogram(f"{NAMESPACE}_drain_duration_seconds", "How long /drain waited.",
                                       buckets=(1, 2, 5, 10, 20, 30, 60, 120), registry=reg)

    def count_probe(self, probe: str, decision: Decision) -> None:
        self.probes.labels(probe=probe, result="ok" if decision.ok else "fail").inc()

    def observe(self, view: ReadinessView, decision: Decision, connections: int | None) -> None:
        procs = view.processes
        self.raylet_up.set(int(procs.raylet_alive))
        self.gcs_up.set(int(procs.gcs_alive))
        if view.dashboard_up is not None:
            self.dashboard_up.set(int(view.dashboard_up))
        if view.proxy is not None:
            self.proxy_healthy.set(int(view.proxy is ProxyStatus.HEALTHY))
            for status in ProxyStatus:
                self.proxy_status.labels(status=status.value).set(int(status is view.proxy))
        self.ready.set(int(decision.ok))
        self.draining.set(int(view.draining))
        if connections is not None:
            self.proxy_connections.set(connections)

    def render(self) -> bytes:
        return generate_latest(self.registry)
