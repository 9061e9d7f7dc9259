package io.sparkmds.format

import java.nio.charset.StandardCharsets

import scala.jdk.CollectionConverters._

import com.fasterxml.jackson.databind.JsonNode
import com.fasterxml.jackson.databind.node.{ArrayNode, JsonNodeFactory, ObjectNode}

/** `raw_data` / `zip_data` of a shard entry: exactly `basename`, `bytes` and `hashes`. */
final case class FileInfo(basename: String, bytes: Long, hashes: Seq[(String, String)]) extends Serializable

/** One shard entry of `index.json`, with exactly the keys the reference writes and requires. */
final case class ShardEntry(
    columnEncodings: Seq[String],
    columnNames: Seq[String],
    columnSizes: Seq[Option[Int]],
    compression: Option[String],
    hashes: Seq[String],
    rawData: FileInfo,
    samples: Long,
    sizeLimit: Option[Long],
    zipData: Option[FileInfo]) extends Serializable {

  /** The file that is stored (the compressed one when there is compression). */
  def storedFile: FileInfo = zipData.getOrElse(rawData)
  def basenames: Seq[String] = rawData.basename +: zipData.map(_.basename).toSeq
}

/**
 * Our extra top-level `spark_mds` key (docs/format.md section 1). `partitionSchemaJson`: the
 * partition columns of a partitioned dataset's root index (section 8), absent elsewhere.
 */
final case class SparkMdsMeta(formatVersion: Int, schemaJson: String, nullMask: Option[String],
    partitionSchemaJson: Option[String] = None) extends Serializable

/**
 * A parsed `index.json`. `extra` keeps unknown top-level keys (written back on append).
 */
final case class MdsIndex(shards: Seq[ShardEntry], sparkMds: Option[SparkMdsMeta], extra: Seq[(String, JsonNode)] = Nil) {
  def toJson: String = MdsIndex.toJson(this)
  def totalSamples: Long = shards.map(_.samples).sum
}

object MdsIndex {
  val FileName = "index.json"
  val NullMaskColumn = "__nulls__"
  private val nf = JsonNodeFactory.instance

  private val shardKeys = Set("column_encodings", "column_names", "column_sizes", "compression", "format",
    "hashes", "raw_data", "samples", "size_limit", "version", "zip_data")

  /** Parses `index.json` bytes; `where` names the file in errors. Validates paths and keys. */
  def parse(bytes: Array[Byte], where: String): MdsIndex = {
    def bad(msg: String) = throw new MdsException(s"invalid MDS index $where: $msg")
    val root = try PyJson.parse(bytes, 0, bytes.length) catch {
      case e: Exception => throw new MdsException(s"invalid MDS index $where: not valid JSON (${e.getMessage})", e)
    }
    if (root == null || !root.isObject) bad("the top level is not a JSON object")
    val version = root.get("version")
    if (version == null || !version.isIntegralNumber || version.intValue() != 2) {
      bad(s"unsupported index version ${Option(version).map(_.toString).getOrElse("(missing)")}; only version 2 is supported")
    }
    val shardsNode = root.get("shards")
    if (shardsNode == null || !shardsNode.isArray) bad("'shards' is missing or not a list")
    val shards = shardsNode.elements().asScala.zipWithIndex.map { case (s, i) => parseShard(s, s"$where, shard $i") }.toVector
    // Two entries naming one file would read its samples twice.
    val seen = scala.collection.mutable.HashMap.empty[String, Int]
    shards.zipWithIndex.foreach { case (sh, i) =>
      sh.basenames.foreach { b =>
        seen.get(b).foreach(j => bad(s"shard $i names '$b', already used by shard $j"))
        seen(b) = i
      }
    }
    val meta = Option(root.get("spark_mds")).filterNot(_.isNull).map { m =>
      if (!m.isObject) bad("spark_mds is not a JSON object")
      val fv = Option(m.get("format_version")).filter(_.isIntegralNumber).map(_.intValue())
        .getOrElse(bad("spark_mds.format_version is missing or not an integer"))
      if (fv != 1) bad(s"spark_mds.format_version $fv is newer than this reader (1); upgrade spark-mds")
      val schema = Option(m.get("schema")).filter(_.isObject).getOrElse(bad("spark_mds.schema is missing"))
      val nm = Option(m.get("null_mask")).filterNot(_.isNull).map(_.asText())
      val parts = Option(m.get("partition_columns")).filterNot(_.isNull).map { p =>
        if (!p.isObject) bad("spark_mds.partition_columns is not a JSON object (a Spark schema)")
        PyJson.mapper.writeValueAsString(p)
      }
      SparkMdsMeta(fv, PyJson.mapper.writeValueAsString(schema), nm, parts)
    }
    val extra = root.fieldNames().asScala.filterNot(Set("shards", "version", "spark_mds")).map(k => k -> root.get(k)).toVector
    MdsIndex(shards, meta, extra)
  }

