package io.sparkmds.spark

import java.math.{BigDecimal => JBigDecimal, BigInteger}
import java.nio.charset.StandardCharsets

import io.sparkmds.format._
import io.sparkmds.format.MdsEncoding._
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.catalyst.expressions.{SpecificInternalRow, UnsafeArrayData}
import org.apache.spark.sql.catalyst.util.{ArrayData, GenericArrayData}
import org.apache.spark.sql.types._
import org.apache.spark.unsafe.Platform
import org.apache.spark.unsafe.types.UTF8String

/**
 * Decodes MDS samples of `layout` into rows of `required` (a pruned, possibly user-given schema).
 * Only the required columns are decoded; decoders are built once per schema and the output row is
 * reused (Spark copies it into an UnsafeRow right after).
 */
final class MdsDeserializer(layout: MdsLayout, required: StructType) {
  import MdsDeserializer._

  private val specs: Array[ColumnSpec] = required.fields.map { f =>
    layout.byName(f.name).orElse(layout.columns.find(_.name.equalsIgnoreCase(f.name))).getOrElse(
      throw new MdsException(s"column '${f.name}' is not in the MDS dataset; its columns are ${layout.schema.fieldNames.mkString(", ")}"))
  }
  private val setters: Array[Setter] = required.fields.zip(specs).map { case (f, s) => setter(s.name, s.encoding, f.dataType) }
  private val storageIdx: Array[Int] = specs.map(_.storageIndex)
  private val maskBit: Array[Int] = specs.map(s => if (layout.nullMaskIndex >= 0 && s.field.nullable) s.fieldIndex else -1)
  private val needMask = layout.nullMaskIndex >= 0 && maskBit.exists(_ >= 0)
  private val lastCol: Int = (storageIdx ++ (if (needMask) Seq(layout.nullMaskIndex) else Nil)).foldLeft(-1)(math.max)
  private val fixedSize: Array[Int] = layout.storageEncodings.map(_.fixedSize).toArray
  private val numVar = fixedSize.count(_ < 0)
  private val numCols = fixedSize.length
  private val colStart = new Array[Int](math.max(lastCol + 1, 1))
  private val colLen = new Array[Int](math.max(lastCol + 1, 1))
  val row: SpecificInternalRow = new SpecificInternalRow(required.fields.map(_.dataType).toIndexedSeq)

  /** Decodes sample `i` of `shard` into [[row]]. */
  def decode(shard: ShardData, i: Int, where: String): InternalRow = {
    val b = shard.bytes
    val start = shard.start(i)
    val end = shard.end(i)
    if (len0(start, end)) {
      throw new MdsException(s"corrupt MDS shard $where: sample $i has ${end - start} bytes, fewer than its " +
        s"${4 * numVar} bytes of column sizes; the shard does not match the index's column encodings")
    }
    // Sizes are u32: add them as longs, so that huge sizes cannot wrap around into a plausible total.
    var p = (start + 4 * numVar).toLong
    var v = 0
    var k = 0
    while (k < numCols) {
      val len = if (fixedSize(k) >= 0) fixedSize(k).toLong else { val l = LE.u32(b, start + 4 * v); v += 1; l }
      if (k <= lastCol) {
        colStart(k) = p.toInt
        colLen(k) = len.toInt
      }
      p += len
      if (p > end) {
        throw new MdsException(s"corrupt MDS shard $where: sample $i has columns running past its end " +
          s"(${p - start} > ${end - start} bytes); the shard does not match the index's column encodings")
      }
      k += 1
    }
    if (p != end) {
      throw new MdsException(s"corrupt MDS shard $where: sample $i has ${end - start} bytes, but its column sizes " +
        s"add up to ${p - start}; the shard does not match the index's column encodings")
    }
    var m = 0
    val maskStart = if (needMask) colStart(layout.nullMaskIndex) else 0
    while (m < setters.length) {
      val bit = maskBit(m)
      if (bit >= 0 && (b(maskStart + (bit >> 3)) & (1 << (bit & 7))) != 0) row.setNullAt(m)
      else {
        val s = storageIdx(m)
        try setters(m)(b, colStart(s), colLen(s), row, m)
        catch {
          case e: MdsException => throw new MdsException(s"${e.getMessage} (sample $i of $where)", e)
          case e: RuntimeException => throw new MdsException(s"column '${specs(m).name}': cannot decode sample $i of $where: $e", e)
        }
      }
      m += 1
    }
    row
  }

