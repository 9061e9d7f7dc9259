"""Fixtures of the remote tests."""

from __future__ import annotations

import pytest
from s3server import S3Server, get_server


@pytest.fixture(scope="module")
def s3() -> S3Server:
    """The S3-compatible server on 127.0.0.1 (moto), started once for the whole session."""
    return get_server()