  private val MaxU32 = 0xffffffffL

  private def parseShard(s: JsonNode, where: String): ShardEntry = {
    def bad(msg: String) = throw new MdsException(s"invalid MDS index entry ($where): $msg")
    if (!s.isObject) bad("not a JSON object")
    val keys = s.fieldNames().asScala.toSet
    val missing = shardKeys -- keys
    if (missing.nonEmpty) bad(s"missing keys ${missing.toSeq.sorted.mkString(", ")}")
    val unknown = keys -- shardKeys
    if (unknown.nonEmpty) bad(s"unknown keys ${unknown.toSeq.sorted.mkString(", ")} (the reference rejects them)")
    // Strict types: Jackson's asText/longValue would turn a number into a name or "12" into 0 samples.
    def text(n: JsonNode, what: String): String = { if (n == null || !n.isTextual) bad(s"$what must be a string, got $n"); n.asText() }
    def integer(n: JsonNode, what: String, max: Long): Long = {
      if (n == null || !n.isIntegralNumber || !n.canConvertToLong || n.longValue() < 0 || n.longValue() > max) {
        bad(s"$what must be an integer in 0..$max, got $n")
      }
      n.longValue()
    }
    val format = text(s.get("format"), "'format'")
    if (format != "mds") bad(s"shard format '$format' is not supported; only 'mds' shards can be read")
    val version = s.get("version")
    if (!version.isIntegralNumber || version.longValue() != 2) bad(s"shard version $version is not supported (only 2)")
    def strList(k: String): Seq[String] = {
      val n = s.get(k)
      if (!n.isArray) bad(s"'$k' is not a list")
      n.elements().asScala.map(e => text(e, s"every element of '$k'")).toVector
    }
    def fileInfo(k: String): Option[FileInfo] = {
      val n = s.get(k)
      if (n.isNull) None
      else {
        if (!n.isObject) bad(s"'$k' is not an object")
        val ks = n.fieldNames().asScala.toSet
        if (ks != Set("basename", "bytes", "hashes")) bad(s"'$k' must have exactly basename, bytes and hashes")
        val base = text(n.get("basename"), s"'$k.basename'")
        checkBasename(base, where)
        val hashes = n.get("hashes")
        if (!hashes.isObject) bad(s"'$k.hashes' must map algorithm names to hex digests, got $hashes")
        val hs = hashes.properties().asScala.map(e => e.getKey -> text(e.getValue, s"'$k.hashes.${e.getKey}'")).toVector
        Some(FileInfo(base, integer(n.get("bytes"), s"'$k.bytes'", MaxU32), hs))
      }
    }
    val names = strList("column_names")
    if (names.distinct.length != names.length) bad(s"column_names are not distinct: ${names.mkString(", ")}")
    val encs = strList("column_encodings")
    val sizesNode = s.get("column_sizes")
    if (!sizesNode.isArray) bad("'column_sizes' is not a list")
    val sizes = sizesNode.elements().asScala.map(n => if (n.isNull) None else Some(integer(n, "a column size", Int.MaxValue).toInt)).toVector
    if (names.length != encs.length || names.length != sizes.length) {
      bad("column_names, column_encodings and column_sizes have different lengths")
    }
    val samples = integer(s.get("samples"), "'samples'", MaxU32)
    val raw = fileInfo("raw_data").getOrElse(bad("'raw_data' is null"))
    if (raw.bytes < 8 + 4 * samples) bad(s"raw_data.bytes is ${raw.bytes}, impossible for a shard of $samples samples")
    val compNode = s.get("compression")
    val comp = if (compNode == null || compNode.isNull) None else Some(text(compNode, "'compression'"))
    val zip = fileInfo("zip_data")
    if (comp.isDefined != zip.isDefined) bad("'compression' and 'zip_data' disagree")
    if (zip.exists(_.basename == raw.basename)) bad(s"raw_data and zip_data name the same file '${raw.basename}'")
    val limitNode = s.get("size_limit")
    val limit = if (limitNode == null || limitNode.isNull || limitNode.isTextual) None
      else Some(integer(limitNode, "'size_limit'", Long.MaxValue))
    ShardEntry(encs, names, sizes, comp, strList("hashes"), raw, samples, limit, zip)
  }

