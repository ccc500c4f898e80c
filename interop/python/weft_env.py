"""Where the weft under test listens, handed over by run.sh through the environment.

The Python twin of test/lib/env.js. Missing variables fail loudly: run these tests through
interop/run.sh, which starts weft and exports them.
"""
import os


def _need(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run the suite with interop/run.sh")
    return value


DOMAIN = _need("WEFT_DOMAIN")
PASSWORD = _need("WEFT_PASSWORD")
C2S_PORT = int(_need("WEFT_C2S_PORT"))
# weft's generated self-signed certificate, valid for the DNS name `localhost` (= DOMAIN).
CA_FILE = _need("WEFT_CA_FILE")
# The XEP-0114 component run.sh configures: its listener, domain and shared secret.
COMPONENT_PORT = int(_need("WEFT_COMPONENT_PORT"))
COMPONENT_DOMAIN = _need("WEFT_COMPONENT_DOMAIN")
COMPONENT_SECRET = _need("WEFT_COMPONENT_SECRET")


def jid_of(user: str) -> str:
    return f"{user}@{DOMAIN}"
