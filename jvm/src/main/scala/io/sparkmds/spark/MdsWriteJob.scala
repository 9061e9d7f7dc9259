package io.sparkmds.spark

import java.security.SecureRandom

import scala.collection.mutable.ArrayBuffer

import io.sparkmds.format._
import org.apache.hadoop.conf.Configuration
import org.apache.hadoop.fs.Path
import org.apache.spark.TaskContext
import org.apache.spark.sql.{DataFrame, SparkSession}
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.catalyst.expressions.{BoundReference, Expression, UnsafeProjection, UnsafeRow}
import org.apache.spark.sql.functions.{col, monotonically_increasing_id}
import org.apache.spark.sql.types.StructType
import org.apache.spark.util.SerializableConfiguration

/** What a write task sends back to the driver: its shard entries, in write order. */
final case class MdsTaskCommit(partition: Int, taskAttemptId: Long, shards: Seq[ShardEntry]) extends Serializable

/**
 * Everything a write task needs, shipped to executors. Each task attempt writes uniquely named
 * shards `shard.<job>.<partition>.<attempt>.<seq>.mds[.ext]` (under their partition directory when
 * the write is partitioned; its rows then come sorted by the partition columns) and deletes them if
 * it fails.
 */
final case class MdsWriteTask(
    dir: String,
    jobId: String,
    layout: MdsLayout,
    inputSchema: StructType,
    partitioning: MdsPartitioning,
    compression: Option[Compression],
    hashes: Seq[String],
    sizeLimit: Option[Long],
    conf: SerializableConfiguration,
    hooks: MdsTestHooks) {

  def run(ctx: TaskContext, rows: Iterator[InternalRow]): MdsTaskCommit = {
    val tag = s"${ctx.partitionId()}.${ctx.attemptNumber()}"
    hooks.taskMark("start", tag)
    try runAttempt(ctx, rows, tag) finally hooks.taskMark("end", tag)
  }

  private def runAttempt(ctx: TaskContext, rows: Iterator[InternalRow], tag: String): MdsTaskCommit = {
    val writer = new MdsTaskWriter(this, ctx, () => hooks.beforeSecondFile(tag))
    try {
      while (rows.hasNext) writer.write(rows.next())
      MdsTaskCommit(ctx.partitionId(), ctx.taskAttemptId(), writer.commit())
    } catch {
      case t: Throwable =>
        writer.abort()
        throw t
    }
  }
}

/** A task attempt's files outlived their job: the job was aborted or committed without them. */
class MdsJobEndedException(message: String) extends MdsException(message)

/**
 * Writes one task attempt's rows as shards through a Hadoop FileSystem. Before and after each file
 * it checks that its job still runs (its marker, [[MdsFiles.jobMarker]]); once the job has ended,
 * the attempt removes its files and fails. A partitioned write starts a new shard sequence in the
 * partition's directory whenever the partition values change.
 */
final class MdsTaskWriter(task: MdsWriteTask, ctx: TaskContext, beforeSecondFile: () => Unit) {
  private val partition = ctx.partitionId()
  private val attempt = ctx.taskAttemptId()
  private val dir = new Path(task.dir)
  private val fs = MdsFiles.fs(dir, task.conf.value)
  private val written = ArrayBuffer.empty[String]
  private val done = ArrayBuffer.empty[ShardEntry]
  private val partitioned = !task.partitioning.isEmpty
  // The serializer picks the layout's columns from the input row by name: partition columns are skipped.
  private val serializer = new MdsSerializer(task.layout, task.inputSchema)
  private val toKey = if (!partitioned) null else UnsafeProjection.create(task.partitioning.names.map { n =>
    val i = task.inputSchema.fieldIndex(n)
    BoundReference(i, task.inputSchema(i).dataType, task.inputSchema(i).nullable): Expression
  })
  private var key: UnsafeRow = _
  private var prefix = ""
  private var shards = newShards()

  private def newShards() = new ShardWriter(task.layout.storageNames, task.layout.storageEncodings.map(_.name),
    task.layout.storageSizes, task.compression, task.hashes, task.sizeLimit, new ShardSink {
      private val dirPrefix = prefix
      def nextBasename(i: Int): String = f"$dirPrefix${MdsWriteJob.jobPrefix(task.jobId)}$partition%05d.$attempt.$i%05d.mds"
      def write(basename: String, data: Array[Byte], off: Int, len: Int): Unit = {
        if (written.size == 1) beforeSecondFile()
        if (ctx.isInterrupted()) throw new org.apache.spark.TaskKilledException("the task was killed while writing shards")
        checkJobRunning()
        written += basename
        MdsFiles.writeFile(fs, new Path(dir, basename), data, off, len)
        checkJobRunning()
      }
    })