  /**
   * Rejects basenames that could leave the dataset directory: `..`, absolute paths, backslashes,
   * drive letters, URLs, empty components.
   */
  def checkBasename(b: String, where: String): Unit = {
    def bad(why: String) =
      throw new MdsException(s"unsafe shard basename '$b' in MDS index ($where): $why; " +
        "basenames must be relative paths with '/' separators inside the dataset directory")
    if (b.isEmpty) bad("empty")
    if (b.startsWith("/")) bad("absolute path")
    if (b.contains("\\")) bad("backslash")
    if (b.contains("://") || b.matches("^[A-Za-z][A-Za-z0-9+.-]*:.*")) bad("URL or drive letter")
    if (b.exists(c => c < 0x20)) bad("control character")
    val parts = b.split("/", -1)
    if (parts.contains("..")) bad("'..' component")
    if (parts.exists(p => p.isEmpty || p == ".")) bad("empty or '.' component")
  }

  // ---- writing ----

  private def fileInfoNode(f: FileInfo): ObjectNode = {
    val o = nf.objectNode()
    o.put("basename", f.basename)
    o.put("bytes", f.bytes)
    val h = o.putObject("hashes")
    f.hashes.foreach { case (k, v) => h.put(k, v) }
    o
  }

  /** The shard config shared by the shard header and the index entry (without samples/raw/zip). */
  def configNode(names: Seq[String], encodings: Seq[String], sizes: Seq[Option[Int]], compression: Option[String],
      hashes: Seq[String], sizeLimit: Option[Long]): ObjectNode = {
    val o = nf.objectNode()
    val ce = o.putArray("column_encodings"); encodings.foreach(e => ce.add(e))
    val cn = o.putArray("column_names"); names.foreach(n => cn.add(n))
    val cs = o.putArray("column_sizes"); sizes.foreach { case Some(v) => cs.add(v); case None => cs.addNull() }
    compression match { case Some(c) => o.put("compression", c); case None => o.putNull("compression") }
    o.put("format", "mds")
    val hs = o.putArray("hashes"); hashes.foreach(h => hs.add(h))
    sizeLimit match { case Some(l) => o.put("size_limit", l); case None => o.putNull("size_limit") }
    o.put("version", 2)
    o
  }

  def shardNode(s: ShardEntry): ObjectNode = {
    val o = configNode(s.columnNames, s.columnEncodings, s.columnSizes, s.compression, s.hashes, s.sizeLimit)
    o.set[JsonNode]("raw_data", fileInfoNode(s.rawData))
    o.put("samples", s.samples)
    s.zipData match { case Some(z) => o.set[JsonNode]("zip_data", fileInfoNode(z)); case None => o.putNull("zip_data") }
    o
  }

  def toJson(idx: MdsIndex): String = {
    val root = nf.objectNode()
    val arr: ArrayNode = root.putArray("shards")
    idx.shards.foreach(s => arr.add(shardNode(s)))
    idx.sparkMds.foreach { m =>
      val o = root.putObject("spark_mds")
      o.put("format_version", m.formatVersion)
      o.set[JsonNode]("schema", PyJson.parse(m.schemaJson))
      m.nullMask.foreach(n => o.put("null_mask", n))
      m.partitionSchemaJson.foreach(p => o.set[JsonNode]("partition_columns", PyJson.parse(p)))
    }
    idx.extra.foreach { case (k, v) => root.set[JsonNode](k, v) }
    root.put("version", 2)
    PyJson.dumps(root, sortKeys = true)
  }

  def toBytes(idx: MdsIndex): Array[Byte] = toJson(idx).getBytes(StandardCharsets.UTF_8)
}
