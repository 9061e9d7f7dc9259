package io.sparkmds.spark

import io.sparkmds.format.{MdsException, MdsIndex, SparkMdsMeta}
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.catalyst.catalog.ExternalCatalogUtils
import org.apache.spark.sql.catalyst.expressions._
import org.apache.spark.sql.sources
import org.apache.spark.sql.types._
import org.apache.spark.unsafe.types.UTF8String

/**
 * The partition columns of a partitioned dataset (docs/format.md section 8): Hive-style directories
 * `col=value/...`, each a complete MDS dataset, under a root `index.json` whose shard basenames carry
 * the directories and whose `spark_mds.partition_columns` holds the columns' schema. Values are
 * written and parsed as Spark's file sources do (Spark's own path escaping, `__HIVE_DEFAULT_PARTITION__`
 * for null and the empty string); the types are exact because the root index records them.
 */
final case class MdsPartitioning(schema: StructType) {
  def names: Seq[String] = schema.fieldNames.toSeq
  def isEmpty: Boolean = schema.isEmpty

  /** The directory of one row's partition values, without a trailing slash: `a=1/b=x`. */
  def dirOf(values: InternalRow): String = schema.fields.indices.map { i =>
    val f = schema(i)
    val text = if (values.isNullAt(i)) null else MdsPartitioning.render(values.get(i, f.dataType), f.dataType)
    ExternalCatalogUtils.getPartitionPathString(f.name, text)
  }.mkString("/")

  /** The partition values of a shard of the root index, from its basename's directories. */
  def valuesOf(basename: String, where: String): InternalRow = {
    val dirs = basename.split('/').dropRight(1)
    def bad(why: String) = throw new MdsException(s"MDS index $where: shard '$basename' $why; the dataset is " +
      s"partitioned by ${names.mkString(", ")}, so every shard must lie under ${names.map(n => s"$n=<value>").mkString("/")}/")
    if (dirs.length < schema.length) bad("is not inside the partition directories")
    val row = new GenericInternalRow(schema.length)
    schema.fields.zipWithIndex.foreach { case (f, i) =>
      val d = dirs(i)
      val eq = d.indexOf('=')
      if (eq < 0 || ExternalCatalogUtils.unescapePathName(d.substring(0, eq)) != f.name) bad(s"has directory '$d' where '${f.name}=...' belongs")
      val text = ExternalCatalogUtils.unescapePathName(d.substring(eq + 1))
      row.update(i, if (text == ExternalCatalogUtils.DEFAULT_PARTITION_NAME) null else MdsPartitioning.parse(text, f, where))
    }
    row
  }

  /** The directory prefix of a basename (its first `schema.length` components). */
  def dirPrefix(basename: String): String = basename.split('/').take(schema.length).mkString("/")

  def json: Option[String] = if (isEmpty) None else Some(schema.json)

  /**
   * A predicate on a shard's partition values from the pushed filters that only reference partition
   * columns; a shard is skipped when it is false or null. Spark still evaluates every filter on the rows.
   */
  def pruner(filters: Seq[sources.Filter]): Option[InternalRow => Boolean] = {
    val exprs = filters.filter(_.references.forall(names.contains)).flatMap(toExpression)
    if (exprs.isEmpty) None
    else {
      val predicate = exprs.reduce(And)
      Some((values: InternalRow) => predicate.eval(values) == true)
    }
  }

  /** The filters that prune partitions (all of them are also evaluated after the scan). */
  def prunes(f: sources.Filter): Boolean = !isEmpty && f.references.forall(names.contains) && toExpression(f).isDefined

  private def toExpression(f: sources.Filter): Option[Expression] = {
    def col(n: String): Option[Expression] = Some(schema.fieldIndex(n)).map(i => BoundReference(i, schema(i).dataType, nullable = true))
    def lit(n: String, v: Any): Expression = Cast(Literal(v), schema(n).dataType)
    f match {
      case sources.EqualTo(a, v) => col(a).map(EqualTo(_, lit(a, v)))
      case sources.EqualNullSafe(a, v) => col(a).map(EqualNullSafe(_, lit(a, v)))
      case sources.GreaterThan(a, v) => col(a).map(GreaterThan(_, lit(a, v)))
      case sources.GreaterThanOrEqual(a, v) => col(a).map(GreaterThanOrEqual(_, lit(a, v)))
      case sources.LessThan(a, v) => col(a).map(LessThan(_, lit(a, v)))
      case sources.LessThanOrEqual(a, v) => col(a).map(LessThanOrEqual(_, lit(a, v)))
      case sources.In(a, vs) => col(a).map(c => In(c, vs.toSeq.map(v => lit(a, v))))
      case sources.IsNull(a) => col(a).map(IsNull)
      case sources.IsNotNull(a) => col(a).map(IsNotNull)
      case sources.StringStartsWith(a, v) => col(a).map(StartsWith(_, Literal(v)))
      case sources.StringEndsWith(a, v) => col(a).map(EndsWith(_, Literal(v)))
      case sources.StringContains(a, v) => col(a).map(Contains(_, Literal(v)))
      case sources.And(l, r) => for (x <- toExpression(l); y <- toExpression(r)) yield And(x, y)
      case sources.Or(l, r) => for (x <- toExpression(l); y <- toExpression(r)) yield Or(x, y)
      case sources.Not(c) => toExpression(c).map(Not)
      case _ => None
    }
  }
}

