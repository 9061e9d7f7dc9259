package io.sparkmds.spark.v2

import java.util

import scala.jdk.CollectionConverters._

import io.sparkmds.format.MdsException
import io.sparkmds.spark._
import org.apache.hadoop.fs.Path
import org.apache.spark.sql.{DataFrame, SparkSession}
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.catalyst.expressions.{BoundReference, Expression, JoinedRow, UnsafeProjection}
import org.apache.spark.sql.connector.expressions.{Expressions, Transform}
import org.apache.spark.sql.connector.catalog.{SupportsRead, SupportsWrite, TableCapability}
import org.apache.spark.sql.connector.read._
import org.apache.spark.sql.connector.write.{LogicalWriteInfo, SupportsTruncate, V1Write, WriteBuilder}
import org.apache.spark.sql.sources.{Filter, InsertableRelation}
import org.apache.spark.sql.types.StructType
import org.apache.spark.sql.util.CaseInsensitiveStringMap
import org.apache.spark.util.SerializableConfiguration

/**
 * An MDS dataset directory as a Spark table. `properties` are kept because catalog tables pass
 * their LOCATION only there; per-call options are merged over them. `partitionColumns`: those of
 * `partitionBy` / `PARTITIONED BY`, which SQL writes to a partitioned table use.
 */
class MdsTable(tableSchema: StructType, partitionColumns: Seq[String], properties: Map[String, String])
    extends SupportsRead with SupportsWrite {

  private def merged(options: CaseInsensitiveStringMap): Map[String, String] =
    properties ++ options.asCaseSensitiveMap().asScala.toMap

  override def name(): String = s"mds ${properties.getOrElse("path", properties.getOrElse("location", ""))}".trim

  override def schema(): StructType = tableSchema

  override def partitioning(): Array[Transform] = partitionColumns.map(c => Expressions.identity(c): Transform).toArray

  override def properties(): util.Map[String, String] = properties.asJava

  override def capabilities(): util.Set[TableCapability] =
    util.EnumSet.of(TableCapability.BATCH_READ, TableCapability.V1_BATCH_WRITE, TableCapability.TRUNCATE)

  override def newScanBuilder(options: CaseInsensitiveStringMap): ScanBuilder =
    new MdsScanBuilder(tableSchema, merged(options))

  override def newWriteBuilder(info: LogicalWriteInfo): WriteBuilder =
    new MdsWriteBuilder(merged(info.options()), tableSchema, partitionColumns)
}

/**
 * Column pruning, and partition pruning for a partitioned dataset: filters on partition columns skip
 * the shards of partitions they exclude (MDS has no statistics for other filters). Every filter is
 * still evaluated by Spark on the rows.
 */
class MdsScanBuilder(schema: StructType, options: Map[String, String])
    extends ScanBuilder with SupportsPushDownRequiredColumns with SupportsPushDownFilters {
  private var required = schema
  private var filters = Array.empty[Filter]
  private val source = new MdsScanSource(options)
  override def pruneColumns(requiredSchema: StructType): Unit = required = requiredSchema
  override def pushFilters(fs: Array[Filter]): Array[Filter] = {
    filters = fs.filter(source.partitioning.prunes)
    fs
  }
  override def pushedFilters(): Array[Filter] = filters
  override def build(): Scan = new MdsScan(source, required, filters.toSeq)
}

/** The dataset a scan reads: its index and layout, loaded once on the driver. */
final class MdsScanSource(val options: Map[String, String]) {
  val opts = new MdsOptions(options)
  val path: String = MdsDataSource.pathOf(options)
  lazy val session: SparkSession = SparkSession.active
  lazy val conf = MdsWriteJob.hadoopConf(session, options)
  lazy val dir: Path = MdsFiles.fs(new Path(path), conf).makeQualified(new Path(path))
  // A catalog table may point at a directory that has no data yet: it reads as empty.
  lazy val loaded: Option[(io.sparkmds.format.MdsIndex, MdsLayout)] = MdsFiles.readIndex(dir, conf).map { case (idx, _) =>
    (idx, SchemaConverter.readLayout(idx, dir.toString, MdsReadSupport.peeker(idx, dir, conf)))
  }
  lazy val partitioning: MdsPartitioning =
    loaded.map { case (idx, _) => MdsPartitioning.of(idx, dir.toString) }.getOrElse(MdsPartitioning.Unpartitioned)
}

/**
 * A scan of one dataset: one input partition per shard, small shards grouped up to a target size
 * (never across partition directories). Rows are the required data columns, then the required
 * partition columns.
 */
