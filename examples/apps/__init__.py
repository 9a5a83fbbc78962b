"""Example Ray Serve applications, importable as serveplane.examples.<module>:app."""
