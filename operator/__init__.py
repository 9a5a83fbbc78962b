"""serveplane's Kubernetes operator: API models, pure builders, clients and kopf handlers."""
