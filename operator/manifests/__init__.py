"""PURE builders of the Kubernetes objects a ServeCluster owns, as plain dicts."""
