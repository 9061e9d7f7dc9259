package io.sparkmds.format

import java.io.{ByteArrayInputStream, ByteArrayOutputStream, InputStream}
import java.util.zip.{CRC32, Deflater}

import com.github.luben.zstd.Zstd
import net.jpountz.lz4.{LZ4FrameInputStream, LZ4FrameOutputStream}
import org.apache.commons.compress.compressors.bzip2.{BZip2CompressorInputStream, BZip2CompressorOutputStream}
import org.xerial.snappy.Snappy

/**
 * A compression setting as the reference names it (`zstd`, `zstd:7`, `gz:6`, `bz2`, `br`, `snappy`)
 * plus our `lz4` extension. `name` is stored verbatim in the index; the file extension is the family.
 * The whole raw shard is compressed as one blob.
 */
final case class Compression(name: String, family: String, level: Int) {
  def extension: String = family

  /**
   * Compresses `src[off, off+len)`; returns the buffer and the compressed length. `reuse`, when
   * large enough, is used as the output buffer (zstd, snappy).
   */
  def compress(src: Array[Byte], off: Int, len: Int, reuse: Array[Byte] = null): (Array[Byte], Int) = family match {
    case "zstd" =>
      // One-shot ZSTD_compress, like python-zstd's zstd.compress: identical frames for one libzstd.
      val bound = Zstd.compressBound(len.toLong).toInt
      val dst = if (reuse != null && reuse.length >= bound) reuse else new Array[Byte](bound)
      val n = Zstd.compressByteArray(dst, 0, dst.length, src, off, len, level)
      if (Zstd.isError(n)) throw new MdsException(s"zstd compression failed: ${Zstd.getErrorName(n)}")
      (dst, n.toInt)
    case "gz" => Compression.gzip(src, off, len, level)
    case "bz2" =>
      val bos = new ByteArrayOutputStream(len / 4 + 64)
      val out = new BZip2CompressorOutputStream(bos, level)
      out.write(src, off, len); out.close()
      (bos.toByteArray, bos.size())
    case "snappy" =>
      val bound = Snappy.maxCompressedLength(len)
      val dst = if (reuse != null && reuse.length >= bound) reuse else new Array[Byte](bound)
      val n = Snappy.rawCompress(src, off, len, dst, 0)
      (dst, n)
    case "lz4" =>
      val bos = new ByteArrayOutputStream(len / 2 + 64)
      val out = new LZ4FrameOutputStream(bos)
      out.write(src, off, len); out.close()
      (bos.toByteArray, bos.size())
    case "br" => throw Compression.brotliUnsupported("writing")
  }

  /**
   * Decompresses a whole stored shard; `rawSize` comes from the index (`raw_data.bytes`). The output
   * never grows beyond `rawSize`, and a buffer of `rawSize` bytes is allocated at once only when the
   * stored file could plausibly expand to it: a small hostile file (or index) cannot make the reader
   * allocate gigabytes.
   */
  def decompress(src: Array[Byte], rawSize: Long, where: String): Array[Byte] = {
    if (rawSize > Int.MaxValue - 16) throw new MdsException(s"shard $where is larger than 2 GiB ($rawSize bytes)")
    if (rawSize < 0) throw new MdsException(s"shard $where: negative raw size $rawSize in the index")
    try family match {
      case "zstd" =>
        if (rawSize <= Compression.directLimit(src.length)) {
          val dst = new Array[Byte](rawSize.toInt)
          val n = Zstd.decompressByteArray(dst, 0, dst.length, src, 0, src.length)
          if (Zstd.isError(n)) throw new MdsException(s"zstd: ${Zstd.getErrorName(n)}")
          if (n != rawSize) throw new MdsException(s"decompressed to $n bytes, the index says $rawSize")
          dst
        } else readAll(new com.github.luben.zstd.ZstdInputStream(new ByteArrayInputStream(src)), rawSize, src.length)
      case "gz" => readAll(new java.util.zip.GZIPInputStream(new ByteArrayInputStream(src), 1 << 16), rawSize, src.length)
      case "bz2" => readAll(new BZip2CompressorInputStream(new ByteArrayInputStream(src), true), rawSize, src.length)
      case "snappy" =>
        // A raw snappy block starts with its uncompressed length, which Snappy.uncompress allocates.
        val n = Snappy.uncompressedLength(src)
        if (n != rawSize) throw new MdsException(s"the snappy block holds $n bytes, the index says $rawSize")
        Snappy.uncompress(src)
      case "lz4" => readAll(new LZ4FrameInputStream(new ByteArrayInputStream(src)), rawSize, src.length)
      case "br" => throw Compression.brotliUnsupported("reading")
    } catch {
      case e: MdsException if e.getMessage.contains("Brotli") => throw e
      case e: Exception =>
        throw new MdsException(
          s"cannot decompress MDS shard $where ($name): ${e.getMessage}; the file is corrupt or is not this shard", e)
    }
  }

  /** Reads exactly `rawSize` bytes, growing the buffer as data arrives (up to `rawSize`). */
  private def readAll(in: InputStream, rawSize: Long, srcLen: Int): Array[Byte] = {
    try {
      val size = rawSize.toInt
      var dst = new Array[Byte](math.min(rawSize, Compression.directLimit(srcLen)).toInt)
      var pos = 0
      var eof = false
      while (!eof && pos < size) {
        if (pos == dst.length) dst = java.util.Arrays.copyOf(dst, math.min(size.toLong, dst.length * 2L + 4096).toInt)
        val n = in.read(dst, pos, dst.length - pos)
        if (n < 0) eof = true else pos += n
      }
      if (pos != size || in.read() != -1) throw new MdsException(s"decompressed size differs from the index ($rawSize bytes)")
      dst
    } finally in.close()
  }
}

