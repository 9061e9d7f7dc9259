package io.sparkmds.format

/**
 * Error raised by the MDS format code and the Spark source for bad data, bad options or
 * unreadable datasets. Messages name the column, file, value or option involved and say what to do.
 */
class MdsException(message: String, cause: Throwable = null) extends RuntimeException(message, cause)
