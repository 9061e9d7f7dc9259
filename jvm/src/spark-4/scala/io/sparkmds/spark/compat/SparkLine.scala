package io.sparkmds.spark.compat

import org.apache.spark.sql.sources.CreatableRelationProvider
import org.apache.spark.sql.types.DataType

/** The Spark line this jar is built for: Spark 4.x, Scala 2.13 (jvm/src/spark-4). */
object SparkLine {
  val name: String = "4"
  val scalaBinaryVersion: String = "2.13"
}

/** What `MdsDataSource` adds on Spark 4.x: its V1 write path checks the data types first. */
trait MdsSourceCompat extends CreatableRelationProvider {
  // Storability is checked by our own layout code, whose errors name the column and what to do
  // (without this, interval and VARIANT columns fail with Spark's generic error).
  override def supportsDataType(dt: DataType): Boolean = true
}
