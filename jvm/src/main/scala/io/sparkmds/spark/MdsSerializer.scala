package io.sparkmds.spark

import java.nio.charset.StandardCharsets

import io.sparkmds.format._
import io.sparkmds.format.MdsEncoding._
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.catalyst.expressions.{SpecializedGetters, UnsafeArrayData}
import org.apache.spark.sql.catalyst.util.ArrayData
import org.apache.spark.sql.types._
import org.apache.spark.unsafe.Platform
import org.apache.spark.unsafe.types.UTF8String

/**
 * Encodes InternalRows of `inputSchema` as MDS samples of `layout`. Column writers are built once
 * per schema; a row is written straight into the shard buffer with no per-row allocation for
 * fixed-size, string and numeric-array columns.
 */
final class MdsSerializer(layout: MdsLayout, inputSchema: StructType) {
  import MdsSerializer._

  private val numStorage = layout.storageNames.length
  /** Per storage column: the value writer (null for the mask column). */
  private val writers: Array[ColumnWriter] = Array.tabulate(numStorage) { k =>
    if (k == layout.nullMaskIndex) null
    else {
      val spec = layout.columns.find(_.storageIndex == k).get
      val ord = inputSchema.fieldNames.indexOf(spec.name)
      if (ord < 0) throw new MdsException(s"the data has no column '${spec.name}'")
      new ColumnWriter(spec, ord, valueWriter(spec.name, inputSchema(ord).dataType, spec.encoding),
        zeroWriter(spec.encoding, inputSchema(ord).dataType), layout.nullMaskIndex >= 0 && spec.field.nullable)
    }
  }
  private val varSlot: Array[Int] = {
    var v = 0
    Array.tabulate(numStorage)(k => if (layout.storageEncodings(k).isFixed) -1 else { v += 1; v - 1 })
  }
  private val numVar = varSlot.count(_ >= 0)
  private val fixedSize: Array[Int] = layout.storageEncodings.map(_.fixedSize).toArray
  private val mask = new Array[Byte](layout.nullMaskBytes)
  private val maskCols: Array[ColumnWriter] = writers.filter(w => w != null && w.masked)

  /** Appends one sample for `row` to the shard writer. */
  def write(row: InternalRow, sw: ShardWriter): Unit = {
    val out = sw.data
    sw.beginSample()
    val prefix = out.skip(4 * numVar)
    if (layout.nullMaskIndex >= 0) {
      java.util.Arrays.fill(mask, 0.toByte)
      var m = 0
      while (m < maskCols.length) {
        val w = maskCols(m)
        if (row.isNullAt(w.ordinal)) {
          val fi = w.spec.fieldIndex
          mask(fi >> 3) = (mask(fi >> 3) | (1 << (fi & 7))).toByte
        }
        m += 1
      }
    }
    var k = 0
    while (k < numStorage) {
      val start = out.position
      val w = writers(k)
      if (w == null) out.putBytes(mask)
      else if (row.isNullAt(w.ordinal)) {
        if (!w.masked) throw nullError(w.spec)
        w.zero(out)
      } else w.value(row, w.ordinal, out)
      val len = out.position - start
      val slot = varSlot(k)
      if (slot >= 0) out.putIntAt(prefix + 4 * slot, len)
      else if (len != fixedSize(k)) {
        throw new MdsException(s"column '${layout.storageNames(k)}': encoded ${len} bytes but encoding " +
          s"'${layout.storageEncodings(k).name}' has a fixed size of ${fixedSize(k)}")
      }
      k += 1
    }
    sw.endSample()
  }

  private def nullError(spec: ColumnSpec): MdsException = new MdsException(
    if (layout.nullMaskIndex < 0 && layout.hasLogicalSchema && spec.field.nullable)
      s"column '${spec.name}' holds a null but option nulls=error forbids nulls; drop or fill the nulls " +
        "(e.g. df.na.fill) or write with nulls=mask (the default)"
    else if (!layout.hasLogicalSchema)
      s"column '${spec.name}' holds a null but the existing dataset has no null mask (it was not written by spark-mds); " +
        "fill the nulls before appending or overwrite the dataset"
    else s"column '${spec.name}' holds a null but it is not nullable in the dataset's schema; fill the nulls or overwrite the dataset")
}

object MdsSerializer {
  type V = (SpecializedGetters, Int, ByteBuf) => Unit

  final class ColumnWriter(val spec: ColumnSpec, val ordinal: Int, val value: V, val zero: ByteBuf => Unit, val masked: Boolean)

  private val utf8Zero = "0".getBytes(StandardCharsets.UTF_8)

  def rangeError(col: String, v: Any, enc: String, lo: Any, hi: Any): MdsException = new MdsException(
    s"column '$col': value $v does not fit encoding '$enc' (range $lo..$hi); choose a wider encoding.$col or fix the value")

