"""A minimal HTTPS client for the API server, used while starting it up.

Startup polls /readyz and registers Nodes many times; spawning kubectl for
each would cost seconds, so these few calls go straight over HTTP with the
admin client certificate.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from .pki import CertPair


class ApiClient:
    def __init__(self, server: str, ca_cert: str, client: CertPair, timeout: float = 10.0) -> None:
        self.server = server.rstrip("/")
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=ca_cert)
        self._ssl.load_cert_chain(str(client.cert), str(client.key))

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        """Return (HTTP status, decoded JSON body or text). Never raises on HTTP errors."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=self.timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        text = raw.decode(errors="replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def ok(self, path: str) -> bool:
        """True when GET ``path`` answers 200; connection errors count as not ok."""
        try:
            return self.get(path)[0] == 200
        except (OSError, ssl.SSLError):
            return False


def probe_insecure(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` answers 200, without verifying the server certificate.

    Only for the controller-manager's and scheduler's health ports on
    loopback, which serve a self-signed certificate they make at startup.
    """
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
            return resp.status == 200
    except (OSError, ssl.SSLError):
        return False
