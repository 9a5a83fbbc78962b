"""The serveplane.dev/v1alpha1 API as pydantic models: the single source of truth for the CRDs."""
