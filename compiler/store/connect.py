"""Opening a store URL: bounded network settings, and one look at the bucket before anything is written.

Why a probe: a typo in a bucket name, missing credentials or an unreachable
endpoint must be one line of bad input (exit 2) before a launch registers a
single derivation, not a traceback from deep inside a build. The probe lists
the bucket once; the client settings below bound how long that can take.

Endpoints and credentials come from where each client reads them (for S3:
AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID…, through botocore; for GCS: application
default credentials), never from runix flags, so a store URL means the same
thing to runix, gsutil and the AWS CLI.
"""

from __future__ import annotations

import os
from typing import Any

from compiler.store.errors import StoreError

CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 60
ATTEMPTS = 3
"""botocore tries each request this many times: an unreachable endpoint fails in about 3 × 10 s."""


def storage_options(url: str) -> dict[str, Any]:
    """fsspec options bounding every request of an object-store filesystem (none for other protocols)."""
    protocol = protocol_of(url)
    if protocol in ("s3", "s3a"):
        return {"config_kwargs": {"connect_timeout": CONNECT_TIMEOUT_S, "read_timeout": READ_TIMEOUT_S,
                                  "retries": {"max_attempts": ATTEMPTS, "mode": "standard"}}}
    if protocol in ("gs", "gcs"):
        return {"timeout": READ_TIMEOUT_S, "retries": ATTEMPTS}
    return {}


def protocol_of(url: str | os.PathLike[str]) -> str:
    text = str(url)
    return text.split("://", 1)[0] if "://" in text else "file"


def probe(store) -> None:
    """Check the store's bucket can be listed; StoreError naming why not (missing, refused, unreachable)."""
    protocol = protocol_of(store.url)
    if protocol not in ("s3", "s3a", "gs", "gcs"):
        return
    bucket = store.root.split("/", 1)[0]
    try:
        store.fs.ls(bucket, detail=False, refresh=True)
    except FileNotFoundError:
        raise StoreError(store.url, f"bucket {bucket!r} does not exist (or this account cannot see it)") from None
    except PermissionError as err:
        raise StoreError(store.url, f"access to bucket {bucket!r} was refused (credentials?): {_first_line(err)}") from None
    except Exception as err:  # noqa: BLE001 - any other failure of the one listing means the store is not usable
        raise StoreError(store.url, f"cannot reach the store: {type(err).__name__}: {_first_line(err)}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
