package io.sparkmds.spark

import java.util.Locale

import io.sparkmds.format.{Compression, Hashing, MdsException}

/**
 * All options of the `mds` source, parsed and validated in one place. Option names are
 * case-insensitive; the column part of `encoding.<column>` is matched to a column exactly, else ignoring
 * case (SchemaConverter.resolveEncodings).
 *
 * Write: `compression` (default `zstd`), `hashes` (comma-separated), `size_limit` (bytes or a
 * binary-suffixed string such as `64mb`; default `1 << 26`), `encoding.<column>`, `nulls`
 * (`mask` default, or `error`).
 * Read: `max_partition_bytes` (target stored bytes per input partition; small shards are grouped),
 * `validate_hash` (hash every shard file with this algorithm before decoding).
 */
class MdsOptions(parameters: Map[String, String]) extends Serializable {
  private val lower: Map[String, String] = parameters.map { case (k, v) => k.toLowerCase(Locale.ROOT) -> v }
  private def get(k: String): Option[String] = lower.get(k)

  val path: Option[String] = get("path").orElse(get("location")).filter(_.nonEmpty)

  val compression: Option[Compression] = {
    val c = get("compression").getOrElse("zstd")
    if (c.trim.toLowerCase(Locale.ROOT).startsWith("br")) {
      throw new MdsException(s"option compression='$c': Brotli cannot be written on the JVM (Spark's jars have no " +
        "Brotli encoder); use compression=zstd (default), gz, bz2 or snappy, which the reference reads too")
    }
    Compression.parse(c, "option compression")
  }

  val hashes: Seq[String] = get("hashes") match {
    case None => Nil
    case Some(h) => h.split(",").map(_.trim).filter(_.nonEmpty).map(x => Hashing.check(x, "option hashes")).distinct.sorted.toSeq
  }

  val sizeLimit: Option[Long] = get("size_limit") match {
    case None => Some(1L << 26)
    case Some(s) => MdsOptions.parseSizeLimit(s)
  }

  val nullsMode: String = get("nulls").map(_.trim.toLowerCase(Locale.ROOT)).getOrElse("mask") match {
    case m @ ("mask" | "error") => m
    case other => throw new MdsException(s"option nulls='$other' is invalid; allowed values: mask (default), error")
  }
  def nullMask: Boolean = nullsMode == "mask"

  /** `encoding.<column>` overrides, column name as given. */
  val encodings: Map[String, String] = parameters.collect {
    case (k, v) if k.toLowerCase(Locale.ROOT).startsWith("encoding.") => k.substring("encoding.".length) -> v.trim
  }

  val maxPartitionBytes: Long = get("max_partition_bytes").map { v =>
    val n = MdsOptions.parseSizeLimit(v, "max_partition_bytes", allowHuge = true)
      .getOrElse(throw new MdsException(s"option max_partition_bytes='$v' must be a positive size"))
    n
  }.getOrElse(128L << 20)

  val validateHash: Option[String] = get("validate_hash").map(_.trim).filter(_.nonEmpty).map(h => Hashing.check(h, "option validate_hash"))
}

object MdsOptions {
  private val units: Seq[(String, Long)] = Seq("kb" -> 1L, "mb" -> 2L, "gb" -> 3L, "tb" -> 4L, "pb" -> 5L, "eb" -> 6L,
    "zb" -> 7L, "yb" -> 8L).map { case (s, p) => s -> p }
  private val number = """[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?""".r

  /**
   * The reference's `bytes_to_int`: a number of bytes, or a number with a case-insensitive binary
   * suffix (`b`, `kb` = 1024, `mb`, `gb`, ... `yb`), fractions allowed (`1.5mb`). 0 or `none` means
   * no limit (one shard per task). The reference refuses limits of 2^32 and more (uint32 offsets).
   */
  def parseSizeLimit(s: String, what: String = "size_limit", allowHuge: Boolean = false): Option[Long] = {
    val t = s.trim.toLowerCase(Locale.ROOT)
    def bad(msg: String) = throw new MdsException(
      s"option $what='$s' is invalid: $msg; use a number of bytes or a number with a binary suffix " +
        "(b, kb, mb, gb, ...), e.g. 67108864 or 64mb")
    if (t == "none" || t == "null" || t.isEmpty) return None
    val (num, mult) = units.find { case (suf, _) => t.endsWith(suf) } match {
      case Some((suf, p)) => (t.dropRight(suf.length).trim, BigDecimal(1024).pow(p.toInt))
      case None if t.endsWith("b") => (t.dropRight(1).trim, BigDecimal(1))
      case None => (t, BigDecimal(1))
    }
    if (!number.pattern.matcher(num).matches()) bad("not a number")
    val v = (BigDecimal(num) * mult).setScale(0, BigDecimal.RoundingMode.DOWN).toBigInt
    if (v <= 0) None
    else if (!allowHuge && v >= (BigInt(1) << 32)) bad("MDS shards use uint32 offsets, so the limit must be below 4 GiB")
    else if (v > Long.MaxValue) bad("too large")
    else Some(v.toLong)
  }
}
