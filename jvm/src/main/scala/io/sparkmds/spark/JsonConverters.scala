package io.sparkmds.spark

import java.util.Base64

import scala.jdk.CollectionConverters._

import com.fasterxml.jackson.databind.JsonNode
import io.sparkmds.format.{ByteBuf, MdsException, PyJson}
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.catalyst.expressions.SpecializedGetters
import org.apache.spark.sql.catalyst.util.{ArrayBasedMapData, GenericArrayData}
import org.apache.spark.sql.types._
import org.apache.spark.unsafe.types.UTF8String

/**
 * Writes Catalyst values of nested types as the JSON text Python's `json.dumps` produces for the
 * equivalent Python values (docs/format.md section 5). One writer function is built per type.
 */
object JsonWriter {
  /** Writes the non-null value at `ordinal` of `g`. */
  type W = (SpecializedGetters, Int, ByteBuf) => Unit

  private val hex = "0123456789abcdef".toCharArray

  def quote(s: String, out: ByteBuf): Unit = {
    out.ensure(s.length + 2)
    out.putByte('"')
    var i = 0
    val n = s.length
    while (i < n) {
      val c = s.charAt(i)
      if (c >= 0x20 && c <= 0x7e && c != '"' && c != '\\') out.putByte(c)
      else c match {
        case '"' => out.putAscii("\\\"")
        case '\\' => out.putAscii("\\\\")
        case '\n' => out.putAscii("\\n")
        case '\r' => out.putAscii("\\r")
        case '\t' => out.putAscii("\\t")
        case '\b' => out.putAscii("\\b")
        case '\f' => out.putAscii("\\f")
        case _ =>
          out.putAscii("\\u"); out.putByte(hex((c >> 12) & 0xf)); out.putByte(hex((c >> 8) & 0xf))
          out.putByte(hex((c >> 4) & 0xf)); out.putByte(hex(c & 0xf))
      }
      i += 1
    }
    out.putByte('"')
  }

  def double(d: Double, out: ByteBuf): Unit =
    if (d.isNaN) out.putAscii("\"NaN\"")
    else if (d.isInfinite) out.putAscii(if (d > 0) "\"Infinity\"" else "\"-Infinity\"")
    else out.putAscii(PyJson.floatRepr(d))

  def forType(t: DataType): W = t match {
    case BooleanType => (g, i, o) => o.putAscii(if (g.getBoolean(i)) "true" else "false")
    case ByteType => (g, i, o) => o.putAscii(g.getByte(i).toString)
    case ShortType => (g, i, o) => o.putAscii(g.getShort(i).toString)
    case IntegerType | DateType | _: YearMonthIntervalType => (g, i, o) => o.putAscii(g.getInt(i).toString)
    case LongType | TimestampType | TimestampNTZType | _: DayTimeIntervalType => (g, i, o) => o.putAscii(g.getLong(i).toString)
    case FloatType => (g, i, o) => double(g.getFloat(i).toDouble, o)
    case DoubleType => (g, i, o) => double(g.getDouble(i), o)
    case d: DecimalType => (g, i, o) => o.putAscii("\"" + g.getDecimal(i, d.precision, d.scale).toJavaBigDecimal.toPlainString + "\"")
    case _: StringType => (g, i, o) => quote(g.getUTF8String(i).toString, o)
    case BinaryType => (g, i, o) => o.putAscii("\"" + Base64.getEncoder.encodeToString(g.getBinary(i)) + "\"")
    case ArrayType(et, _) =>
      val w = forType(et)
      (g, i, o) => {
        val a = g.getArray(i)
        val n = a.numElements()
        o.putByte('[')
        var k = 0
        while (k < n) {
          if (k > 0) o.putAscii(", ")
          if (a.isNullAt(k)) o.putAscii("null") else w(a, k, o)
          k += 1
        }
        o.putByte(']')
      }
    case MapType(kt, vt, _) =>
      val kw = forType(kt)
      val vw = forType(vt)
      val stringKeys = kt.isInstanceOf[StringType]
      (g, i, o) => {
        val m = g.getMap(i)
        val ks = m.keyArray()
        val vs = m.valueArray()
        val n = m.numElements()
        o.putByte(if (stringKeys) '{' else '[')
        var k = 0
        while (k < n) {
          if (k > 0) o.putAscii(", ")
          if (stringKeys) { kw(ks, k, o); o.putAscii(": ") }
          else { o.putByte('['); kw(ks, k, o); o.putAscii(", ") }
          if (vs.isNullAt(k)) o.putAscii("null") else vw(vs, k, o)
          if (!stringKeys) o.putByte(']')
          k += 1
        }
        o.putByte(if (stringKeys) '}' else ']')
      }
    case st: StructType =>
      val ws = st.fields.map(f => forType(f.dataType))
      val keys = st.fields.map { f => val b = new ByteBuf(f.name.length + 4); quote(f.name, b); b.toByteArray }
      val n = st.length
      (g, i, o) => {
        val r = g.getStruct(i, n)
        o.putByte('{')
        var k = 0
        while (k < n) {
          if (k > 0) o.putAscii(", ")
          o.putBytes(keys(k)); o.putAscii(": ")
          if (r.isNullAt(k)) o.putAscii("null") else ws(k)(r, k, o)
          k += 1
        }
        o.putByte('}')
      }
    case other => throw new MdsException(s"type ${other.sql} cannot be stored as JSON")
  }
}

