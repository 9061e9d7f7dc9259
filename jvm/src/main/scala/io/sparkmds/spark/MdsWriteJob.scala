package io.sparkmds.spark

import java.security.SecureRandom

import scala.collection.mutable.ArrayBuffer

import io.sparkmds.format._
import org.apache.hadoop.conf.Configuration
import org.apache.hadoop.fs.Path
import org.apache.spark.TaskContext
import org.apache.spark.internal.Logging
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
    conf: SerializableConfiguration) {

  def run(ctx: TaskContext, rows: Iterator[InternalRow]): MdsTaskCommit = {
    val partition = ctx.partitionId()
    val attempt = ctx.taskAttemptId()
    val writer = new MdsTaskWriter(this, partition, attempt)
    try {
      while (rows.hasNext) writer.write(rows.next())
      val shards = writer.commit()
      // An attempt killed meanwhile (a speculative duplicate whose twin won, or a task of a failed
      // job) would otherwise return normally and leave its files behind: the driver's cleanup of
      // unreferenced files may already have run.
      if (ctx.isInterrupted()) throw new org.apache.spark.TaskKilledException("the task was killed after writing its shards")
      MdsTaskCommit(partition, attempt, shards)
    } catch {
      case t: Throwable =>
        writer.abort()
        throw t
    }
  }
}

/** Writes one task attempt's rows as shards through a Hadoop FileSystem. */
final class MdsTaskWriter(task: MdsWriteTask, partition: Int, attempt: Long) {
  private val dir = new Path(task.dir)
  private val fs = MdsFiles.fs(dir, task.conf.value)
  private val written = ArrayBuffer.empty[String]
  private val sink = new ShardSink {
    def nextBasename(i: Int): String = f"shard.${task.jobId}.$partition%05d.$attempt.$i%05d.mds"
    def write(basename: String, data: Array[Byte], off: Int, len: Int): Unit = {
      written += basename
      MdsFiles.writeFile(fs, new Path(dir, basename), data, off, len)
    }
  }
  private val serializer = new MdsSerializer(task.layout, task.inputSchema)
  private val shards = new ShardWriter(task.layout.storageNames, task.layout.storageEncodings.map(_.name),
    task.layout.storageSizes, task.compression, task.hashes, task.sizeLimit, sink)

  def write(row: InternalRow): Unit = serializer.write(row, shards)
  def commit(): Seq[ShardEntry] = shards.finish()
  def abort(): Unit = written.foreach { b => try fs.delete(new Path(dir, b), false) catch { case _: Exception => () } }
}

/**
 * Fault-injection points of the driver's commit, for tests only (tests/reliability): when the
 * session's runtime conf sets `spark.mds.test.<point>` to a file path, the driver creates that file
 * on reaching the point and waits while it exists (at most 10 minutes), so that a test can kill the
 * driver there or let two writers meet. Points: `beforeCommit` (every task has committed, nothing
 * is checked or published yet) and `beforePublish` (the optimistic check passed; under the index
 * lock on local file systems).
 */
final class MdsTestHooks(session: SparkSession) {
  private val points: Map[String, String] = Seq("beforeCommit", "beforePublish").flatMap { p =>
    session.conf.getOption(s"spark.mds.test.$p").filter(_.nonEmpty).map(p -> _)
  }.toMap

  def pause(point: String): Unit = points.get(point).foreach { marker =>
    val p = java.nio.file.Paths.get(marker)
    java.nio.file.Files.write(p, Array.emptyByteArray)
    val deadline = System.nanoTime() + 600L * 1000000000L
    while (java.nio.file.Files.exists(p) && System.nanoTime() < deadline) Thread.sleep(20)
  }
}

/**
 * The driver side of a write (docs/format.md section 6): plan the layout, run the tasks, build
 * `index.json` from their messages, publish it atomically after checking that nobody changed it,
 * then remove unreferenced files of this job (and, on overwrite, the replaced shards).
 */
object MdsWriteJob extends Logging {
  private val random = new SecureRandom()

  def newJobId(): String = { val b = new Array[Byte](6); random.nextBytes(b); b.map(x => f"${x & 0xff}%02x").mkString }

  def hadoopConf(session: SparkSession, options: Map[String, String]): Configuration = session match {
    case s: org.apache.spark.sql.classic.SparkSession => s.sessionState.newHadoopConfWithOptions(options)
    case s => new Configuration(s.sparkContext.hadoopConfiguration)
  }

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
      logWarning(s"writing $where with lz4 compression, an spark-mds extension that mosaicml-streaming cannot read")
    }

    val jobId = newJobId()
    val prefix = s"shard.$jobId."
    fs.mkdirs(qualified)
    val task = MdsWriteTask(where, jobId, layout, schema, opts.compression, opts.hashes, opts.sizeLimit,
      new SerializableConfiguration(conf))
    val rdd = data.queryExecution.toRdd
    val hooks = new MdsTestHooks(session)
    val commits: Array[MdsTaskCommit] = try {
      val done = session.sparkContext.runJob(rdd, (ctx: TaskContext, it: Iterator[InternalRow]) => task.run(ctx, it))
      hooks.pause("beforeCommit")
      done
    } catch {
      case t: Throwable =>
        abort(qualified, conf, prefix)
        throw t
    }

    try {
      val newShards = commits.sortBy(_.partition).toSeq.flatMap(_.shards)
      val index = existing match {
        case Some(idx) if !overwrite => MdsIndex(idx.shards ++ newShards, layout.sparkMeta, idx.extra)
        case Some(idx) => MdsIndex(newShards, layout.sparkMeta, idx.extra)
        case None => MdsIndex(newShards, layout.sparkMeta)
      }
      // Optimistic concurrency: the index must still be the one this job started from.
      MdsFiles.publishIndexIfUnchanged(qualified, conf, MdsIndex.toBytes(index), jobId, startBytes, where,
        () => hooks.pause("beforePublish"))
    } catch {
      case t: Throwable =>
        abort(qualified, conf, prefix)
        throw t
    }

    // Published: remove this job's unreferenced files (failed or duplicate attempts) and replaced shards.
    val referenced = commits.iterator.flatMap(_.shards).flatMap(_.basenames).toSet
    try {
      MdsFiles.deleteAll(qualified, conf, MdsFiles.listWithPrefix(qualified, conf, prefix).filterNot(referenced))
      if (overwrite) existing.foreach { old =>
        val keep = referenced
        MdsFiles.deleteAll(qualified, conf, old.shards.flatMap(_.basenames).filterNot(keep).distinct)
      }
    } catch {
      case e: Exception => logWarning(s"could not remove unreferenced files under $where: $e")
    }
  }

  private def abort(dir: Path, conf: Configuration, prefix: String): Unit = {
    try MdsFiles.deleteAll(dir, conf, MdsFiles.listWithPrefix(dir, conf, prefix))
    catch { case e: Exception => logWarning(s"could not remove the files of an aborted write under $dir: $e") }
  }
}