  private def len0(start: Int, end: Int): Boolean = end - start < 4 * numVar
}

object MdsDeserializer {
  /** Decodes the value at bytes[off, off+len) into `row(ordinal)`. */
  type Setter = (Array[Byte], Int, Int, InternalRow, Int) => Unit
  /** Decodes the value at bytes[off, off+len) into a Catalyst value. */
  type Value = (Array[Byte], Int, Int) => Any

  private def fromValue(v: Value): Setter = (b, o, l, r, i) => r.update(i, v(b, o, l))

  /** Integer reader of an integer dtype (uint64 as its signed bits). */
  private def longReader(d: DType): (Array[Byte], Int) => Long = d match {
    case DType.Int8 => (b, o) => b(o).toLong
    case DType.UInt8 => (b, o) => (b(o) & 0xff).toLong
    case DType.Int16 => (b, o) => LE.i16(b, o).toLong
    case DType.UInt16 => (b, o) => LE.u16(b, o).toLong
    case DType.Int32 => (b, o) => LE.i32(b, o).toLong
    case DType.UInt32 => (b, o) => LE.u32(b, o)
    case _ => (b, o) => LE.i64(b, o)
  }

  private def doubleReader(d: DType): (Array[Byte], Int) => Double = d match {
    case DType.Float16 => (b, o) => LE.f16(b, o).toDouble
    case DType.Float32 => (b, o) => LE.f32(b, o).toDouble
    case DType.Float64 => (b, o) => LE.f64(b, o)
    case DType.UInt64 => (b, o) => unsigned(LE.i64(b, o)).doubleValue()
    case _ => val r = longReader(d); (b, o) => r(b, o).toDouble
  }

  private def unsigned(v: Long): BigInteger =
    if (v >= 0) BigInteger.valueOf(v) else BigInteger.valueOf(v & Long.MaxValue).setBit(63)

  private def text(b: Array[Byte], o: Int, l: Int) = new String(b, o, l, StandardCharsets.UTF_8)

  private def pyFloat(s: String): Double = s.trim match {
    case "nan" | "NaN" | "-nan" => Double.NaN
    case "inf" | "Infinity" => Double.PositiveInfinity
    case "-inf" | "-Infinity" => Double.NegativeInfinity
    case t => t.toDouble
  }

  private def cannot(col: String, enc: MdsEncoding, t: DataType) = new MdsException(
    s"column '$col' is stored as '${enc.name}' and cannot be read as ${t.sql}; read it with its stored type or as binary " +
      "(the stored bytes)")

  private def decimalOf(col: String, bd: JBigDecimal, d: DecimalType): Decimal = {
    val dec = Decimal(bd)
    if (!dec.changePrecision(d.precision, d.scale)) {
      throw new MdsException(s"column '$col': value $bd does not fit ${d.sql}")
    }
    dec
  }

  /** Setter of an integer-valued stored value `get` into logical type `t`. */
  private def fromLong(col: String, enc: MdsEncoding, t: DataType, get: (Array[Byte], Int, Int) => Long, unsignedBits: Boolean): Setter = t match {
    case BooleanType => (b, o, l, r, i) => r.setBoolean(i, get(b, o, l) != 0)
    case ByteType => (b, o, l, r, i) => r.setByte(i, get(b, o, l).toByte)
    case ShortType => (b, o, l, r, i) => r.setShort(i, get(b, o, l).toShort)
    case IntegerType | DateType | _: YearMonthIntervalType => (b, o, l, r, i) => r.setInt(i, get(b, o, l).toInt)
    case LongType | TimestampType | TimestampNTZType | _: DayTimeIntervalType => (b, o, l, r, i) => r.setLong(i, get(b, o, l))
    case FloatType => (b, o, l, r, i) => r.setFloat(i, get(b, o, l).toFloat)
    case DoubleType => (b, o, l, r, i) => r.setDouble(i, get(b, o, l).toDouble)
    case d: DecimalType => (b, o, l, r, i) => {
      val v = get(b, o, l)
      r.update(i, decimalOf(col, new JBigDecimal(if (unsignedBits) unsigned(v) else BigInteger.valueOf(v)), d))
    }
    case _: StringType => (b, o, l, r, i) => {
      val v = get(b, o, l)
      r.update(i, UTF8String.fromString(if (unsignedBits) unsigned(v).toString else v.toString))
    }
    case _ => throw cannot(col, enc, t)
  }

