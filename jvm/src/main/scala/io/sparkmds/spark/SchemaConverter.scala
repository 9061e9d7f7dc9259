package io.sparkmds.spark

import io.sparkmds.format.{DType, MdsEncoding, MdsException, MdsIndex, PyJson, ShardEntry, SparkMdsMeta}
import io.sparkmds.format.MdsEncoding._
import org.apache.spark.sql.types._

/** One top-level column: its logical field and how it is stored. */
final case class ColumnSpec(field: StructField, fieldIndex: Int, storageIndex: Int, encoding: MdsEncoding) {
  def name: String = field.name
  def dataType: DataType = field.dataType
}

/**
 * The storage layout of a dataset: the logical schema, the MDS columns in storage (sample) order
 * and the position of the `__nulls__` column (-1 without one). Used by both the writer and reader.
 */
final case class MdsLayout(
    schema: StructType,
    columns: IndexedSeq[ColumnSpec], // in logical schema order
    storageNames: IndexedSeq[String],
    storageEncodings: IndexedSeq[MdsEncoding],
    nullMaskIndex: Int,
    hasLogicalSchema: Boolean) {
  def nullMaskBytes: Int = (schema.length + 7) / 8
  def storageSizes: IndexedSeq[Option[Int]] = storageEncodings.map(e => if (e.isFixed) Some(e.fixedSize) else None)
  def sparkMeta: Option[SparkMdsMeta] =
    if (!hasLogicalSchema) None
    else Some(SparkMdsMeta(1, schema.json, if (nullMaskIndex >= 0) Some(MdsIndex.NullMaskColumn) else None))
  def byName(n: String): Option[ColumnSpec] = columns.find(_.name == n)
}

/**
 * Spark type <-> MDS encoding <-> logical schema JSON, in one place (docs/format.md sections 2-4).
 */
object SchemaConverter {

  /** Numeric dtype of an `ndarray` element of this Spark type. */
  def dtypeOf(t: DataType): Option[DType] = t match {
    case ByteType => Some(DType.Int8)
    case ShortType => Some(DType.Int16)
    case IntegerType => Some(DType.Int32)
    case LongType => Some(DType.Int64)
    case FloatType => Some(DType.Float32)
    case DoubleType => Some(DType.Float64)
    case BooleanType => Some(DType.UInt8)
    case _ => None
  }

  /** Depth and leaf of a (nested) array of numeric/boolean elements, e.g. array<array<int>> -> (2, int). */
  def numericArray(t: DataType): Option[(Int, DataType)] = t match {
    case ArrayType(e, _) if dtypeOf(e).isDefined => Some((1, e))
    case ArrayType(inner: ArrayType, _) => numericArray(inner).map { case (d, l) => (d + 1, l) }
    case _ => None
  }

  private def isIntegral(t: DataType) = t match { case ByteType | ShortType | IntegerType | LongType => true; case _ => false }

  /** Fails for types MDS cannot store, naming the column and type. */
  def checkStorable(col: String, t: DataType): Unit = {
    def bad(what: DataType) = throw new MdsException(
      s"column '$col' has type ${t.sql}${if (what != t) s" (containing ${what.sql})" else ""}, which MDS cannot store: " +
        "cast it to a supported type or drop the column")
    def walk(x: DataType): Unit = x match {
      case NullType | CalendarIntervalType => bad(x)
      case s: StructType => s.fields.foreach(f => walk(f.dataType))
      case ArrayType(e, _) => walk(e)
      case MapType(k, v, _) => walk(k); walk(v)
      case BooleanType | ByteType | ShortType | IntegerType | LongType | FloatType | DoubleType | _: StringType |
           BinaryType | _: DecimalType | DateType | TimestampType | TimestampNTZType | _: DayTimeIntervalType |
           _: YearMonthIntervalType => ()
      case other => bad(other) // variant, object, user-defined
    }
    walk(t)
  }

  /** The default storage encoding of a logical type (docs/format.md section 2). */
  def defaultEncoding(col: String, t: DataType): MdsEncoding = {
    checkStorable(col, t)
    t match {
      case ByteType => Num(DType.Int8)
      case ShortType => Num(DType.Int16)
      case IntegerType | DateType | _: YearMonthIntervalType => Num(DType.Int32)
      case LongType | TimestampType | TimestampNTZType | _: DayTimeIntervalType => Num(DType.Int64)
      case FloatType => Num(DType.Float32)
      case DoubleType => Num(DType.Float64)
      case BooleanType => Num(DType.UInt8)
      case _: StringType => Str
      case BinaryType => Blob("bytes")
      case _: DecimalType => StrDecimal
      case a: ArrayType if numericArray(a).isDefined => MdsEncoding.ndarray(dtypeOf(numericArray(a).get._2).get)
      case _: ArrayType | _: MapType | _: StructType => Json
      case other => throw new MdsException(s"column '$col' has type ${other.sql}, which MDS cannot store")
    }
  }

