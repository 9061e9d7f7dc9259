package io.sparkmds.spark.v2

import java.util

import scala.jdk.CollectionConverters._

import io.sparkmds.format.MdsException
import io.sparkmds.spark._
import org.apache.hadoop.fs.Path
import org.apache.spark.sql.{DataFrame, SparkSession}
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.connector.catalog.{SupportsRead, SupportsWrite, TableCapability}
import org.apache.spark.sql.connector.read._
import org.apache.spark.sql.connector.write.{LogicalWriteInfo, SupportsTruncate, V1Write, WriteBuilder}
import org.apache.spark.sql.sources.InsertableRelation
import org.apache.spark.sql.types.StructType
import org.apache.spark.sql.util.CaseInsensitiveStringMap
import org.apache.spark.util.SerializableConfiguration

/**
 * An MDS dataset directory as a Spark table. `properties` are kept because catalog tables pass
 * their LOCATION only there; per-call options are merged over them.
 */
class MdsTable(tableSchema: StructType, properties: Map[String, String])
    extends SupportsRead with SupportsWrite {

  private def merged(options: CaseInsensitiveStringMap): Map[String, String] =
    properties ++ options.asCaseSensitiveMap().asScala.toMap

  override def name(): String = s"mds ${properties.getOrElse("path", properties.getOrElse("location", ""))}".trim

  override def schema(): StructType = tableSchema

  override def properties(): util.Map[String, String] = properties.asJava

  override def capabilities(): util.Set[TableCapability] =
    util.EnumSet.of(TableCapability.BATCH_READ, TableCapability.V1_BATCH_WRITE, TableCapability.TRUNCATE)

  override def newScanBuilder(options: CaseInsensitiveStringMap): ScanBuilder =
    new MdsScanBuilder(tableSchema, merged(options))

  override def newWriteBuilder(info: LogicalWriteInfo): WriteBuilder =
    new MdsWriteBuilder(merged(info.options()), tableSchema)
}

/** Column pruning only: MDS has no statistics to push filters into. */
class MdsScanBuilder(schema: StructType, options: Map[String, String])
    extends ScanBuilder with SupportsPushDownRequiredColumns {
  private var required = schema
  override def pruneColumns(requiredSchema: StructType): Unit = required = requiredSchema
  override def build(): Scan = new MdsScan(schema, required, options)
}

/** A scan of one dataset: one input partition per shard, small shards grouped up to a target size. */
class MdsScan(tableSchema: StructType, required: StructType, options: Map[String, String])
    extends Scan with Batch with SupportsReportStatistics {
  private val opts = new MdsOptions(options)
  private val path = MdsDataSource.pathOf(options)
  private lazy val session = SparkSession.active
  private lazy val conf = MdsWriteJob.hadoopConf(session, options)
  private lazy val dir = MdsFiles.fs(new Path(path), conf).makeQualified(new Path(path))
  // A catalog table may point at a directory that has no data yet: it reads as empty.
  private lazy val loaded = MdsFiles.readIndex(dir, conf).map { case (idx, _) =>
    (idx, SchemaConverter.readLayout(idx, dir.toString, MdsReadSupport.peeker(idx, dir, conf)))
  }

  override def readSchema(): StructType = required
  override def toBatch: Batch = this
  override def description(): String = s"MdsScan $path [${required.fieldNames.mkString(", ")}]"

  override def estimateStatistics(): Statistics = new Statistics {
    private val shards = loaded.map(_._1.shards).getOrElse(Nil)
    override def sizeInBytes(): java.util.OptionalLong = java.util.OptionalLong.of(shards.map(_.rawData.bytes).sum)
    override def numRows(): java.util.OptionalLong = java.util.OptionalLong.of(shards.map(_.samples).sum)
  }

  override def planInputPartitions(): Array[InputPartition] = loaded match {
    case None => Array.empty
    case Some((index, layout)) =>
      // Fail on the driver when the requested columns do not fit the data.
      if (required.nonEmpty) new MdsDeserializer(layout, required)
      // Like Spark's file sources: spread the data over the cores, but never group past the maximum.
      val total = index.shards.map(_.storedFile.bytes).sum
      val parallelism = math.max(1, session.sparkContext.defaultParallelism)
      val target = math.min(opts.maxPartitionBytes, math.max(4L << 20, total / parallelism))
      val groups = Array.newBuilder[InputPartition]
      var cur = Vector.empty[MdsShardRef]
      var size = 0L
      index.shards.map(MdsReadSupport.shardRef).foreach { ref =>
        if (cur.nonEmpty && size + ref.storedBytes > target) {
          groups += MdsInputPartition(cur); cur = Vector.empty; size = 0L
        }
        cur :+= ref
        size += ref.storedBytes
      }
      if (cur.nonEmpty) groups += MdsInputPartition(cur)
      groups.result()
  }

  override def createReaderFactory(): PartitionReaderFactory = loaded match {
    case Some((_, layout)) =>
      MdsReaderFactory(dir.toString, layout, required, opts.validateHash, new SerializableConfiguration(conf))
    case None => MdsReaderFactory(dir.toString, null, required, None, new SerializableConfiguration(conf))
  }
}

final case class MdsInputPartition(shards: Seq[MdsShardRef]) extends InputPartition

/** Builds row readers on executors; the Hadoop conf travels with it. */
final case class MdsReaderFactory(dir: String, layout: MdsLayout, required: StructType,
    validateHash: Option[String], conf: SerializableConfiguration) extends PartitionReaderFactory {
  override def createReader(partition: InputPartition): PartitionReader[InternalRow] = {
    val p = partition.asInstanceOf[MdsInputPartition]
    val it = new MdsRowIterator(new Path(dir), conf.value, p.shards, layout, required, validateHash)
    new PartitionReader[InternalRow] {
      override def next(): Boolean = it.next()
      override def get(): InternalRow = it.get
      override def close(): Unit = it.close()
    }
  }
}

/** SQL writes (INSERT, INSERT OVERWRITE, CTAS, saveAsTable, insertInto) go through the V1 fallback. */
class MdsWriteBuilder(options: Map[String, String], tableSchema: StructType) extends WriteBuilder with SupportsTruncate {
  private var overwrite = false
  override def truncate(): WriteBuilder = { overwrite = true; this }
  override def build(): V1Write = new V1Write {
    override def toInsertableRelation(): InsertableRelation = new InsertableRelation {
      override def insert(data: DataFrame, overwriteFlag: Boolean): Unit = {
        val path = MdsDataSource.pathOf(options)
        MdsWriteJob.write(data, path, options, overwrite = overwrite || overwriteFlag, Some(tableSchema))
      }
    }
  }
}

