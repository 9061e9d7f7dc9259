package io.sparkmds

/** Version of the spark-mds plugin jar. */
object BuildInfo {
  val version: String = "0.1.0"
}
