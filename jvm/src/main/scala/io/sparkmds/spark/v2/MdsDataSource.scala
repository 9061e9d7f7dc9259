package io.sparkmds.spark.v2

import java.util

import scala.jdk.CollectionConverters._

import io.sparkmds.format.MdsException
import io.sparkmds.spark.{MdsOptions, MdsReadSupport, MdsWriteJob}
import io.sparkmds.spark.compat.MdsSourceCompat
import org.apache.hadoop.fs.Path
import org.apache.spark.sql.{DataFrame, SaveMode, SQLContext}
import org.apache.spark.sql.connector.catalog.{Table, TableProvider}
import org.apache.spark.sql.connector.expressions.Transform
import org.apache.spark.sql.sources.{BaseRelation, CreatableRelationProvider, DataSourceRegister}
import org.apache.spark.sql.types.StructType
import org.apache.spark.sql.util.CaseInsensitiveStringMap

/**
 * The `mds` data source: reads through DataSource V2 and writes through the V1 fallback
 * (`V1_BATCH_WRITE` + [[CreatableRelationProvider]]) so that every SaveMode works on
 * `df.write.format("mds").save(path)` as well as SQL INSERT / INSERT OVERWRITE / CTAS.
 * [[MdsSourceCompat]] holds what differs between Spark lines (jvm/src/spark-<line>).
 */
class MdsDataSource extends TableProvider with DataSourceRegister with MdsSourceCompat {
  override def shortName(): String = "mds"

  override def supportsExternalMetadata(): Boolean = true

  override def inferSchema(options: CaseInsensitiveStringMap): StructType = {
    val session = org.apache.spark.sql.SparkSession.active
    val opts = options.asCaseSensitiveMap().asScala.toMap
    val path = MdsDataSource.pathOf(opts)
    val (_, layout) = MdsReadSupport.load(new Path(path), MdsWriteJob.hadoopConf(session, opts))
    layout.schema
  }

  override def getTable(schema: StructType, partitioning: Array[Transform], properties: util.Map[String, String]): Table = {
    if (partitioning.nonEmpty) {
      throw new MdsException(s"the mds source does not support partitionBy / PARTITIONED BY (got " +
        s"${partitioning.mkString(", ")}): MDS has no partition directories; write without it")
    }
    new MdsTable(schema, properties.asScala.toMap)
  }

  override def createRelation(sqlContext: SQLContext, mode: SaveMode, parameters: Map[String, String],
      data: DataFrame): BaseRelation = {
    val path = MdsDataSource.pathOf(parameters)
    if (parameters.keySet.exists(_.equalsIgnoreCase("__partition_columns"))) {
      throw new MdsException("the mds source does not support partitionBy: MDS has no partition directories; " +
        "write without partitionBy (or write one dataset per partition value)")
    }
    new MdsOptions(parameters) // validate options before touching anything
    val session = data.sparkSession
    val exists = MdsWriteJob.exists(session, path, parameters)
    mode match {
      case SaveMode.ErrorIfExists if exists =>
        throw new MdsException(s"an MDS dataset already exists at $path (it has an index.json); use " +
          "mode('append') to add to it, mode('overwrite') to replace it, or mode('ignore') to skip the write")
      case SaveMode.Ignore if exists => ()
      case SaveMode.Overwrite => MdsWriteJob.write(data, path, parameters, overwrite = true)
      case _ => MdsWriteJob.write(data, path, parameters, overwrite = false)
    }
    new MdsRelation(sqlContext, data.schema)
  }
}

object MdsDataSource {
  def pathOf(options: Map[String, String]): String = new MdsOptions(options).path.getOrElse(
    throw new MdsException("the mds source needs a path: .save(path) / .load(path), OPTIONS (path '...') or LOCATION '...'"))
}

/** The relation returned after a V1 write (Spark only reads its schema). */
class MdsRelation(val sqlContext: SQLContext, val schema: StructType) extends BaseRelation