/** Converts parsed JSON back into Catalyst values of a nested type; one converter per type. */
object JsonReader {
  type R = JsonNode => Any

  private def fail(col: String, t: DataType, n: JsonNode): Nothing = {
    val text = n.toString
    throw new MdsException(s"column '$col': JSON value ${if (text.length > 200) text.take(200) + "..." else text} " +
      s"cannot be read as ${t.sql}")
  }

  private def toDouble(col: String, t: DataType, n: JsonNode): Double =
    if (n.isNumber) n.doubleValue()
    else if (n.isTextual) n.textValue() match {
      case "NaN" => Double.NaN
      case "Infinity" => Double.PositiveInfinity
      case "-Infinity" => Double.NegativeInfinity
      case _ => fail(col, t, n)
    } else fail(col, t, n)

  private def toLong(col: String, t: DataType, n: JsonNode, lo: Long, hi: Long): Long = {
    if (!n.isIntegralNumber || !n.canConvertToLong) fail(col, t, n)
    val v = n.longValue()
    if (v < lo || v > hi) fail(col, t, n)
    v
  }

  def forType(t: DataType, col: String): R = {
    val r: R = t match {
      case BooleanType => n => if (n.isBoolean) n.booleanValue() else fail(col, t, n)
      case ByteType => n => toLong(col, t, n, Byte.MinValue, Byte.MaxValue).toByte
      case ShortType => n => toLong(col, t, n, Short.MinValue, Short.MaxValue).toShort
      case IntegerType | DateType | _: YearMonthIntervalType => n => toLong(col, t, n, Int.MinValue, Int.MaxValue).toInt
      case LongType | TimestampType | TimestampNTZType | _: DayTimeIntervalType => n => toLong(col, t, n, Long.MinValue, Long.MaxValue)
      case FloatType => n => toDouble(col, t, n).toFloat
      case DoubleType => n => toDouble(col, t, n)
      case d: DecimalType => n => {
        val bd = if (n.isTextual) new java.math.BigDecimal(n.textValue()) else if (n.isNumber) n.decimalValue() else fail(col, t, n)
        val dec = org.apache.spark.sql.types.Decimal(bd)
        if (!dec.changePrecision(d.precision, d.scale)) fail(col, t, n)
        dec
      }
      case _: StringType => n => UTF8String.fromString(if (n.isTextual) n.textValue() else PyJson.dumps(n, sortKeys = false))
      case BinaryType => n => if (n.isTextual) Base64.getDecoder.decode(n.textValue()) else fail(col, t, n)
      case ArrayType(et, _) =>
        val e = forType(et, col)
        n => {
          if (!n.isArray) fail(col, t, n)
          val out = new Array[Any](n.size())
          var i = 0
          while (i < out.length) { out(i) = e(n.get(i)); i += 1 }
          new GenericArrayData(out)
        }
      case MapType(kt, vt, _) =>
        val kr = forType(kt, col)
        val vr = forType(vt, col)
        n => {
          if (n.isObject) {
            val ks = new Array[Any](n.size()); val vs = new Array[Any](n.size())
            var i = 0
            n.properties().asScala.foreach { e =>
              ks(i) = kr(com.fasterxml.jackson.databind.node.TextNode.valueOf(e.getKey)); vs(i) = vr(e.getValue); i += 1
            }
            new ArrayBasedMapData(new GenericArrayData(ks), new GenericArrayData(vs))
          } else if (n.isArray) {
            val ks = new Array[Any](n.size()); val vs = new Array[Any](n.size())
            var i = 0
            while (i < ks.length) {
              val p = n.get(i)
              if (!p.isArray || p.size() != 2) fail(col, t, n)
              ks(i) = kr(p.get(0)); vs(i) = vr(p.get(1)); i += 1
            }
            new ArrayBasedMapData(new GenericArrayData(ks), new GenericArrayData(vs))
          } else fail(col, t, n)
        }
      case st: StructType =>
        val rs = st.fields.map(f => forType(f.dataType, col))
        val names = st.fieldNames
        n => {
          if (!n.isObject) fail(col, t, n)
          val vals = new Array[Any](names.length)
          var i = 0
          while (i < names.length) { vals(i) = rs(i)(n.get(names(i))); i += 1 }
          InternalRow.fromSeq(vals.toIndexedSeq)
        }
      case other => throw new MdsException(s"column '$col': type ${other.sql} cannot be read from JSON")
    }
    n => if (n == null || n.isNull || n.isMissingNode) null else r(n)
  }

}
