package io.sparkmds.spark.compat

import io.sparkmds.spark.{MdsReadSupport, MdsWriteJob}
import io.sparkmds.spark.v2.{MdsDataSource, MdsScan, MdsScanSource}
import org.apache.spark.{Partition, SparkContext, TaskContext}
import org.apache.spark.rdd.RDD
import org.apache.spark.sql.{DataFrame, Row, SQLContext}
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.connector.read.{InputPartition, PartitionReaderFactory}
import org.apache.spark.sql.sources.{BaseRelation, Filter, InsertableRelation, PrunedFilteredScan}
import org.apache.spark.sql.types.StructType

/**
 * An MDS dataset as a V1 relation, for Spark 3.5's catalog tables: a thin layer over the V2 scan
 * (the same partitions and row readers) and the write job. `schema` is the table's declared schema,
 * else the dataset's.
 */
final class MdsV1Relation(override val sqlContext: SQLContext, parameters: Map[String, String],
    declared: Option[StructType]) extends BaseRelation with PrunedFilteredScan with InsertableRelation {
  private val path = MdsDataSource.pathOf(parameters)

  // Read anew by every scan and insert: Spark caches a catalog table's relation across writes.
  private def source = new MdsScanSource(parameters)

  override lazy val schema: StructType = declared.getOrElse {
    val s = source
    val (_, layout) = MdsReadSupport.load(s.dir, s.conf)
    StructType(layout.schema ++ s.partitioning.schema)
  }

  // The rows are InternalRows already, as in the V2 scan.
  override def needConversion: Boolean = false

  // Filters on partition columns prune partitions; Spark evaluates every filter on the rows too.
  override def buildScan(requiredColumns: Array[String], filters: Array[Filter]): RDD[Row] = {
    val required = StructType(requiredColumns.map(c => schema(c)))
    val s = source
    val scan = new MdsScan(s, required, filters.toSeq.filter(s.partitioning.prunes))
    new MdsScanRdd(sqlContext.sparkContext, scan.planInputPartitions(), scan.createReaderFactory())
      .asInstanceOf[RDD[Row]]
  }

  /** A catalog table keeps the partitioning of the dataset it holds (Spark 3.5 passes it no partition columns). */
  override def insert(data: DataFrame, overwrite: Boolean): Unit =
    MdsWriteJob.write(data, path, parameters, overwrite, Some(schema), source.partitioning.names)
}

private final case class MdsScanPartition(index: Int, input: InputPartition) extends Partition

/** The partitions of a V2 scan as an RDD of its rows. */
private final class MdsScanRdd(sc: SparkContext, inputs: Array[InputPartition], factory: PartitionReaderFactory)
    extends RDD[InternalRow](sc, Nil) {
  override protected def getPartitions: Array[Partition] =
    inputs.indices.map(i => MdsScanPartition(i, inputs(i)): Partition).toArray

  override def compute(split: Partition, context: TaskContext): Iterator[InternalRow] = {
    val reader = factory.createReader(split.asInstanceOf[MdsScanPartition].input)
    context.addTaskCompletionListener[Unit](_ => reader.close())
    new Iterator[InternalRow] {
      private var fetched = false
      private var more = false
      override def hasNext: Boolean = {
        if (!fetched) { more = reader.next(); fetched = true }
        more
      }
      override def next(): InternalRow = {
        if (!hasNext) throw new NoSuchElementException("end of the MDS partition")
        fetched = false
        reader.get()
      }
    }
  }
}