  private def allowedText(t: DataType): String = t match {
    case _ if isIntegral(t) => "int8, int16, int32, int64, uint8, uint16, uint32, uint64, int, str_int"
    case FloatType | DoubleType => "float16, float32, float64, str_float"
    case BooleanType => "uint8, int8"
    case _: StringType => "str, json"
    case BinaryType => "bytes, jpeg, png, pil, pkl"
    case _: DecimalType => "str_decimal"
    case ArrayType(BinaryType, _) => "list[jpeg], list[png], list[pil], jpeg_array, json"
    case a: ArrayType if numericArray(a).isDefined => "ndarray:<dtype>, ndarray:<dtype>:<shape>, json"
    case _: ArrayType | _: MapType | _: StructType => "json"
    case _ => defaultEncoding("?", t).name
  }

  /** Validates an `encoding.<column>` override against the column's type. */
  def overrideEncoding(col: String, t: DataType, s: String): MdsEncoding = {
    checkStorable(col, t)
    val enc = MdsEncoding.parse(s, s"option encoding.$col")
    def bad(extra: String = "") = throw new MdsException(
      s"option encoding.$col='$s' is not allowed for column '$col' of type ${t.sql}$extra; allowed: ${allowedText(t)}")
    val ok = (t, enc) match {
      case (_, e) if e == defaultEncoding(col, t) => true
      case (it, Num(d)) if isIntegral(it) => d.isInteger
      case (it, PyInt | StrInt) if isIntegral(it) => true
      case (FloatType | DoubleType, Num(d)) => d.isFloat
      case (FloatType | DoubleType, StrFloat) => true
      case (BooleanType, Num(DType.UInt8 | DType.Int8)) => true
      case (_: StringType, Str | Json) => true
      case (BinaryType, Blob(_)) => true
      case (ArrayType(BinaryType, _), ImageList(_) | JpegArray(_) | Json) => true
      case (a: ArrayType, nd: NdArray) if numericArray(a).isDefined =>
        if (nd.dtype.isEmpty) bad(" (give the dtype: ndarray:<dtype>[:<shape>])")
        nd.shape.foreach { sh =>
          val depth = numericArray(a).get._1
          if (depth != 1 && depth != sh.length) {
            bad(s" (a static shape of ${sh.length} dimensions needs a flat array or an array nested ${sh.length} deep)")
          }
        }
        true
      case (_: ArrayType | _: MapType | _: StructType, Json) => true
      case _ => false
    }
    if (!ok) bad()
    enc
  }

  /** Builds the write layout for `schema` from the options (defaults, overrides, null mask). */
  def writeLayout(schema: StructType, opts: MdsOptions): MdsLayout = {
    val names = schema.fieldNames
    if (names.contains(MdsIndex.NullMaskColumn)) {
      throw new MdsException(s"column name '${MdsIndex.NullMaskColumn}' is reserved for the null mask of MDS datasets; rename the column")
    }
    val dup = names.groupBy(identity).collect { case (n, v) if v.length > 1 => n }
    if (dup.nonEmpty) throw new MdsException(s"duplicate column names ${dup.mkString(", ")}; MDS column names must be unique")
    names.foreach(n => if (n.isEmpty) throw new MdsException("a column has an empty name; MDS columns need names"))
    val overrides = resolveEncodings(opts.encodings, names.toIndexedSeq)
    val mask = opts.nullMask && schema.fields.exists(_.nullable)
    val storage = (names.toIndexedSeq ++ (if (mask) Seq(MdsIndex.NullMaskColumn) else Nil)).sortWith(PyJson.codePointLess)
    val encs = schema.fields.map { f =>
      overrides.get(f.name).map(overrideEncoding(f.name, f.dataType, _)).getOrElse(defaultEncoding(f.name, f.dataType))
    }
    val cols = schema.fields.zipWithIndex.map { case (f, i) => ColumnSpec(f, i, storage.indexOf(f.name), encs(i)) }.toIndexedSeq
    val storageEncs = storage.map { n =>
      if (n == MdsIndex.NullMaskColumn && mask) nullMaskEncoding(schema.length) else encs(names.indexOf(n))
    }
    MdsLayout(schema, cols, storage, storageEncs, if (mask) storage.indexOf(MdsIndex.NullMaskColumn) else -1, hasLogicalSchema = true)
  }

