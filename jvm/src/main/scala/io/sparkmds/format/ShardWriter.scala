package io.sparkmds.format

import java.nio.charset.StandardCharsets

/** Where finished shard files go (a Hadoop file system in Spark; memory in tests). */
trait ShardSink {
  /** Basename (without compression extension) of the next shard, e.g. `shard.00000.mds`. */
  def nextBasename(shardIndex: Int): String
  def write(basename: String, data: Array[Byte], off: Int, len: Int): Unit
}

/**
 * Cuts encoded samples into MDS shards exactly like the reference writer (section 1.5 of the spec):
 * a sample of `len` bytes costs `len + 4`; when `sizeLimit < currentSize + cost` the current shard
 * (possibly empty) is flushed first. Samples are encoded straight into [[data]] by the caller between
 * [[beginSample]] and [[endSample]].
 */
final class ShardWriter(
    columnNames: Seq[String],
    columnEncodings: Seq[String],
    columnSizes: Seq[Option[Int]],
    compression: Option[Compression],
    hashes: Seq[String],
    sizeLimit: Option[Long],
    sink: ShardSink,
    initialBuffer: Int = 1 << 20) {

  private val configBytes: Array[Byte] = PyJson.dumps(
    MdsIndex.configNode(columnNames, columnEncodings, columnSizes, compression.map(_.name), hashes, sizeLimit),
    sortKeys = true).getBytes(StandardCharsets.UTF_8)
  private val extraPerShard: Long = 4L + 4L + configBytes.length
  private val limit: Long = sizeLimit.filter(_ > 0).getOrElse(0L)

  /**
   * Room kept in front of the samples for the shard header (N, offsets, config), so a shard is
   * hashed, compressed and written straight from [[data]] without a copy. It grows when a shard
   * has more samples than it fits.
   */
  private var reserve: Int = configBytes.length + 8 + 4 * 4096

  /** Encoded samples of the current shard, back to back, starting at `reserve`. */
  val data: ByteBuf = {
    val b = new ByteBuf(math.min(initialBuffer.toLong, math.max(limit, 1L << 16)).toInt + reserve)
    if (limit > 0) b.softMax = limit + reserve + (1L << 16)
    b.position = reserve
    b
  }
  private var ends: Array[Int] = new Array[Int](1024) // end offset of each sample in `data`
  private var count: Int = 0
  private var currentSize: Long = extraPerShard
  private var sampleStart: Int = reserve
  private var shardIndex: Int = 0
  private var zbuf: Array[Byte] = null // reused compression output
  private val entries = Vector.newBuilder[ShardEntry]

  def beginSample(): Unit = sampleStart = data.position

  def endSample(): Unit = {
    val len = data.position - sampleStart
    val cost = len.toLong + 4
    if (limit > 0 && limit < currentSize + cost) {
      flush(sampleStart)
      data.moveTail(sampleStart, reserve)
      sampleStart = reserve
    }
    if (currentSize + cost > 0xffffffffL) {
      throw new MdsException(s"an MDS shard cannot exceed 4 GiB (uint32 offsets); set size_limit below ${1L << 32}")
    }
    if (count == ends.length) ends = java.util.Arrays.copyOf(ends, count * 2)
    ends(count) = data.position
    count += 1
    currentSize += cost
  }

  /** Flushes the last shard (if it has samples) and returns every shard entry written. */
  def finish(): Seq[ShardEntry] = {
    if (count > 0) flush(data.position)
    data.position = reserve
    zbuf = null
    entries.result()
  }

  /** Writes samples [0, count), whose bytes are data[reserve, dataEnd), as one shard. */
  private def flush(dataEnd: Int): Unit = {
    val n = count
    val header = 4 + 4 * (n + 1) + configBytes.length
    val dataLen = dataEnd - reserve
    val rawLen = header.toLong + dataLen
    if (rawLen > Int.MaxValue - 16) throw new MdsException(s"an MDS shard of $rawLen bytes does not fit in memory; lower size_limit")
    val (raw, rawOff) =
      if (header <= reserve) (data.array, reserve - header)
      else { // more samples than the reserve fits: copy once, and reserve more from now on
        val r = new Array[Byte](rawLen.toInt)
        System.arraycopy(data.array, reserve, r, header, dataLen)
        (r, 0)
      }
    val bb = java.nio.ByteBuffer.wrap(raw).order(java.nio.ByteOrder.LITTLE_ENDIAN)
    bb.putInt(rawOff, n)
    var i = 0
    bb.putInt(rawOff + 4, header)
    while (i < n) { bb.putInt(rawOff + 8 + 4 * i, header + (ends(i) - reserve)); i += 1 }
    System.arraycopy(configBytes, 0, raw, rawOff + 4 + 4 * (n + 1), configBytes.length)
    val len = rawLen.toInt

    val base = sink.nextBasename(shardIndex)
    val rawInfo = FileInfo(base, len, hashes.map(h => h -> Hashing.hexdigest(h, raw, rawOff, len)))
    val zipInfo = compression match {
      case None =>
        sink.write(base, raw, rawOff, len)
        None
      case Some(c) =>
        val (z, zlen) = c.compress(raw, rawOff, len, zbuf)
        if (c.family == "zstd" || c.family == "snappy") zbuf = z
        val zbase = s"$base.${c.extension}"
        sink.write(zbase, z, 0, zlen)
        Some(FileInfo(zbase, zlen, hashes.map(h => h -> Hashing.hexdigest(h, z, 0, zlen))))
    }
    entries += ShardEntry(columnEncodings, columnNames, columnSizes, compression.map(_.name), hashes, rawInfo, n,
      sizeLimit, zipInfo)
    shardIndex += 1
    count = 0
    currentSize = extraPerShard
    if (header > reserve) { // grow the reserve for the next shards; the caller moves the pending sample
      reserve = header + header / 4
      if (limit > 0) data.softMax = limit + reserve + (1L << 16)
    }
  }
}

/**
 * A decoded (raw) MDS shard held in memory, with a validated header: `N`, `N + 1` monotonic offsets
 * inside the file, and `off[N]` equal to the file size.
 */
final class ShardData(val bytes: Array[Byte], val length: Int, where: String) {
  private def bad(msg: String) = throw new MdsException(s"corrupt MDS shard $where: $msg")

  val numSamples: Int = {
    if (length < 8) bad(s"the file has $length bytes, fewer than a header")
    val n = LE.u32(bytes, 0)
    if (4L + 4L * (n + 1) > length) bad(s"the header announces $n samples, which do not fit in $length bytes")
    n.toInt
  }

  {
    var prev = LE.u32(bytes, 4)
    if (prev < 4L + 4L * (numSamples + 1)) bad(s"the first sample offset $prev points into the header")
    var i = 1
    while (i <= numSamples) {
      val o = LE.u32(bytes, 4 + 4 * i)
      if (o < prev) bad(s"sample offsets are not monotonic at sample ${i - 1} ($prev > $o)")
      prev = o
      i += 1
    }
    if (prev != length) bad(s"the last offset $prev differs from the file size $length")
  }

  @inline def start(i: Int): Int = LE.i32(bytes, 4 + 4 * i)
  @inline def end(i: Int): Int = LE.i32(bytes, 8 + 4 * i)
}
