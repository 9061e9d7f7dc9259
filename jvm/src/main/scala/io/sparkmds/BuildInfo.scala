package io.sparkmds

import io.sparkmds.format.MdsIndex
import io.sparkmds.spark.{MdsOptions, SchemaConverter}
import io.sparkmds.spark.compat.SparkLine
import org.apache.spark.sql.types._

/** Version of the spark-mds plugin jar, and the Spark line and Scala version it is built for. */
object BuildInfo {
  val version: String = "0.1.0"
  def sparkLine: String = SparkLine.name
  def scalaBinaryVersion: String = SparkLine.scalaBinaryVersion

  /**
   * Loads the data source and runs some of its Scala code (options, type mapping, index JSON), so
   * that a jar that does not fit the running Spark or Scala fails here (`NoClassDefFoundError`,
   * `NoSuchMethodError`, ...) rather than on the first read or write. `spark_mds.register` calls it.
   *
   * @return a description of the jar: version, Spark line, Scala version
   */
  def check(): String = {
    val source = new io.sparkmds.spark.v2.MdsDataSource()
    val schema = StructType(Seq(StructField("id", LongType, nullable = false), StructField("text", StringType),
      StructField("tokens", ArrayType(IntegerType, containsNull = false))))
    val layout = SchemaConverter.writeLayout(schema, new MdsOptions(Map("compression" -> "zstd")))
    MdsIndex.toBytes(MdsIndex(Nil, layout.sparkMeta))
    s"spark-mds $version (${source.shortName()}) for Spark $sparkLine, Scala $scalaBinaryVersion"
  }
}