  private def fromDouble(col: String, enc: MdsEncoding, t: DataType, get: (Array[Byte], Int, Int) => Double): Setter = t match {
    case FloatType => (b, o, l, r, i) => r.setFloat(i, get(b, o, l).toFloat)
    case DoubleType => (b, o, l, r, i) => r.setDouble(i, get(b, o, l))
    case _: StringType => (b, o, l, r, i) => r.update(i, UTF8String.fromString(PyJson.pyStr(get(b, o, l))))
    case _ => throw cannot(col, enc, t)
  }

  def setter(col: String, enc: MdsEncoding, t: DataType): Setter = (enc, t) match {
    case (_, BinaryType) => (b, o, l, r, i) => r.update(i, java.util.Arrays.copyOfRange(b, o, o + l))
    // fast paths
    case (Num(DType.Int64), LongType | TimestampType | TimestampNTZType | _: DayTimeIntervalType) => (b, o, _, r, i) => r.setLong(i, LE.i64(b, o))
    case (Num(DType.Int32), IntegerType | DateType | _: YearMonthIntervalType) => (b, o, _, r, i) => r.setInt(i, LE.i32(b, o))
    case (Num(DType.Float64), DoubleType) => (b, o, _, r, i) => r.setDouble(i, LE.f64(b, o))
    case (Num(DType.Float32), FloatType) => (b, o, _, r, i) => r.setFloat(i, LE.f32(b, o))
    case (Num(d), _) if d.isInteger =>
      val rd = longReader(d)
      fromLong(col, enc, t, (b, o, _) => rd(b, o), d == DType.UInt64)
    case (Num(d), _) =>
      val rd = doubleReader(d)
      fromDouble(col, enc, t, (b, o, _) => rd(b, o))
    case (PyInt, _) => fromLong(col, enc, t, (b, o, _) => LE.i64(b, o), unsignedBits = false)
    case (StrInt, _: StringType | _: DecimalType) => fromValue((b, o, l) => t match {
      case d: DecimalType => decimalOf(col, new JBigDecimal(text(b, o, l).trim), d)
      case _ => UTF8String.fromBytes(b, o, l)
    })
    case (StrInt, _) => fromLong(col, enc, t, (b, o, l) => {
      val s = text(b, o, l).trim
      try s.toLong catch {
        case _: NumberFormatException => throw new MdsException(s"column '$col': str_int value $s does not fit a 64-bit integer; read it as string")
      }
    }, unsignedBits = false)
    case (StrFloat, _) => fromDouble(col, enc, t, (b, o, l) => pyFloat(text(b, o, l)))
    case (StrDecimal, d: DecimalType) => fromValue((b, o, l) => decimalOf(col, new JBigDecimal(text(b, o, l).trim), d))
    case (Str | Json | StrDecimal | StrInt | StrFloat | Blob(_), _: StringType) =>
      // Zero-copy view of the shard buffer: the row is copied into an UnsafeRow before the next one.
      (b, o, l, r, i) => r.update(i, UTF8String.fromAddress(b, Platform.BYTE_ARRAY_OFFSET + o, l))
    case (Json, _) =>
      val conv = JsonReader.forType(t, col)
      fromValue((b, o, l) => conv(PyJson.parse(b, o, l)))
    case (ImageList(_) | JpegArray(_), ArrayType(BinaryType, _)) =>
      val list = enc.isInstanceOf[ImageList]
      fromValue((b, o, l) => {
        var p = if (list) o + 4 else o
        val n = LE.i32(b, p); p += 4
        if (n < 0 || p + 4L * n > o + l) throw new MdsException(s"column '$col': corrupt ${enc.name} value (bad element count $n)")
        var data = p + 4 * n
        val out = new Array[Any](n)
        var k = 0
        while (k < n) {
          val len = LE.i32(b, p + 4 * k)
          if (len < 0 || data + len > o + l) throw new MdsException(s"column '$col': corrupt ${enc.name} value (element $k overruns)")
          out(k) = java.util.Arrays.copyOfRange(b, data, data + len)
          data += len
          k += 1
        }
        new GenericArrayData(out)
      })
    case (nd: NdArray, at: ArrayType) if SchemaConverter.numericArray(at).isDefined || isUInt64Array(at) =>
      fromValue(new NdArrayReader(col, nd, at).read)
    case _ => throw cannot(col, enc, t)
  }

