package io.sparkmds.spark.v2

import java.util

import scala.jdk.CollectionConverters._

import io.sparkmds.format.MdsException
import io.sparkmds.spark.{MdsFiles, MdsOptions, MdsPartitioning, MdsReadSupport, MdsWriteJob}
import io.sparkmds.spark.compat.MdsSourceCompat
import org.apache.hadoop.fs.Path
import org.apache.spark.sql.{DataFrame, SaveMode, SQLContext}
import org.apache.spark.sql.connector.catalog.{Table, TableProvider}
import org.apache.spark.sql.connector.expressions.{Expressions, Transform}
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

  /** The data columns, then the partition columns of a partitioned dataset (as Spark's file sources order them). */
  override def inferSchema(options: CaseInsensitiveStringMap): StructType = {
    val session = org.apache.spark.sql.SparkSession.active
    val opts = options.asCaseSensitiveMap().asScala.toMap
    val path = MdsDataSource.pathOf(opts)
    val (index, layout) = MdsReadSupport.load(new Path(path), MdsWriteJob.hadoopConf(session, opts))
    StructType(layout.schema ++ MdsPartitioning.of(index, path).schema)
  }

  /** A table without a location yet, or over an empty one, is unpartitioned until written. */
  override def inferPartitioning(options: CaseInsensitiveStringMap): Array[Transform] = {
    val session = org.apache.spark.sql.SparkSession.active
    val opts = options.asCaseSensitiveMap().asScala.toMap
    new MdsOptions(opts).path.flatMap(p => MdsFiles.readIndex(new Path(p), MdsWriteJob.hadoopConf(session, opts)).map(_._1 -> p)) match {
      case Some((index, p)) => MdsPartitioning.of(index, p).names.map(n => Expressions.identity(n): Transform).toArray
      case None => Array.empty
    }
  }

  /** `partitionBy` / `PARTITIONED BY`: identity transforms of top-level columns only. */
  override def getTable(schema: StructType, partitioning: Array[Transform], properties: util.Map[String, String]): Table = {
    val columns = partitioning.toSeq.map {
      case t if t.name() == "identity" && t.references().length == 1 && t.references()(0).fieldNames().length == 1 =>
        t.references()(0).fieldNames()(0)
      case t => throw new MdsException(s"the mds source partitions by columns only (partitionBy('col') / PARTITIONED BY " +
        s"(col)); got $t. Derive a column holding the partition value instead")
    }
    new MdsTable(schema, columns, properties.asScala.toMap)
  }

  override def createRelation(sqlContext: SQLContext, mode: SaveMode, parameters: Map[String, String],
      data: DataFrame): BaseRelation = {
    val path = MdsDataSource.pathOf(parameters)
    val partitionColumns = MdsPartitioning.columnsOption(parameters)
    new MdsOptions(parameters) // validate options before touching anything
    val session = data.sparkSession
    val exists = MdsWriteJob.exists(session, path, parameters)
    mode match {
      case SaveMode.ErrorIfExists if exists =>
        throw new MdsException(s"an MDS dataset already exists at $path (it has an index.json); use " +
          "mode('append') to add to it, mode('overwrite') to replace it, or mode('ignore') to skip the write")
      case SaveMode.Ignore if exists => ()
      case SaveMode.Overwrite => MdsWriteJob.write(data, path, parameters, overwrite = true, None, partitionColumns)
      case _ => MdsWriteJob.write(data, path, parameters, overwrite = false, None, partitionColumns)
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
