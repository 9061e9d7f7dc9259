package io.sparkmds.format

import java.math.{BigDecimal => JBigDecimal, MathContext, RoundingMode}

import scala.jdk.CollectionConverters._

import com.fasterxml.jackson.databind.{DeserializationFeature, JsonNode, ObjectMapper}
import com.fasterxml.jackson.databind.node.JsonNodeType

/**
 * JSON text exactly as Python's `json.dumps` writes it with default settings: `", "` and `": "`
 * separators, ASCII escapes (`ensure_ascii=True`), `repr` of floats; optionally sorted keys.
 * The reference writes `index.json`, the shard config and `json` columns this way.
 */
object PyJson {
  val mapper: ObjectMapper = {
    // Python writes NaN / Infinity bare
    val m = new ObjectMapper(new com.fasterxml.jackson.core.JsonFactoryBuilder()
      .enable(com.fasterxml.jackson.core.json.JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS).build())
    m.enable(DeserializationFeature.USE_BIG_DECIMAL_FOR_FLOATS)
    m.enable(DeserializationFeature.USE_BIG_INTEGER_FOR_INTS)
    m
  }

  def parse(bytes: Array[Byte], off: Int, len: Int): JsonNode = mapper.readTree(bytes, off, len)
  def parse(text: String): JsonNode = mapper.readTree(text)

  private val hex = "0123456789abcdef".toCharArray

  /** Appends `s` as a JSON string literal with Python's ASCII escaping. */
  def quote(s: String, sb: java.lang.StringBuilder): Unit = {
    sb.append('"')
    var i = 0
    val n = s.length
    while (i < n) {
      val c = s.charAt(i)
      c match {
        case '"' => sb.append("\\\"")
        case '\\' => sb.append("\\\\")
        case '\n' => sb.append("\\n")
        case '\r' => sb.append("\\r")
        case '\t' => sb.append("\\t")
        case '\b' => sb.append("\\b")
        case '\f' => sb.append("\\f")
        case _ =>
          if (c < 0x20 || c > 0x7e) {
            sb.append("\\u").append(hex((c >> 12) & 0xf)).append(hex((c >> 8) & 0xf))
              .append(hex((c >> 4) & 0xf)).append(hex(c & 0xf))
          } else sb.append(c)
      }
      i += 1
    }
    sb.append('"')
  }

  def quote(s: String): String = { val sb = new java.lang.StringBuilder(s.length + 2); quote(s, sb); sb.toString }

  /** Python `repr(float)`: shortest round-tripping digits, fixed notation for 1e-4 <= |x| < 1e16. */
  def floatRepr(d: Double): String = {
    if (d.isNaN) return "NaN"
    if (d.isInfinite) return if (d > 0) "Infinity" else "-Infinity"
    if (d == 0.0) return if (1.0 / d < 0) "-0.0" else "0.0"
    // Digits and exponent from Java's shortest-repr attempt; JDK 17 is not always shortest, so
    // trim with correctly rounded candidates when it printed 16+ digits.
    val bd0 = new JBigDecimal(java.lang.Double.toString(math.abs(d)))
    var bd = bd0.stripTrailingZeros()
    val p = bd.precision()
    if (p >= 16) {
      val exact = new JBigDecimal(math.abs(d))
      var k = 15
      var found = false
      while (k < p && !found) {
        val cand = exact.round(new MathContext(k, RoundingMode.HALF_EVEN))
        if (cand.doubleValue() == math.abs(d)) { bd = cand.stripTrailingZeros(); found = true }
        k += 1
      }
    }
    val digits = bd.unscaledValue().toString
    val exp10 = digits.length - 1 - bd.scale() // value = d.ddd * 10^exp10
    val sb = new java.lang.StringBuilder(32)
    if (d < 0) sb.append('-')
    if (exp10 >= 16 || exp10 < -4) {
      sb.append(digits.charAt(0))
      if (digits.length > 1) sb.append('.').append(digits, 1, digits.length)
      sb.append('e').append(if (exp10 < 0) '-' else '+')
      val e = math.abs(exp10)
      if (e < 10) sb.append('0')
      sb.append(e)
    } else if (exp10 < 0) {
      sb.append("0.")
      var z = -exp10 - 1
      while (z > 0) { sb.append('0'); z -= 1 }
      sb.append(digits)
    } else if (digits.length <= exp10 + 1) {
      sb.append(digits)
      var z = exp10 + 1 - digits.length
      while (z > 0) { sb.append('0'); z -= 1 }
      sb.append(".0")
    } else {
      sb.append(digits, 0, exp10 + 1).append('.').append(digits, exp10 + 1, digits.length)
    }
    sb.toString
  }

  /** Python `str(float)` as used by the `str_float` encoding (`nan`, `inf`, `-inf`). */
  def pyStr(d: Double): String =
    if (d.isNaN) "nan" else if (d.isInfinite) { if (d > 0) "inf" else "-inf" } else floatRepr(d)

  /** Serialises a Jackson tree like `json.dumps(obj, sort_keys=sortKeys)`. */
  def dumps(node: JsonNode, sortKeys: Boolean): String = {
    val sb = new java.lang.StringBuilder(256)
    write(node, sortKeys, sb)
    sb.toString
  }

  def write(node: JsonNode, sortKeys: Boolean, sb: java.lang.StringBuilder): Unit = node.getNodeType match {
    case JsonNodeType.OBJECT =>
      val names0 = node.fieldNames().asScala.toSeq
      val names = if (sortKeys) names0.sortWith(codePointLess) else names0
      sb.append('{')
      var first = true
      names.foreach { k =>
        if (!first) sb.append(", ")
        first = false
        quote(k, sb); sb.append(": ")
        write(node.get(k), sortKeys, sb)
      }
      sb.append('}')
    case JsonNodeType.ARRAY =>
      sb.append('[')
      var i = 0
      while (i < node.size()) {
        if (i > 0) sb.append(", ")
        write(node.get(i), sortKeys, sb)
        i += 1
      }
      sb.append(']')
    case JsonNodeType.STRING => quote(node.textValue(), sb)
    case JsonNodeType.NUMBER =>
      if (node.isIntegralNumber) sb.append(node.bigIntegerValue().toString)
      else sb.append(floatRepr(node.doubleValue()))
    case JsonNodeType.BOOLEAN => sb.append(if (node.booleanValue()) "true" else "false")
    case JsonNodeType.NULL | JsonNodeType.MISSING => sb.append("null")
    case other => throw new MdsException(s"cannot write JSON node of type $other")
  }

  /** Python's `sorted()` order on str: by code point (differs from UTF-16 order above U+FFFF). */
  def codePointLess(a: String, b: String): Boolean = codePointCompare(a, b) < 0

  def codePointCompare(a: String, b: String): Int = {
    var i = 0
    var j = 0
    while (i < a.length && j < b.length) {
      val ca = a.codePointAt(i)
      val cb = b.codePointAt(j)
      if (ca != cb) return Integer.compare(ca, cb)
      i += Character.charCount(ca)
      j += Character.charCount(cb)
    }
    Integer.compare(a.length - i, b.length - j)
  }
}