  def putUtf8(s: UTF8String, out: ByteBuf): Unit = {
    val n = s.numBytes()
    out.ensure(n)
    Platform.copyMemory(s.getBaseObject, s.getBaseOffset, out.array, Platform.BYTE_ARRAY_OFFSET + out.position, n)
    out.position = out.position + n
  }

  /** Integer value of an integral-like Spark type. */
  private def longGetter(t: DataType): (SpecializedGetters, Int) => Long = t match {
    case ByteType => (g, i) => g.getByte(i).toLong
    case ShortType => (g, i) => g.getShort(i).toLong
    case IntegerType | DateType | _: YearMonthIntervalType => (g, i) => g.getInt(i).toLong
    case LongType | TimestampType | TimestampNTZType | _: DayTimeIntervalType => (g, i) => g.getLong(i)
    case BooleanType => (g, i) => if (g.getBoolean(i)) 1L else 0L
    case _ => null
  }

  private def doubleGetter(t: DataType): (SpecializedGetters, Int) => Double = t match {
    case FloatType => (g, i) => g.getFloat(i).toDouble
    case DoubleType => (g, i) => g.getDouble(i)
    case _ => null
  }

  /** Writes an integer as dtype `d` after a range check. */
  private def putIntegral(col: String, d: DType, v: Long, out: ByteBuf): Unit = {
    if (v < DType.minLong(d) || v > DType.maxLong(d)) throw rangeError(col, v, d.name, DType.minLong(d), if (d == DType.UInt64) "18446744073709551615" else DType.maxLong(d))
    d.size match {
      case 1 => out.putByte(v.toInt)
      case 2 => out.putShort(v.toInt)
      case 4 => out.putInt(v.toInt)
      case 8 => out.putLong(v)
    }
  }

  private def putFloating(d: DType, v: Double, out: ByteBuf): Unit = d match {
    case DType.Float16 => out.putShort(Half.fromFloat(v.toFloat))
    case DType.Float32 => out.putFloat(v.toFloat)
    case _ => out.putDouble(v)
  }

  /** Converts a double to integer dtype `d` only when exact. */
  private def doubleToIntegral(col: String, d: DType, v: Double, out: ByteBuf): Unit = {
    if (v.isNaN || v.isInfinite || v != math.rint(v) || math.abs(v) > 9.2e18) {
      throw new MdsException(s"column '$col': value $v cannot be stored exactly as '${d.name}'; use a floating dtype")
    }
    putIntegral(col, d, v.toLong, out)
  }

  private def checkMagic(col: String, enc: String, b: Array[Byte]): Unit = {
    val ok = enc match {
      case "jpeg" => b.length >= 3 && (b(0) & 0xff) == 0xff && (b(1) & 0xff) == 0xd8 && (b(2) & 0xff) == 0xff
      case "png" => b.length >= 8 && (b(0) & 0xff) == 0x89 && b(1) == 'P' && b(2) == 'N' && b(3) == 'G'
      case _ => true
    }
    if (!ok) throw new MdsException(s"column '$col': a value is not a valid $enc image (wrong magic bytes); " +
      s"store encoded $enc bytes or use encoding.$col=bytes")
  }