  /**
   * Maps `encoding.<column>` overrides to the data's column names: a key names the column equal to it,
   * else the one column equal to it ignoring case (Spark may hand option keys over lower-cased, and
   * the Python data source always gets them so).
   */
  def resolveEncodings(encodings: Map[String, String], columns: Seq[String]): Map[String, String] = {
    val (resolved, unknown) = encodings.toSeq.map { case (key, enc) =>
      if (columns.contains(key)) (Some(key -> enc), None)
      else columns.filter(_.equalsIgnoreCase(key)) match {
        case Seq(c) => (Some(c -> enc), None)
        case Seq() => (None, Some(key))
        case many => throw new MdsException(s"option encoding.$key matches the columns ${many.mkString(", ")}, which " +
          "differ only in case; Python data sources receive option names lower-cased, so rename the columns apart to " +
          "give them encodings")
      }
    }.unzip
    if (unknown.flatten.nonEmpty) {
      throw new MdsException(s"option ${unknown.flatten.map("encoding." + _).mkString(", ")} names no column; columns " +
        s"are ${columns.mkString(", ")}")
    }
    resolved.flatten.toMap
  }

  def nullMaskEncoding(numFields: Int): MdsEncoding = MdsEncoding.ndarray(DType.UInt8, Some(Array((numFields + 7) / 8)))

  /** What a reader learns from the first sample of a dynamic-shape `ndarray` column. */
  final case class NdPeek(dtype: DType, ndim: Int)

  /** The logical type of an encoding when the dataset has no logical schema (section 4). */
  def inferredType(col: String, enc: MdsEncoding, peek: => Option[NdPeek]): DataType = enc match {
    case Num(DType.Int8) => ByteType
    case Num(DType.Int16) | Num(DType.UInt8) => ShortType
    case Num(DType.Int32) | Num(DType.UInt16) => IntegerType
    case Num(DType.Int64) | Num(DType.UInt32) => LongType
    case Num(DType.UInt64) => DecimalType(20, 0)
    case Num(DType.Float16) | Num(DType.Float32) => FloatType
    case Num(DType.Float64) => DoubleType
    case PyInt | StrInt => LongType
    case StrFloat => DoubleType
    case Str | StrDecimal | Json => StringType
    case Blob(_) => BinaryType
    case ImageList(_) | JpegArray(_) => ArrayType(BinaryType, containsNull = false)
    case nd: NdArray =>
      val (dtype, depth) = nd.shape match {
        case Some(sh) if nd.dtype.isDefined => (nd.dtype.get, sh.length)
        case _ =>
          val p = peek
          (nd.dtype.orElse(p.map(_.dtype)).getOrElse(DType.Float64), nd.shape.map(_.length).orElse(p.map(_.ndim)).getOrElse(1))
      }
      val leaf = inferredType(col, Num(dtype), None)
      (1 until depth).foldLeft(ArrayType(leaf, containsNull = false): DataType)((t, _) => ArrayType(t, containsNull = false))
    case other => throw new MdsException(s"column '$col': cannot infer a type for encoding '${other.name}'")
  }