  private def checkJobRunning(): Unit = if (!MdsFiles.jobMarkerExists(fs, dir, task.jobId)) {
    throw new MdsJobEndedException(s"write job ${task.jobId} of ${task.dir} has ended (it failed, or finished with " +
      s"another attempt of partition $partition): attempt $attempt removed its files")
  }

  def write(row: InternalRow): Unit = if (!partitioned) serializer.write(row, shards) else {
    val k = toKey(row)
    if (key == null || k != key) {
      if (key != null) done ++= shards.finish()
      key = k.copy()
      prefix = task.partitioning.dirOf(key) + "/"
      shards = newShards()
    }
    serializer.write(row, shards)
  }

  def commit(): Seq[ShardEntry] = (done ++= (if (!partitioned || key != null) shards.finish() else Nil)).toSeq
  def abort(): Unit = written.foreach { b => try fs.delete(new Path(dir, b), false) catch { case _: Exception => () } }
}

/**
 * Fault-injection points of a write job, for tests only (tests/reliability), read from the
 * session's runtime conf `spark.mds.test.<point>` when the job starts.
 *
 * Driver points (the value is a file path: the driver creates that file on reaching the point and
 * waits while it exists, at most 10 minutes, so that a test can kill the driver there or let two
 * writers meet): `beforeCommit` (every task has committed, nothing is checked or published yet)
 * and `beforePublish` (the optimistic check passed; under the index lock on local file systems).
 *
 * Task point `taskHooks` (the value is a directory): task attempt `a` (its attempt number) of
 * partition `p` creates `start.p.a` there when it starts and `end.p.a` once it has ended (after
 * removing its own files if it failed). Before writing its second shard file, if `hold.p.a`
 * exists, the attempt creates `held.p.a` and waits while `hold.p.a` exists; then, if `fail.p.a`
 * exists, it fails.
 */
final case class MdsTestHooks(points: Map[String, String]) {
  def pause(point: String): Unit = points.get(point).foreach(MdsTestHooks.pauseAt)

  private def taskFile(kind: String, tag: String): Option[java.nio.file.Path] =
    points.get("taskHooks").map(d => java.nio.file.Paths.get(d, s"$kind.$tag"))

  def taskMark(kind: String, tag: String): Unit = taskFile(kind, tag).foreach { f =>
    if (!java.nio.file.Files.exists(f)) java.nio.file.Files.write(f, Array.emptyByteArray)
  }

  /** Before a task attempt's second shard file: held while `hold.<tag>` exists, then failed if `fail.<tag>` exists. */
  def beforeSecondFile(tag: String): Unit = {
    taskFile("hold", tag).filter(java.nio.file.Files.exists(_)).foreach { hold =>
      taskMark("held", tag)
      MdsTestHooks.waitWhileExists(hold)
    }
    if (taskFile("fail", tag).exists(java.nio.file.Files.exists(_))) {
      throw new RuntimeException(s"injected failure of attempt $tag before its second shard file")
    }
  }
}

object MdsTestHooks {
  private val Points = Seq("beforeCommit", "beforePublish", "taskHooks")

  def apply(session: SparkSession): MdsTestHooks = MdsTestHooks(Points.flatMap { p =>
    session.conf.getOption(s"spark.mds.test.$p").filter(_.nonEmpty).map(p -> _)
  }.toMap)

  private def pauseAt(marker: String): Unit = {
    val p = java.nio.file.Paths.get(marker)
    java.nio.file.Files.write(p, Array.emptyByteArray)
    waitWhileExists(p)
  }

  private def waitWhileExists(p: java.nio.file.Path): Unit = {
    val deadline = System.nanoTime() + 600L * 1000000000L
    while (java.nio.file.Files.exists(p) && System.nanoTime() < deadline) Thread.sleep(20)
  }
}

/**
 * The driver side of a write (docs/format.md section 6): plan the layout, run the tasks, build
 * `index.json` from their messages, publish it atomically after checking that nobody changed it,
 * then remove unreferenced files of this job (and, on overwrite, the replaced shards).
 */
object MdsWriteJob {
  // slf4j, not Spark's Logging trait: its compiled forwarders differ between Spark lines (4.1's reference
  // Logging.MDC, absent from 4.0).
  private val log = org.slf4j.LoggerFactory.getLogger(getClass)
  private val random = new SecureRandom()

