"""Helpers of bench/vs_kuberay.py: KubeRay's ray-operator built from its Go module, run as a host process against
the local control plane, and its RayService for the same workload serveplane runs."""
