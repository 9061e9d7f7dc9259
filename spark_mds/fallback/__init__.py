"""Internals of the Python fallback of ``format("mds")`` (see :mod:`spark_mds.python_source`):

* :mod:`.options`: option parsing and validation, as the JVM source's ``MdsOptions``;
* :mod:`.layout`: Spark schema <-> MDS columns and encodings, append rules;
* :mod:`.storage`: the dataset directory: local, or remote through fsspec (``s3://``, ...);
* :mod:`.dataset`: reading ``index.json`` and shard files;
* :mod:`.writer`: the Arrow writer, its commit messages and the driver-side commit protocol;
* :mod:`.reader`: schema inference and the Arrow reader;
* :mod:`.compat`: the one PySpark-version-dependent part (the Python Data Source API's base classes,
  stand-ins on PySpark 3.5), and error conditions.
"""