  def newJobId(): String = { val b = new Array[Byte](6); random.nextBytes(b); b.map(x => f"${x & 0xff}%02x").mkString }

  def hadoopConf(session: SparkSession, options: Map[String, String]): Configuration =
    session.sessionState.newHadoopConfWithOptions(options)

  /** True when `path` holds an MDS dataset (an index.json). */
  def exists(session: SparkSession, path: String, options: Map[String, String]): Boolean = {
    val dir = new Path(path)
    val conf = hadoopConf(session, options)
    MdsFiles.fs(dir, conf).exists(new Path(dir, MdsIndex.FileName))
  }

  /**
   * Writes `data` to the dataset at `path`. `tableSchema` (a catalog table's declared schema) becomes
   * the logical schema when it matches the data's types, so the dataset keeps the table's nullability.
   * `partitionColumns` makes a partitioned dataset (docs/format.md section 8).
   */
  def write(data: DataFrame, path: String, options: Map[String, String], overwrite: Boolean,
      tableSchema: Option[StructType] = None, partitionColumns: Seq[String] = Nil): Unit = {
    val session = data.sparkSession
    val opts = new MdsOptions(options)
    val dir = new Path(path)
    val conf = hadoopConf(session, options)
    val fs = MdsFiles.fs(dir, conf)
    val qualified = fs.makeQualified(dir)
    val where = qualified.toString
    val startBytes = MdsFiles.readIndexBytes(qualified, conf)
    val existing = startBytes.map(b => MdsIndex.parse(b, s"$where/${MdsIndex.FileName}"))
    val fullSchema = tableSchema.filter(t => SchemaConverter.sameIgnoringNullability(t, data.schema)).getOrElse(data.schema)
    val partitioning = MdsPartitioning.forWrite(fullSchema, partitionColumns)
    val schema = StructType(fullSchema.filterNot(f => partitioning.names.contains(f.name)))
    // Dynamic partition overwrite would replace only the partitions written; this source replaces the
    // dataset, so it refuses rather than delete what the user means to keep.
    val overwriteMode = options.collectFirst { case (k, v) if k.equalsIgnoreCase("partitionOverwriteMode") => v }
      .getOrElse(session.conf.get("spark.sql.sources.partitionOverwriteMode", "static"))
    if (overwrite && !partitioning.isEmpty && overwriteMode.equalsIgnoreCase("dynamic")) {
      throw new MdsException(s"dynamic partition overwrite is not supported by the mds source ($where): an overwrite " +
        "replaces the whole dataset. Set spark.sql.sources.partitionOverwriteMode=static to replace it, or append")
    }

    val appending = existing.exists(idx => !overwrite && (idx.shards.nonEmpty || idx.sparkMds.isDefined))
    val layout = existing match {
      case Some(idx) if appending =>
        val had = MdsPartitioning.of(idx, where)
        if (had.names != partitioning.names) {
          def show(p: MdsPartitioning) = if (p.isEmpty) "no partition columns" else s"partitionBy(${p.names.mkString(", ")})"
          throw new MdsException(s"cannot append to the MDS dataset at $where with ${show(partitioning)}: it was written " +
            s"with ${show(had)}. Append with the dataset's partitioning, or overwrite it")
        }
        val old = SchemaConverter.readLayout(idx, where, MdsReadSupport.peeker(idx, qualified, conf))
        SchemaConverter.appendLayout(old, schema, opts, where)
      case _ => SchemaConverter.writeLayout(schema, opts)
    }
    if (opts.compression.exists(_.family == "lz4")) {
      log.warn(s"writing $where with lz4 compression, an spark-mds extension that mosaicml-streaming cannot read")
    }

    val jobId = newJobId()
    fs.mkdirs(qualified)
    val hooks = MdsTestHooks(session)
    val task = MdsWriteTask(where, jobId, layout, fullSchema, partitioning, opts.compression, opts.hashes, opts.sizeLimit,
      new SerializableConfiguration(conf), hooks)
    val rdd = (if (partitioning.isEmpty) data else sortedByPartition(data, partitioning)).queryExecution.toRdd
    val meta = MdsPartitioning.meta(layout.sparkMeta, partitioning)
    // From here on the job ends in a commit or an abort, both of which delete the marker first.
    MdsFiles.createJobMarker(qualified, conf, jobId)
    val (commits, index) = try {
      val done = session.sparkContext.runJob(rdd, (ctx: TaskContext, it: Iterator[InternalRow]) => task.run(ctx, it))
      hooks.pause("beforeCommit")
      val newShards = done.sortBy(_.partition).toSeq.flatMap(_.shards)
      val index = existing match {
        case Some(idx) if !overwrite => MdsIndex(idx.shards ++ newShards, meta, idx.extra)
        case Some(idx) => MdsIndex(newShards, meta, idx.extra)
        case None => MdsIndex(newShards, meta)
      }
      // Optimistic concurrency: the index must still be the one this job started from.
      MdsFiles.publishIndexIfUnchanged(qualified, conf, MdsIndex.toBytes(index), jobId, startBytes, where,
        () => hooks.pause("beforePublish"))
      (done, index)
    } catch {
      case t: Throwable =>
        abort(qualified, conf, jobId, !partitioning.isEmpty)
        throw t
    }

    // Published: end the job, then remove its unreferenced files (failed or duplicate attempts; an
    // attempt still writing removes its own) and the replaced shards.
    val referenced = commits.iterator.flatMap(_.shards).flatMap(_.basenames).toSet
    val replaced = existing.filter(_ => overwrite)
    try {
      MdsFiles.deleteJobMarker(qualified, conf, jobId)
      MdsFiles.deleteAll(qualified, conf, MdsFiles.listJobFiles(qualified, conf, jobPrefix(jobId), !partitioning.isEmpty)
        .filterNot(referenced))
      replaced.foreach { old =>
        MdsFiles.deleteAll(qualified, conf, old.shards.flatMap(_.basenames).filterNot(referenced).distinct)
      }
    } catch {
      case e: Exception => log.warn(s"could not remove unreferenced files under $where: $e")
    }
    writePartitionIndexes(qualified, conf, jobId, index, partitioning,
      replaced.map(old => MdsPartitioning.of(old, where)).getOrElse(MdsPartitioning.Unpartitioned), replaced)
  }

