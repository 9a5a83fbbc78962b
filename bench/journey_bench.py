"""The figures the README quotes, measured on the local trial stack (run by hand, as root; takes minutes): the
control plane, the real node, and the operator installed by its chart, as `make up` runs them.

apply -> Ready of the examples, the latency of an in-place args update (median of 5), and the resident memory
of the operator and of the node agents (the `python -m serveplane.runtime` process of each Ray pod).
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from serveplane.localcluster.incluster import ChartOperator
from serveplane.localcluster.stack import Stack
from serveplane.localcluster.testkit import head_pod

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def agent_pids() -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serveplane.runtime" in argv and b"-m" in argv:
            pids.append(int(cmdline.parent.name))
    return pids


def greeting(ip: str) -> str:
    with urllib.request.urlopen(f"http://{ip}:8000/hello/", timeout=5) as answer:
        return json.loads(answer.read())["greeting"]


def main() -> None:
    with Stack(Path(tempfile.mkdtemp(prefix="serveplane-bench-"))) as stack:
        cp = stack.cp
        assert stack.node is not None
        operator = ChartOperator(cp, stack.node)
        start = time.monotonic()
        for name in ("cluster.yaml", "hello.yaml", "composed.yaml"):
            cp.kubectl("apply", "-n", "default", "-f", str(EXAMPLES / name))
        cp.kubectl(
            "wait", "-n", "default", "--for=condition=Ready", "--timeout=600s",
            "scl/demo", "sapp/hello", "sapp/composed",
        )
        print(f"apply -> Ready: {time.monotonic() - start:.1f} s")
        head = head_pod(cp, "demo", "default")
        assert head is not None, "the demo cluster is Ready: it has a head"
        ip = head["status"]["podIP"]
        doc = yaml.safe_load((EXAMPLES / "hello.yaml").read_text())
        samples = []
        for round_ in range(5):
            doc["spec"]["args"]["greeting"] = f"round {round_}"
            start = time.monotonic()
            cp.kubectl("apply", "-n", "default", "-f", "-", input=yaml.safe_dump(doc))
            while True:
                try:
                    if greeting(ip) == f"round {round_}":
                        break
                except OSError:
                    pass
                time.sleep(0.1)
            samples.append(time.monotonic() - start)
        print(f"args update -> answering: median {statistics.median(samples):.1f} s over {len(samples)}")
        leader = operator.leader_name()
        assert leader is not None
        print(f"operator (leader) RSS: {rss_mib(operator.host_pid(leader)):.0f} MiB")
        agents = [rss_mib(pid) for pid in agent_pids()]
        print(f"node agent RSS: median {statistics.median(agents):.0f} MiB over {len(agents)} pods")


if __name__ == "__main__":
    main()