  /** numpy's `can_cast(from, to, "safe")` for the MDS dtypes. */
  def safeCast(from: DType, to: DType): Boolean =
    if (from == to) true
    else if (from.isFloat) to.isFloat && from.size <= to.size
    else if (to.isFloat) from.size < to.size || (to == DType.Float16 && from.size == 1)
    else if (to.signed) if (from.signed) from.size <= to.size else from.size < to.size
    else !from.signed && from.size <= to.size

  private def isUInt64Array(t: DataType): Boolean = t match {
    case ArrayType(_: DecimalType, _) => true
    case ArrayType(a: ArrayType, _) => isUInt64Array(a)
    case _ => false
  }

  /** The most nested arrays (all levels but the innermost) one ndarray value may make beyond its payload's size
   * (only values with a zero dimension can have more arrays than bytes). */
  val MaxNestedArrays: Long = 1L << 24

  /** Parses an ndarray value and builds (nested) Catalyst arrays of the target type. */
  final class NdArrayReader(col: String, enc: NdArray, at: ArrayType) {
    private val (depth, leaf) = {
      def walk(t: DataType, d: Int): (Int, DataType) = t match { case ArrayType(e, _) => walk(e, d + 1); case x => (d, x) }
      walk(at, 0)
    }
    private val shapeBuf = new Array[Int](64)
    // The dtype rows of this column are expected to have; another one must cast safely (numpy rules).
    private val columnDType: DType = enc.dtype.orElse(SchemaConverter.dtypeOf(leaf)).getOrElse(DType.UInt64)

    private def bad(msg: String) = new MdsException(s"column '$col' (encoding ${enc.name}): $msg")

    val read: Value = (b, o, l) => {
      var p = o
      val dtype = enc.dtype.getOrElse {
        val c = b(p) & 0xff; p += 1
        DType.fromCode(c).getOrElse(throw bad(s"unknown dtype code $c"))
      }
      val ndim = enc.shape match {
        case Some(sh) => System.arraycopy(sh, 0, shapeBuf, 0, sh.length); sh.length
        case None =>
          val h = b(p) & 0xff; p += 1
          val nd = h >> 2
          val code = h & 3
          var k = 0
          while (k < nd) {
            val v: Long = code match {
              case 0 => b(p) & 0xff
              case 1 => LE.u16(b, p)
              case 2 => LE.u32(b, p)
              case _ => LE.i64(b, p)
            }
            if (v < 0 || v > Int.MaxValue) throw bad(s"dimension $v is too large")
            shapeBuf(k) = v.toInt
            p += 1 << code
            k += 1
          }
          nd
      }
      if (dtype != columnDType && !MdsDeserializer.safeCast(dtype, columnDType)) {
        throw bad(s"a value has dtype ${dtype.name}, which does not cast safely to the column's ${columnDType.name} " +
          s"(${at.sql}); read this column as binary (the stored bytes) with a user-given schema")
      }
      // Element counts of the nested arrays built per level: bounded before anything is allocated, so
      // that shapes whose product overflows, or that have a zero dimension after huge ones, fail.
      var n = 1L
      var k = 0
      while (k < ndim) {
        if (k < ndim - 1 && n * shapeBuf(k) > math.max(MaxNestedArrays, l.toLong)) {
          throw bad(s"a value of shape (${shapeBuf.take(ndim).mkString(", ")}) would make ${n * shapeBuf(k)} nested arrays " +
            s"for a payload of $l bytes; the shard is corrupt")
        }
        n *= shapeBuf(k)
        if (n > Int.MaxValue) throw bad(s"a value of shape (${shapeBuf.take(ndim).mkString(", ")}) has more than 2**31 elements")
        k += 1
      }
      if (p + n * dtype.size != o + l) throw bad(s"a value of shape (${shapeBuf.take(ndim).mkString(", ")}) and dtype ${dtype.name} " +
        s"needs ${n * dtype.size} bytes but has ${o + l - p}")
      if (depth == ndim) build(b, p, dtype, 0, ndim)
      else if (depth == 1) leafArray(b, p, dtype, n.toInt)
      else throw bad(s"a value has $ndim dimensions (dtype ${dtype.name}) but the column is read as ${at.sql} ($depth dimensions, " +
        "from the dataset's first sample or schema); read this column as binary (the stored bytes) with a user-given schema")
    }