object MdsPartitioning {
  val Unpartitioned: MdsPartitioning = MdsPartitioning(new StructType())

  /** The partitioning recorded in an index (empty for an unpartitioned dataset). */
  def of(index: MdsIndex, where: String): MdsPartitioning = index.sparkMds.flatMap(_.partitionSchemaJson) match {
    case Some(j) => try MdsPartitioning(DataType.fromJson(j).asInstanceOf[StructType]) catch {
      case e: Exception => throw new MdsException(s"MDS index $where: spark_mds.partition_columns is not a Spark schema (${e.getMessage})", e)
    }
    case None => Unpartitioned
  }

  /**
   * The partitioning of a write of `schema` by `columns`: they must exist, be distinct, leave at least
   * one data column, and have a type whose text form is exact.
   */
  def forWrite(schema: StructType, columns: Seq[String]): MdsPartitioning = {
    if (columns.isEmpty) return Unpartitioned
    val resolver = org.apache.spark.sql.catalyst.analysis.caseInsensitiveResolution
    val fields = columns.map { c =>
      schema.fields.find(f => resolver(f.name, c)).getOrElse(throw new MdsException(
        s"partition column '$c' is not a column of the data; columns are ${schema.fieldNames.mkString(", ")}"))
    }
    if (fields.map(_.name).distinct.length != fields.length) {
      throw new MdsException(s"partition columns ${columns.mkString(", ")} name a column twice")
    }
    if (fields.length == schema.length) {
      throw new MdsException(s"every column (${columns.mkString(", ")}) is a partition column; an MDS dataset needs " +
        "at least one data column")
    }
    fields.foreach { f =>
      if (!supported(f.dataType)) throw new MdsException(s"partition column '${f.name}' has type ${f.dataType.sql}; " +
        "mds partitions by string, integer (tinyint to bigint), boolean or date columns. Cast it, or derive such a column")
    }
    MdsPartitioning(StructType(fields.map(_.copy(nullable = true))))
  }

  /**
   * The partition columns of a V1 write: those `DataFrameWriter.partitionBy` passes, else the
   * `partition_by` option (comma-separated), which `spark_mds.write(partition_by=...)` gives every
   * implementation (Spark refuses `partitionBy` for Python data sources).
   */
  def columnsOption(parameters: Map[String, String]): Seq[String] = {
    def get(name: String) = parameters.collectFirst { case (k, v) if k.equalsIgnoreCase(name) && v != null => v }
    val fromWriter = get("__partition_columns").toSeq.flatMap { json =>
      val node = io.sparkmds.format.PyJson.mapper.readTree(json)
      (0 until node.size()).map(i => node.get(i).asText())
    }
    if (fromWriter.nonEmpty) fromWriter else get("partition_by").toSeq.flatMap(_.split(',').map(_.trim).filter(_.nonEmpty))
  }

  private def supported(t: DataType): Boolean = t match {
    case StringType | BooleanType | ByteType | ShortType | IntegerType | LongType | DateType => true
    case _ => false
  }

  private def render(v: Any, t: DataType): String = t match {
    case DateType => java.time.LocalDate.ofEpochDay(v.asInstanceOf[Int].toLong).toString
    case _ => v.toString // UTF8String, Boolean and the integral types print exactly
  }

  private def parse(text: String, f: StructField, where: String): Any = {
    def bad(e: Exception) = throw new MdsException(s"MDS index $where: partition directory value '$text' of column " +
      s"'${f.name}' is not a ${f.dataType.sql} (${e.getMessage})", e)
    try f.dataType match {
      case StringType => UTF8String.fromString(text)
      case BooleanType => text match {
        case "true" => true
        case "false" => false
        case _ => throw new IllegalArgumentException("expected true or false")
      }
      case ByteType => text.toByte
      case ShortType => text.toShort
      case IntegerType => text.toInt
      case LongType => text.toLong
      case DateType => java.time.LocalDate.parse(text).toEpochDay.toInt
      case other => throw new IllegalArgumentException(s"unsupported partition type ${other.sql}")
    } catch { case e: MdsException => throw e; case e: Exception => bad(e) }
  }

  /** The index of one partition directory: the root's shards under `prefix`, relative to it, and no partitions. */
  def partitionIndex(root: MdsIndex, prefix: String): MdsIndex = MdsIndex(
    root.shards.filter(_.rawData.basename.startsWith(prefix + "/")).map { s =>
      def strip(f: io.sparkmds.format.FileInfo) = f.copy(basename = f.basename.substring(prefix.length + 1))
      s.copy(rawData = strip(s.rawData), zipData = s.zipData.map(strip))
    },
    root.sparkMds.map(_.copy(partitionSchemaJson = None)))

  def meta(base: Option[SparkMdsMeta], partitioning: MdsPartitioning): Option[SparkMdsMeta] =
    base.map(_.copy(partitionSchemaJson = partitioning.json))
}