class MdsScan(source: MdsScanSource, required: StructType, filters: Seq[Filter])
    extends Scan with Batch with SupportsReportStatistics {
  import source.{conf, dir, loaded, opts, partitioning, path, session}
  private lazy val requiredData = StructType(readSchema().filterNot(f => partitioning.names.contains(f.name)))
  private lazy val requiredPartitions = StructType(readSchema().filter(f => partitioning.names.contains(f.name)))
  /** The shards to read, each with its partition values (the required ones), after partition pruning. */
  private lazy val selected: Seq[(MdsShardRef, InternalRow)] = loaded match {
    case None => Nil
    case Some((index, _)) if partitioning.isEmpty => index.shards.map(s => (MdsReadSupport.shardRef(s), InternalRow.empty))
    case Some((index, _)) =>
      val keep = partitioning.pruner(filters)
      val where = s"$dir/${io.sparkmds.format.MdsIndex.FileName}"
      val pick = UnsafeProjection.create(requiredPartitions.fields.toSeq.map { f =>
        val i = partitioning.schema.fieldIndex(f.name)
        BoundReference(i, partitioning.schema(i).dataType, nullable = true): Expression
      })
      val values = scala.collection.mutable.HashMap.empty[String, (Boolean, InternalRow)]
      index.shards.flatMap { s =>
        val (ok, row) = values.getOrElseUpdate(partitioning.dirPrefix(s.rawData.basename), {
          val all = partitioning.valuesOf(s.rawData.basename, where)
          (keep.forall(_(all)), pick(all).copy())
        })
        if (ok) Some((MdsReadSupport.shardRef(s), row)) else None
      }
  }

  override def readSchema(): StructType = {
    val parts = partitioning.names.toSet
    StructType(required.filterNot(f => parts(f.name)) ++ required.filter(f => parts(f.name)))
  }
  override def toBatch: Batch = this
  override def description(): String = s"MdsScan $path [${readSchema().fieldNames.mkString(", ")}]" +
    (if (filters.isEmpty) "" else s" PartitionFilters: [${filters.mkString(", ")}]")

  override def estimateStatistics(): Statistics = new Statistics {
    private val shards = selected.map(_._1)
    override def sizeInBytes(): java.util.OptionalLong = java.util.OptionalLong.of(shards.map(_.rawBytes).sum)
    override def numRows(): java.util.OptionalLong = java.util.OptionalLong.of(shards.map(_.samples).sum)
  }

  override def planInputPartitions(): Array[InputPartition] = loaded match {
    case None => Array.empty
    case Some((_, layout)) =>
      // Fail on the driver when the requested columns do not fit the data.
      if (requiredData.nonEmpty) new MdsDeserializer(layout, requiredData)
      // Like Spark's file sources: spread the data over the cores, but never group past the maximum.
      val total = selected.map(_._1.storedBytes).sum
      val parallelism = math.max(1, session.sparkContext.defaultParallelism)
      val target = math.min(opts.maxPartitionBytes, math.max(4L << 20, total / parallelism))
      val groups = Array.newBuilder[InputPartition]
      var cur = Vector.empty[MdsShardRef]
      var curValues: InternalRow = null
      var size = 0L
      selected.foreach { case (ref, values) =>
        if (cur.nonEmpty && (size + ref.storedBytes > target || (values ne curValues))) {
          groups += MdsInputPartition(cur, curValues); cur = Vector.empty; size = 0L
        }
        cur :+= ref
        curValues = values
        size += ref.storedBytes
      }
      if (cur.nonEmpty) groups += MdsInputPartition(cur, curValues)
      groups.result()
  }

  override def createReaderFactory(): PartitionReaderFactory = loaded match {
    case Some((_, layout)) =>
      MdsReaderFactory(dir.toString, layout, requiredData, requiredPartitions.nonEmpty, opts.validateHash,
        new SerializableConfiguration(conf))
    case None => MdsReaderFactory(dir.toString, null, requiredData, false, None, new SerializableConfiguration(conf))
  }
}

/** Consecutive shards of one partition directory, and its partition values (the required ones). */
final case class MdsInputPartition(shards: Seq[MdsShardRef], partitionValues: InternalRow) extends InputPartition

/** Builds row readers on executors; the Hadoop conf travels with it. */
final case class MdsReaderFactory(dir: String, layout: MdsLayout, required: StructType, withPartitionValues: Boolean,
    validateHash: Option[String], conf: SerializableConfiguration) extends PartitionReaderFactory {
  override def createReader(partition: InputPartition): PartitionReader[InternalRow] = {
    val p = partition.asInstanceOf[MdsInputPartition]
    val it = new MdsRowIterator(new Path(dir), conf.value, p.shards, layout, required, validateHash)
    val joined = if (withPartitionValues) new JoinedRow() else null
    new PartitionReader[InternalRow] {
      override def next(): Boolean = it.next()
      override def get(): InternalRow = if (joined == null) it.get else joined(it.get, p.partitionValues)
      override def close(): Unit = it.close()
    }
  }
}

/** SQL writes (INSERT, INSERT OVERWRITE, CTAS, saveAsTable, insertInto) go through the V1 fallback. */
class MdsWriteBuilder(options: Map[String, String], tableSchema: StructType, partitionColumns: Seq[String])
    extends WriteBuilder with SupportsTruncate {
  private var overwrite = false
  override def truncate(): WriteBuilder = { overwrite = true; this }
  override def build(): V1Write = new V1Write {
    override def toInsertableRelation(): InsertableRelation = new InsertableRelation {
      override def insert(data: DataFrame, overwriteFlag: Boolean): Unit = {
        val path = MdsDataSource.pathOf(options)
        MdsWriteJob.write(data, path, options, overwrite = overwrite || overwriteFlag, Some(tableSchema), partitionColumns)
      }
    }
  }
}