    private def build(b: Array[Byte], p: Int, dtype: DType, level: Int, ndim: Int): ArrayData = {
      if (level == ndim - 1) leafArray(b, p, dtype, shapeBuf(level))
      else {
        val n = shapeBuf(level)
        var stride = dtype.size.toLong
        var k = level + 1
        while (k < ndim) { stride *= shapeBuf(k); k += 1 }
        val out = new Array[Any](n)
        var i = 0
        while (i < n) { out(i) = build(b, (p + i * stride).toInt, dtype, level + 1, ndim); i += 1 }
        new GenericArrayData(out)
      }
    }

    private def leafArray(b: Array[Byte], p: Int, dtype: DType, n: Int): ArrayData = {
      val same = SchemaConverter.dtypeOf(leaf).contains(dtype) && leaf != BooleanType
      if (same) UnsafeArrayData.fromPrimitiveArray(b, Platform.BYTE_ARRAY_OFFSET + p, n, dtype.size)
      else leaf match {
        case BooleanType =>
          val r = longReader(dtype); val a = new Array[Boolean](n)
          var i = 0; while (i < n) { a(i) = r(b, p + i * dtype.size) != 0; i += 1 }
          UnsafeArrayData.fromPrimitiveArray(a)
        case ByteType | ShortType | IntegerType | LongType =>
          val (lo, hi) = leaf match {
            case ByteType => (Byte.MinValue.toLong, Byte.MaxValue.toLong)
            case ShortType => (Short.MinValue.toLong, Short.MaxValue.toLong)
            case IntegerType => (Int.MinValue.toLong, Int.MaxValue.toLong)
            case _ => (Long.MinValue, Long.MaxValue)
          }
          val raw: (Array[Byte], Int) => Long =
            if (dtype.isInteger) longReader(dtype) else { val d = doubleReader(dtype); (b, o) => d(b, o).toLong }
          // A value that does not fit the column's type fails instead of wrapping around.
          val r: (Array[Byte], Int) => Long = (b, o) => {
            val v = raw(b, o)
            if (v < lo || v > hi || (dtype == DType.UInt64 && v < 0)) {
              throw bad(s"value ${if (dtype == DType.UInt64) unsigned(v) else v} (dtype ${dtype.name}) does not fit " +
                s"${leaf.sql}; read this column as binary (the stored bytes) with a user-given schema")
            }
            v
          }
          leaf match {
            case ByteType => val a = new Array[Byte](n); var i = 0; while (i < n) { a(i) = r(b, p + i * dtype.size).toByte; i += 1 }; UnsafeArrayData.fromPrimitiveArray(a)
            case ShortType => val a = new Array[Short](n); var i = 0; while (i < n) { a(i) = r(b, p + i * dtype.size).toShort; i += 1 }; UnsafeArrayData.fromPrimitiveArray(a)
            case IntegerType => val a = new Array[Int](n); var i = 0; while (i < n) { a(i) = r(b, p + i * dtype.size).toInt; i += 1 }; UnsafeArrayData.fromPrimitiveArray(a)
            case _ => val a = new Array[Long](n); var i = 0; while (i < n) { a(i) = r(b, p + i * dtype.size); i += 1 }; UnsafeArrayData.fromPrimitiveArray(a)
          }
        case FloatType | DoubleType =>
          val r = doubleReader(dtype)
          if (leaf == FloatType) { val a = new Array[Float](n); var i = 0; while (i < n) { a(i) = r(b, p + i * dtype.size).toFloat; i += 1 }; UnsafeArrayData.fromPrimitiveArray(a) }
          else { val a = new Array[Double](n); var i = 0; while (i < n) { a(i) = r(b, p + i * dtype.size); i += 1 }; UnsafeArrayData.fromPrimitiveArray(a) }
        case d: DecimalType if dtype.isInteger =>
          val r = longReader(dtype)
          val out = new Array[Any](n)
          var i = 0
          while (i < n) {
            val v = r(b, p + i * dtype.size)
            out(i) = decimalOf(col, new JBigDecimal(if (dtype == DType.UInt64) unsigned(v) else BigInteger.valueOf(v)), d)
            i += 1
          }
          new GenericArrayData(out)
        case _ => throw bad(s"values of dtype ${dtype.name} cannot be read as ${leaf.sql}; read the column as binary or with its stored type")
      }
    }
  }
}