  /**
   * Each partition directory's own `index.json` (a view of the root index, which stays the record):
   * rewritten for every partition of the root, and removed from the partitions an overwrite replaced.
   */
  private def writePartitionIndexes(dir: Path, conf: Configuration, jobId: String, root: MdsIndex,
      partitioning: MdsPartitioning, replacedPartitioning: MdsPartitioning, replaced: Option[MdsIndex]): Unit = {
    val prefixes = root.shards.map(s => partitioning.dirPrefix(s.rawData.basename)).distinct
    if (!partitioning.isEmpty) prefixes.foreach { p =>
      MdsFiles.publishIndex(new Path(dir, p), conf, MdsIndex.toBytes(MdsPartitioning.partitionIndex(root, p)), jobId)
    }
    if (!replacedPartitioning.isEmpty) replaced.foreach { old =>
      old.shards.map(s => replacedPartitioning.dirPrefix(s.rawData.basename)).distinct.filterNot(prefixes.contains).foreach { p =>
        try {
          val f = MdsFiles.fs(dir, conf)
          f.delete(new Path(new Path(dir, p), MdsIndex.FileName), false)
          // Then the partition's directories, from the deepest, while they are empty.
          p.split('/').indices.reverse.map(i => new Path(dir, p.split('/').take(i + 1).mkString("/")))
            .takeWhile(d => f.listStatus(d).isEmpty).foreach(d => f.delete(d, false))
        } catch {
          case e: Exception => log.warn(s"could not remove the replaced partition $dir/$p: $e")
        }
      }
    }
  }

  /**
   * The rows of each task grouped by partition values, in their order otherwise (as Spark's file
   * sources do, a local sort: one shard writer open at a time, whatever the number of partitions).
   */
  private def sortedByPartition(data: DataFrame, partitioning: MdsPartitioning): DataFrame = {
    val seq = "__mds_row_order"
    data.withColumn(seq, monotonically_increasing_id())
      .sortWithinPartitions((partitioning.names :+ seq).map(n => col(s"`$n`")): _*)
      .drop(seq)
  }

  /** The prefix of every shard file of a job. */
  def jobPrefix(jobId: String): String = s"shard.$jobId."

  /** Ends a failed job: its marker first (docs/format.md section 6), then every file it wrote. */
  private def abort(dir: Path, conf: Configuration, jobId: String, partitioned: Boolean): Unit = {
    try {
      MdsFiles.deleteJobMarker(dir, conf, jobId)
      MdsFiles.deleteAll(dir, conf, MdsFiles.listJobFiles(dir, conf, jobPrefix(jobId), partitioned))
    } catch { case e: Exception => log.warn(s"could not remove the files of an aborted write under $dir: $e") }
  }
}