object Compression {
  /** The output size a stored file of `srcLen` bytes is trusted to expand to in one allocation. */
  def directLimit(srcLen: Int): Long = math.max(64L << 20, 4096L * srcLen)

  private val levels: Map[String, (Int, Int, Int)] = Map( // family -> (min, max, default)
    "zstd" -> (1, 22, 3), "gz" -> (0, 9, 9), "bz2" -> (1, 9, 9), "br" -> (0, 11, 11))

  val families: Seq[String] = Seq("zstd", "gz", "bz2", "snappy", "br", "lz4")

  def brotliUnsupported(what: String): MdsException = new MdsException(
    s"Brotli ('br') compression is not supported by the JVM mds source ($what): Spark's jars hold no Brotli codec. " +
      "Write with compression=zstd (or gz, bz2, snappy) instead; to read a 'br' dataset, use mds_loader " +
      "(Python) or rewrite it with another compression.")

  /** Parses a compression string; `None` for no compression. `what` names the option in errors. */
  def parse(s: String, what: String = "compression"): Option[Compression] = {
    val t = s.trim
    if (t.isEmpty || t.equalsIgnoreCase("none") || t.equalsIgnoreCase("null")) return None
    def bad(msg: String) = throw new MdsException(
      s"invalid $what '$s': $msg. Allowed: none, zstd, zstd:1..22, gz, gz:0..9, bz2, bz2:1..9, snappy, lz4 " +
        "(lz4 is an extension the reference cannot read); br cannot be written on the JVM")
    val (fam, lvl) = t.split(":", -1) match {
      case Array(f) => (f, None)
      case Array(f, l) =>
        val v = try l.toInt catch { case _: NumberFormatException => bad(s"level '$l' is not an integer") }
        (f, Some(v))
      case _ => bad("expected FAMILY or FAMILY:LEVEL")
    }
    if (!families.contains(fam)) bad(s"unknown compression '$fam'")
    levels.get(fam) match {
      case Some((lo, hi, default)) =>
        val l = lvl.getOrElse(default)
        if (l < lo || l > hi) bad(s"$fam levels are $lo..$hi")
        Some(Compression(t, fam, l))
      case None =>
        if (lvl.isDefined) bad(s"$fam takes no level")
        Some(Compression(t, fam, 0))
    }
  }

  /** Parses the `compression` of an index entry for reading (any reference name, levels ignored). */
  def forReading(s: String, where: String): Compression = {
    val fam = s.split(":", 2)(0)
    if (!families.contains(fam)) throw new MdsException(s"unknown compression '$s' in MDS index ($where)")
    if (fam == "br") throw brotliUnsupported(s"reading $where")
    Compression(s, fam, 0)
  }

  /**
   * gzip as Python's `gzip.compress(data, level, mtime=0)` writes it: 10-byte header with XFL and
   * OS=255, raw deflate, CRC32, size. mtime 0 makes the output reproducible.
   */
  def gzip(src: Array[Byte], off: Int, len: Int, level: Int): (Array[Byte], Int) = {
    val out = new ByteBuf(len / 3 + 64)
    out.putBytes(Array[Byte](0x1f, 0x8b.toByte, 8, 0, 0, 0, 0, 0))
    out.putByte(if (level == 9) 2 else if (level == 1) 4 else 0)
    out.putByte(255)
    val d = new Deflater(level, true)
    try {
      d.setInput(src, off, len)
      d.finish()
      val chunk = new Array[Byte](1 << 16)
      while (!d.finished()) {
        val n = d.deflate(chunk)
        out.putBytes(chunk, 0, n)
      }
    } finally d.end()
    val crc = new CRC32(); crc.update(src, off, len)
    out.putInt(crc.getValue.toInt)
    out.putInt(len)
    (out.array, out.position)
  }

}
