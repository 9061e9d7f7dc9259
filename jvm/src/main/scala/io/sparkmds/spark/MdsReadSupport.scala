package io.sparkmds.spark

import io.sparkmds.format._
import org.apache.hadoop.conf.Configuration
import org.apache.hadoop.fs.Path
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.types.StructType

/** One shard as an input partition sees it. */
final case class MdsShardRef(basename: String, rawBytes: Long, storedBytes: Long, compression: Option[String],
    samples: Long, storedHashes: Seq[(String, String)]) extends Serializable

/** Loading indexes and shards for reading. */
object MdsReadSupport {

  def shardRef(s: ShardEntry): MdsShardRef =
    MdsShardRef(s.storedFile.basename, s.rawData.bytes, s.storedFile.bytes, s.compression, s.samples, s.storedFile.hashes)

  /** Reads, checks and decompresses one shard. */
  def loadShard(dir: Path, conf: Configuration, ref: MdsShardRef, validateHash: Option[String]): ShardData = {
    val path = new Path(dir, ref.basename)
    val where = path.toString
    val stored = MdsFiles.readFully(MdsFiles.fs(dir, conf), path, ref.storedBytes)
    validateHash.foreach { h =>
      val expected = ref.storedHashes.find(_._1 == h).map(_._2).getOrElse(
        throw new MdsException(s"option validate_hash=$h: the index has no $h hash for $where; it has " +
          s"${if (ref.storedHashes.isEmpty) "none" else ref.storedHashes.map(_._1).mkString(", ")}"))
      val actual = Hashing.hexdigest(h, stored, 0, stored.length)
      if (actual != expected) throw new MdsException(s"MDS shard $where fails hash validation: $h is $actual, the index says $expected")
    }
    val raw = ref.compression match {
      case None => stored
      case Some(c) => Compression.forReading(c, where).decompress(stored, ref.rawBytes, where)
    }
    val shard = new ShardData(raw, raw.length, where)
    if (shard.numSamples != ref.samples) {
      throw new MdsException(s"corrupt MDS shard $where: it holds ${shard.numSamples} samples, the index says ${ref.samples}")
    }
    shard
  }

  /** Finds the dtype and depth of the first sample of a dynamic-shape ndarray column. */
  def peeker(index: MdsIndex, dir: Path, conf: Configuration): Int => Option[SchemaConverter.NdPeek] = {
    lazy val firstShard: Option[ShardData] = index.shards.find(_.samples > 0).map(s => loadShard(dir, conf, shardRef(s), None))
    (k: Int) => firstShard.map { shard =>
      val entry = index.shards.find(_.samples > 0).get
      val encs = entry.columnEncodings.map(e => MdsEncoding.parse(e))
      val b = shard.bytes
      val start = shard.start(0)
      var p = start + 4 * encs.count(!_.isFixed)
      var v = 0
      var c = 0
      while (c < k) {
        p += (if (encs(c).isFixed) encs(c).fixedSize else LE.i32(b, start + 4 * v))
        if (!encs(c).isFixed) v += 1
        c += 1
      }
      encs(k) match {
        case MdsEncoding.NdArray(_, dt, _) =>
          val dtype = dt.getOrElse { val d = DType.fromCode(b(p) & 0xff); p += 1; d.getOrElse(DType.Float64) }
          SchemaConverter.NdPeek(dtype, (b(p) & 0xff) >> 2)
        case _ => SchemaConverter.NdPeek(DType.Float64, 1)
      }
    }
  }

  /** Reads `<dir>/index.json` and its layout; fails clearly when there is no dataset. */
  def load(dir: Path, conf: Configuration): (MdsIndex, MdsLayout) = {
    val qualified = MdsFiles.fs(dir, conf).makeQualified(dir)
    val (index, _) = MdsFiles.readIndex(qualified, conf).getOrElse(
      throw new MdsException(s"no MDS dataset at $qualified: ${MdsIndex.FileName} is missing"))
    (index, SchemaConverter.readLayout(index, qualified.toString, peeker(index, qualified, conf)))
  }
}

/** Iterates the rows of a group of shards, decoding only the required columns. */
final class MdsRowIterator(dir: Path, conf: Configuration, shards: Seq[MdsShardRef], layout: MdsLayout,
    required: StructType, validateHash: Option[String]) {
  private val deser = if (required.isEmpty) null else new MdsDeserializer(layout, required)
  private val emptyRow = InternalRow.empty
  private var shardIdx = -1
  private var shard: ShardData = _
  private var where: String = _
  private var sample = 0
  private var count = 0L
  private var current: InternalRow = _

  def next(): Boolean = {
    while (sample >= count) {
      shardIdx += 1
      if (shardIdx >= shards.length) return false
      val ref = shards(shardIdx)
      sample = 0
      count = ref.samples
      // A count-only scan needs no bytes (the index has the sample counts) unless hashes are checked.
      if ((deser != null || validateHash.isDefined) && count > 0) {
        shard = MdsReadSupport.loadShard(dir, conf, ref, validateHash)
        where = new Path(dir, ref.basename).toString
      }
    }
    current = if (deser == null) emptyRow else deser.decode(shard, sample, where)
    sample += 1
    true
  }

  def get: InternalRow = current
  def close(): Unit = shard = null
}
