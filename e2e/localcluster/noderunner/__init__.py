"""The node runner: plays the kubelet for Nodes of the local control plane.

Pods bound to our Nodes run as real local processes (images ignored, the
runner's Python environment first on PATH), each pod in its own network
namespace with its own IP on a bridge, with probes, hooks, restarts, status
reporting and DNS for headless Services emulated through per-pod /etc/hosts.

Modules, one job each: instance (names and the instance lock), network
(bridge, netns, veth, IPs), procs (container processes), envvars (env and
argv), probes (probe and hook actions), container (one container's life),
status (pod status), dns (hosts files), kube (API access and informers),
node (heartbeats), pod (one pod's life), runner (NodeRunner), cleanup
(leftovers), launcher (NodeRunnerProcess: the runner as a subprocess).
"""

from .cleanup import cleanup
from .launcher import NodeRunnerProcess
from .runner import NodeRunner

__all__ = ["NodeRunner", "NodeRunnerProcess", "cleanup"]