  def valueWriter(col: String, t: DataType, enc: MdsEncoding): V = (enc, t) match {
    // fast paths for the default encodings
    case (Num(DType.Int8), ByteType) => (g, i, o) => o.putByte(g.getByte(i))
    case (Num(DType.Int16), ShortType) => (g, i, o) => o.putShort(g.getShort(i))
    case (Num(DType.Int32), IntegerType | DateType | _: YearMonthIntervalType) => (g, i, o) => o.putInt(g.getInt(i))
    case (Num(DType.Int64), LongType | TimestampType | TimestampNTZType | _: DayTimeIntervalType) => (g, i, o) => o.putLong(g.getLong(i))
    case (Num(DType.Float32), FloatType) => (g, i, o) => o.putFloat(g.getFloat(i))
    case (Num(DType.Float64), DoubleType) => (g, i, o) => o.putDouble(g.getDouble(i))
    case (Num(DType.UInt8 | DType.Int8), BooleanType) => (g, i, o) => o.putByte(if (g.getBoolean(i)) 1 else 0)
    case (Num(d), _) if d.isInteger && longGetter(t) != null =>
      val get = longGetter(t)
      (g, i, o) => putIntegral(col, d, get(g, i), o)
    case (Num(DType.UInt64), dt: DecimalType) => (g, i, o) => {
      val v = g.getDecimal(i, dt.precision, dt.scale).toJavaBigDecimal
      if (v.signum() < 0 || v.scale() > 0 && v.stripTrailingZeros().scale() > 0 || v.toBigInteger.bitLength() > 64) {
        throw rangeError(col, v, "uint64", 0, "18446744073709551615")
      }
      o.putLong(v.toBigInteger.longValue())
    }
    case (Num(d), _) if d.isFloat && doubleGetter(t) != null =>
      val get = doubleGetter(t)
      (g, i, o) => putFloating(d, get(g, i), o)
    case (Num(d), _) if d.isFloat && longGetter(t) != null =>
      val get = longGetter(t)
      (g, i, o) => putFloating(d, get(g, i).toDouble, o)
    case (PyInt, _) if longGetter(t) != null =>
      val get = longGetter(t)
      (g, i, o) => o.putLong(get(g, i))
    case (StrInt, _) if longGetter(t) != null =>
      val get = longGetter(t)
      (g, i, o) => o.putAscii(get(g, i).toString)
    case (StrFloat, _) if doubleGetter(t) != null =>
      val get = doubleGetter(t)
      (g, i, o) => o.putAscii(PyJson.pyStr(get(g, i)))
    case (StrDecimal, dt: DecimalType) => (g, i, o) => o.putAscii(g.getDecimal(i, dt.precision, dt.scale).toJavaBigDecimal.toPlainString)
    case (Str | StrDecimal, _: StringType) => (g, i, o) => putUtf8(g.getUTF8String(i), o)
    case (Json, _: StringType) => (g, i, o) => {
      val s = g.getUTF8String(i)
      val bytes = s.getBytes
      try {
        val p = PyJson.mapper.getFactory.createParser(bytes)
        try { while (p.nextToken() != null) {} } finally p.close()
      } catch {
        case e: Exception => throw new MdsException(s"column '$col' (encoding json): value ${s.toString.take(100)} is not valid JSON " +
          s"(${e.getMessage.linesIterator.take(1).mkString}); fix the value or use encoding.$col=str")
      }
      o.putBytes(bytes)
    }
    case (Json, _) => JsonWriter.forType(t)
    case (Blob(kind), BinaryType) => (g, i, o) => { val b = g.getBinary(i); checkMagic(col, kind, b); o.putBytes(b) }
    case (ImageList(_) | JpegArray(_), ArrayType(BinaryType, _)) =>
      val kind = enc.name match { case "list[png]" => "png"; case "list[pil]" => "pil"; case _ => "jpeg" }
      val list = enc.isInstanceOf[ImageList]
      (g, i, o) => {
        val a = g.getArray(i)
        val n = a.numElements()
        if (list) o.putInt(0)
        o.putInt(n)
        val lens = o.skip(4 * n)
        var k = 0
        while (k < n) {
          if (a.isNullAt(k)) throw new MdsException(s"column '$col' (encoding ${enc.name}): an element is null; drop the null elements or use encoding.$col=json")
          val b = a.getBinary(k)
          checkMagic(col, kind, b)
          o.putIntAt(lens + 4 * k, b.length)
          o.putBytes(b)
          k += 1
        }
      }
    case (nd: NdArray, at: ArrayType) if SchemaConverter.numericArray(at).isDefined => new NdArrayWriter(col, at, nd).write
    case _ => throw new MdsException(s"column '$col' of type ${t.sql} cannot be written with encoding '${enc.name}'")
  }

  /** What a null stores (docs/format.md section 3). */
  def zeroWriter(enc: MdsEncoding, t: DataType): ByteBuf => Unit = enc match {
    case Num(d) => val z = new Array[Byte](d.size); o => o.putBytes(z)
    case PyInt => o => o.putLong(0L)
    case Str | Blob(_) => _ => ()
    case StrInt | StrDecimal => o => o.putBytes(utf8Zero)
    case StrFloat => o => o.putAscii("0.0")
    case Json => o => o.putAscii("null")
    case ImageList(_) => o => { o.putInt(0); o.putInt(0) }
    case JpegArray(_) => o => o.putInt(0)
    case nd: NdArray =>
      if (nd.isFixed) { val z = new Array[Byte](nd.fixedSize); o => o.putBytes(z) }
      else {
        val (depth, leaf) = t match {
          case at: ArrayType => SchemaConverter.numericArray(at).getOrElse((1, DoubleType))
          case _ => (1, DoubleType)
        }
        val dtype = nd.dtype.orElse(SchemaConverter.dtypeOf(leaf)).get
        val ndim = nd.shape.map(_.length).getOrElse(depth)
        o => {
          if (nd.dtype.isEmpty) o.putByte(dtype.code)
          if (nd.shape.isEmpty) { o.putByte(ndim << 2); var k = 0; while (k < ndim) { o.putByte(0); k += 1 } }
          else { val z = nd.numElements.get * dtype.size; o.putBytes(new Array[Byte](z)) }
        }
      }
  }