  /**
   * The read layout of an index: its columns (all shards must agree) and its logical schema (from
   * `spark_mds`, else inferred). `peek(storageIndex)` inspects the first sample of a column.
   */
  def readLayout(index: MdsIndex, where: String, peek: Int => Option[NdPeek]): MdsLayout = {
    val first: Option[ShardEntry] = index.shards.headOption
    index.shards.zipWithIndex.foreach { case (s, i) =>
      if (s.columnNames != first.get.columnNames || s.columnEncodings != first.get.columnEncodings) {
        throw new MdsException(s"MDS index $where: shard $i (${s.rawData.basename}) has columns " +
          s"${s.columnNames.zip(s.columnEncodings).mkString(", ")} but shard 0 has " +
          s"${first.get.columnNames.zip(first.get.columnEncodings).mkString(", ")}; every shard of a dataset must have the same columns")
      }
    }
    val storageNames = first.map(_.columnNames.toIndexedSeq).getOrElse(IndexedSeq.empty)
    val storageEncs = first.map(s => s.columnNames.zip(s.columnEncodings).map { case (n, e) =>
      MdsEncoding.parse(e, s"column '$n' in MDS index $where")
    }.toIndexedSeq).getOrElse(IndexedSeq.empty)
    first.foreach { s =>
      s.columnSizes.zip(storageEncs).zip(s.columnNames).foreach { case ((sz, e), n) =>
        if (sz.getOrElse(-1) != e.fixedSize) {
          throw new MdsException(s"MDS index $where: column '$n' has column_sizes entry ${sz.getOrElse("null")} but encoding '${e.name}' " +
            s"has ${if (e.isFixed) e.fixedSize.toString else "a variable size"}")
        }
      }
    }
    index.sparkMds match {
      case Some(meta) =>
        val schema = try DataType.fromJson(meta.schemaJson).asInstanceOf[StructType] catch {
          case e: Exception => throw new MdsException(s"MDS index $where: spark_mds.schema is not a Spark schema (${e.getMessage})", e)
        }
        val cols = schema.fields.zipWithIndex.map { case (f, i) =>
          val si = storageNames.indexOf(f.name)
          if (si < 0 && first.isDefined) {
            throw new MdsException(s"MDS index $where: the logical schema has column '${f.name}' but the shards have only " +
              s"${storageNames.mkString(", ")}")
          }
          ColumnSpec(f, i, si, if (si >= 0) storageEncs(si) else defaultEncoding(f.name, f.dataType))
        }.toIndexedSeq
        val maskIdx = meta.nullMask.map(storageNames.indexOf(_)).getOrElse(-1)
        if (meta.nullMask.isDefined && maskIdx < 0 && first.isDefined) {
          throw new MdsException(s"MDS index $where: spark_mds.null_mask names '${meta.nullMask.get}' but the shards have no such column")
        }
        MdsLayout(schema, cols, storageNames, storageEncs, maskIdx, hasLogicalSchema = true)
      case None =>
        val fields = storageNames.indices.map { i =>
          StructField(storageNames(i), inferredType(storageNames(i), storageEncs(i), peek(i)), nullable = false)
        }
        val schema = StructType(fields)
        val cols = fields.indices.map(i => ColumnSpec(fields(i), i, i, storageEncs(i)))
        MdsLayout(schema, cols, storageNames, storageEncs, -1, hasLogicalSchema = false)
    }
  }

  /**
   * The layout for appending `schema` to an existing dataset: the existing storage layout wins, and
   * the new data must have the same columns and types (nullability aside).
   */
  def appendLayout(existing: MdsLayout, schema: StructType, opts: MdsOptions, where: String): MdsLayout = {
    val old = existing.schema
    val oldNames = old.fieldNames.toSet
    val newNames = schema.fieldNames.toSet
    val missing = old.fieldNames.filterNot(newNames)
    val extra = schema.fieldNames.filterNot(oldNames)
    val typeDiff = schema.fields.filter(f => oldNames(f.name)).flatMap { f =>
      val o = old(f.name).dataType
      if (sameIgnoringNullability(f.dataType, o)) None
      else Some(s"${f.name} (existing ${o.sql}, new ${f.dataType.sql})")
    }
    if (missing.nonEmpty || extra.nonEmpty || typeDiff.nonEmpty) {
      val parts = Seq(
        if (missing.nonEmpty) Some(s"missing columns ${missing.mkString(", ")}") else None,
        if (extra.nonEmpty) Some(s"new columns ${extra.mkString(", ")}") else None,
        if (typeDiff.nonEmpty) Some(s"different types: ${typeDiff.mkString(", ")}") else None).flatten
      throw new MdsException(s"cannot append to the MDS dataset at $where: the data's schema differs from the dataset's " +
        s"(${parts.mkString("; ")}). Dataset schema: ${old.simpleString}; data schema: ${schema.simpleString}")
    }
    resolveEncodings(opts.encodings, old.fieldNames.toIndexedSeq).foreach { case (c, e) =>
      existing.byName(c) match {
        case Some(spec) if spec.encoding.name == MdsEncoding.parse(e, s"option encoding.$c").name => ()
        case Some(spec) => throw new MdsException(s"option encoding.$c='$e' conflicts with the existing dataset at $where, " +
          s"which stores '$c' as '${spec.encoding.name}'; drop the option or overwrite the dataset")
        case None => throw new MdsException(s"option encoding.$c names no column; columns are ${old.fieldNames.mkString(", ")}")
      }
    }
    existing
  }

  def sameIgnoringNullability(a: DataType, b: DataType): Boolean = (a, b) match {
    case (ArrayType(x, _), ArrayType(y, _)) => sameIgnoringNullability(x, y)
    case (MapType(k1, v1, _), MapType(k2, v2, _)) => sameIgnoringNullability(k1, k2) && sameIgnoringNullability(v1, v2)
    case (StructType(f1), StructType(f2)) => f1.length == f2.length &&
      f1.zip(f2).forall { case (x, y) => x.name == y.name && sameIgnoringNullability(x.dataType, y.dataType) }
    case _ => a == b
  }
}
