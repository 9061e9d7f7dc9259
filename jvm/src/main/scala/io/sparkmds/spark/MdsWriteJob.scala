package io.sparkmds.spark

import java.security.SecureRandom

import scala.collection.mutable.ArrayBuffer

import io.sparkmds.format._
import org.apache.hadoop.conf.Configuration
import org.apache.hadoop.fs.Path
import org.apache.spark.TaskContext
import org.apache.spark.sql.{DataFrame, SparkSession}
import org.apache.spark.sql.catalyst.InternalRow
import org.apache.spark.sql.types.StructType
import org.apache.spark.util.SerializableConfiguration

/** What a write task sends back to the driver: its shard entries, in write order. */
final case class MdsTaskCommit(partition: Int, taskAttemptId: Long, shards: Seq[ShardEntry]) extends Serializable

/**
 * Everything a write task needs, shipped to executors. Each task attempt writes uniquely named
 * shards `shard.<job>.<partition>.<attempt>.<seq>.mds[.ext]` and deletes them if it fails.
 */
final case class MdsWriteTask(
    dir: String,
    jobId: String,
    layout: MdsLayout,
    inputSchema: StructType,
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
 * the attempt removes its files and fails.
 */
final class MdsTaskWriter(task: MdsWriteTask, ctx: TaskContext, beforeSecondFile: () => Unit) {
  private val partition = ctx.partitionId()
  private val attempt = ctx.taskAttemptId()
  private val dir = new Path(task.dir)
  private val fs = MdsFiles.fs(dir, task.conf.value)
  private val written = ArrayBuffer.empty[String]
  private val sink = new ShardSink {
    def nextBasename(i: Int): String = f"${MdsWriteJob.jobPrefix(task.jobId)}$partition%05d.$attempt.$i%05d.mds"
    def write(basename: String, data: Array[Byte], off: Int, len: Int): Unit = {
      if (written.size == 1) beforeSecondFile()
      if (ctx.isInterrupted()) throw new org.apache.spark.TaskKilledException("the task was killed while writing shards")
      checkJobRunning()
      written += basename
      MdsFiles.writeFile(fs, new Path(dir, basename), data, off, len)
      checkJobRunning()
    }
  }
  private val serializer = new MdsSerializer(task.layout, task.inputSchema)
  private val shards = new ShardWriter(task.layout.storageNames, task.layout.storageEncodings.map(_.name),
    task.layout.storageSizes, task.compression, task.hashes, task.sizeLimit, sink)

  private def checkJobRunning(): Unit = if (!MdsFiles.jobMarkerExists(fs, dir, task.jobId)) {
    throw new MdsJobEndedException(s"write job ${task.jobId} of ${task.dir} has ended (it failed, or finished with " +
      s"another attempt of partition $partition): attempt $attempt removed its files")
  }

  def write(row: InternalRow): Unit = serializer.write(row, shards)
  def commit(): Seq[ShardEntry] = shards.finish()
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
   */
  def write(data: DataFrame, path: String, options: Map[String, String], overwrite: Boolean,
      tableSchema: Option[StructType] = None): Unit = {
    val session = data.sparkSession
    val opts = new MdsOptions(options)
    val dir = new Path(path)
    val conf = hadoopConf(session, options)
    val fs = MdsFiles.fs(dir, conf)
    val qualified = fs.makeQualified(dir)
    val where = qualified.toString
    val startBytes = MdsFiles.readIndexBytes(qualified, conf)
    val existing = startBytes.map(b => MdsIndex.parse(b, s"$where/${MdsIndex.FileName}"))
    val schema = tableSchema.filter(t => SchemaConverter.sameIgnoringNullability(t, data.schema)).getOrElse(data.schema)

    val layout = existing match {
      case Some(idx) if !overwrite && (idx.shards.nonEmpty || idx.sparkMds.isDefined) =>
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
    val task = MdsWriteTask(where, jobId, layout, schema, opts.compression, opts.hashes, opts.sizeLimit,
      new SerializableConfiguration(conf), hooks)
    val rdd = data.queryExecution.toRdd
    // From here on the job ends in a commit or an abort, both of which delete the marker first.
    MdsFiles.createJobMarker(qualified, conf, jobId)
    val (commits, existingShards) = try {
      val done = session.sparkContext.runJob(rdd, (ctx: TaskContext, it: Iterator[InternalRow]) => task.run(ctx, it))
      hooks.pause("beforeCommit")
      val newShards = done.sortBy(_.partition).toSeq.flatMap(_.shards)
      val index = existing match {
        case Some(idx) if !overwrite => MdsIndex(idx.shards ++ newShards, layout.sparkMeta, idx.extra)
        case Some(idx) => MdsIndex(newShards, layout.sparkMeta, idx.extra)
        case None => MdsIndex(newShards, layout.sparkMeta)
      }
      // Optimistic concurrency: the index must still be the one this job started from.
      MdsFiles.publishIndexIfUnchanged(qualified, conf, MdsIndex.toBytes(index), jobId, startBytes, where,
        () => hooks.pause("beforePublish"))
      (done, existing)
    } catch {
      case t: Throwable =>
        abort(qualified, conf, jobId)
        throw t
    }

    // Published: end the job, then remove its unreferenced files (failed or duplicate attempts; an
    // attempt still writing removes its own) and the replaced shards.
    val referenced = commits.iterator.flatMap(_.shards).flatMap(_.basenames).toSet
    try {
      MdsFiles.deleteJobMarker(qualified, conf, jobId)
      MdsFiles.deleteAll(qualified, conf, MdsFiles.listWithPrefix(qualified, conf, jobPrefix(jobId)).filterNot(referenced))
      if (overwrite) existingShards.foreach { old =>
        MdsFiles.deleteAll(qualified, conf, old.shards.flatMap(_.basenames).filterNot(referenced).distinct)
      }
    } catch {
      case e: Exception => log.warn(s"could not remove unreferenced files under $where: $e")
    }
  }

  /** The prefix of every shard file of a job. */
  def jobPrefix(jobId: String): String = s"shard.$jobId."

  /** Ends a failed job: its marker first (docs/format.md section 6), then every file it wrote. */
  private def abort(dir: Path, conf: Configuration, jobId: String): Unit = {
    try {
      MdsFiles.deleteJobMarker(dir, conf, jobId)
      MdsFiles.deleteAll(dir, conf, MdsFiles.listWithPrefix(dir, conf, jobPrefix(jobId)))
    } catch { case e: Exception => log.warn(s"could not remove the files of an aborted write under $dir: $e") }
  }
}