  /** Writes a (nested) numeric array in the reference's ndarray layout. */
  final class NdArrayWriter(col: String, at: ArrayType, enc: NdArray) {
    private val (depth, leaf) = SchemaConverter.numericArray(at).get
    private val dtype: DType = enc.dtype.orElse(SchemaConverter.dtypeOf(leaf)).get
    private val staticShape: Array[Int] = enc.shape.orNull
    private val ndim = if (staticShape != null) staticShape.length else depth
    private val shape = new Array[Int](depth)
    private val bulk = SchemaConverter.dtypeOf(leaf).contains(dtype) && leaf != BooleanType
    private val leafNullable = {
      def walk(t: DataType): Boolean = t match { case ArrayType(e, cn) => cn || walk(e); case _ => false }
      walk(at)
    }
    private val lg = longGetter(leaf)
    private val dg = doubleGetter(leaf)
    if (ndim > 63) throw new MdsException(s"column '$col': ndarray values have at most 63 dimensions")

    private def nullElement(): MdsException = new MdsException(
      s"column '$col' (encoding ${enc.name}): an array element is null, and ndarray cannot hold nulls; fill the nulls " +
        s"(e.g. with transform/coalesce) or write the column as JSON with encoding.$col=json")

    private def putLeaf(a: ArrayData, k: Int, o: ByteBuf): Unit = {
      if (lg != null) {
        val v = lg(a, k)
        if (dtype.isInteger) putIntegral(col, dtype, v, o) else putFloating(dtype, v.toDouble, o)
      } else {
        val v = dg(a, k)
        if (dtype.isFloat) putFloating(dtype, v, o) else doubleToIntegral(col, dtype, v, o)
      }
    }

    private def writeLeaves(a: ArrayData, n: Int, o: ByteBuf): Unit = {
      a match {
        case ua: UnsafeArrayData if bulk =>
          val header = UnsafeArrayData.calculateHeaderPortionInBytes(n)
          if (leafNullable) {
            var w = 0
            val words = (n + 63) / 64
            while (w < words) {
              if (Platform.getLong(ua.getBaseObject, ua.getBaseOffset + 8 + 8L * w) != 0L) throw nullElement()
              w += 1
            }
          }
          val bytes = n * dtype.size
          o.ensure(bytes)
          Platform.copyMemory(ua.getBaseObject, ua.getBaseOffset + header, o.array, Platform.BYTE_ARRAY_OFFSET + o.position, bytes)
          o.position = o.position + bytes
        case _ =>
          var k = 0
          while (k < n) {
            if (a.isNullAt(k)) throw nullElement()
            putLeaf(a, k, o)
            k += 1
          }
      }
    }

    private def writeLevel(a: ArrayData, level: Int, o: ByteBuf): Unit = {
      val n = a.numElements()
      if (n != shape(level)) {
        throw new MdsException(s"column '$col' (encoding ${enc.name}): the array is not rectangular (a dimension-${level} " +
          s"row has $n elements, expected ${shape(level)}); pad the rows or use encoding.$col=json")
      }
      if (level == depth - 1) writeLeaves(a, n, o)
      else {
        var k = 0
        while (k < n) {
          if (a.isNullAt(k)) throw nullElement()
          writeLevel(a.getArray(k), level + 1, o)
          k += 1
        }
      }
    }

    val write: V = (g, i, o) => {
      val a = g.getArray(i)
      // shape from the first element at each level; writeLevel checks every row against it
      var cur = a
      var l = 0
      while (l < depth) {
        if (cur == null) shape(l) = 0
        else {
          shape(l) = cur.numElements()
          cur = if (l < depth - 1 && shape(l) > 0) { if (cur.isNullAt(0)) throw nullElement(); cur.getArray(0) } else null
        }
        l += 1
      }
      if (enc.dtype.isEmpty) o.putByte(dtype.code)
      if (staticShape != null) {
        val ok = if (depth == 1) shape(0) == enc.numElements.get else java.util.Arrays.equals(shape, staticShape)
        if (!ok) {
          throw new MdsException(s"column '$col' (encoding ${enc.name}): a value has shape (${shape.mkString(", ")}), " +
            s"expected (${staticShape.mkString(", ")})${if (depth == 1) s" or ${enc.numElements.get} flat elements" else ""}")
        }
      } else {
        var max = 0L
        var k = 0
        while (k < depth) { if (shape(k) > max) max = shape(k); k += 1 }
        val code = MdsEncoding.shapeCode(max)
        o.putByte((ndim << 2) | code)
        k = 0
        while (k < depth) {
          code match {
            case 0 => o.putByte(shape(k))
            case 1 => o.putShort(shape(k))
            case 2 => o.putInt(shape(k))
            case _ => o.putLong(shape(k).toLong)
          }
          k += 1
        }
      }
      writeLevel(a, 0, o)
    }
  }
}
