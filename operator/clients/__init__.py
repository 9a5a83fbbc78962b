"""Clients of the outside world: the Kubernetes API and the Ray dashboard's Serve REST API."""
