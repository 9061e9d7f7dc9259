"""spark-mds: the Spark data source for the Mosaic Data Shard (MDS) format."""

from __future__ import annotations

import os

__version__ = "0.1.0"


def jar_path() -> str:
    """Absolute path of the bundled plugin jar (built by `make setup` / Gradle)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jars", "spark-mds.jar")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"the spark-mds jar is missing at {path}; build it with `make jar` "
            "(or use the Python fallback: spark_mds.register(spark))"
        )
    return path
