package io.sparkmds.spark

import java.io.{FileNotFoundException, IOException}
import java.nio.ByteBuffer
import java.nio.channels.{FileChannel, FileLock, OverlappingFileLockException}
import java.nio.file.{AtomicMoveNotSupportedException, FileAlreadyExistsException, Files, NoSuchFileException, StandardCopyOption, StandardOpenOption}
import java.nio.file.attribute.BasicFileAttributes
import java.util.Locale

import io.sparkmds.format._
import org.apache.hadoop.conf.Configuration
import org.apache.hadoop.fs.{FileContext, FileSystem, Options, Path, RawLocalFileSystem}

/** Another writer changed `index.json` while a write job ran (docs/format.md section 6). */
class MdsConcurrentWriteException(message: String) extends MdsException(message)

/** Hadoop FileSystem IO for MDS datasets: any scheme the cluster has configured. */
object MdsFiles {
  /** Object stores whose single PUT is atomic and whose rename is a copy. */
  private val objectStores = Set("s3", "s3a", "s3n", "gs", "oss", "cos", "cosn", "obs", "r2")

  /** The file system of `dir`; checksummed local file systems are bypassed so no `.crc` side files appear. */
  def fs(dir: Path, conf: Configuration): FileSystem = dir.getFileSystem(conf) match {
    case c: org.apache.hadoop.fs.ChecksumFileSystem => c.getRawFileSystem
    case f => f
  }

  /** Files whose index entry claims more than this are checked for their size before the buffer is allocated. */
  private val CheckSizeAbove = 16L << 20

  def readFully(fs: FileSystem, p: Path, expected: Long = -1L): Array[Byte] = {
    if (expected > CheckSizeAbove) {
      // A hostile or stale index must not make the reader allocate gigabytes for a small file.
      val actual = try fs.getFileStatus(p).getLen catch {
        case e: FileNotFoundException => throw new MdsException(s"MDS shard $p listed in index.json does not exist", e)
      }
      if (actual != expected) {
        throw new MdsException(s"MDS file $p has $actual bytes, but its index entry says $expected; the file is truncated or was replaced")
      }
    }
    val len = if (expected >= 0) expected else fs.getFileStatus(p).getLen
    if (len > Int.MaxValue - 16) throw new MdsException(s"MDS file $p is larger than 2 GiB ($len bytes)")
    val buf = new Array[Byte](len.toInt)
    val in = try fs.open(p) catch {
      case e: FileNotFoundException => throw new MdsException(s"MDS shard $p listed in index.json does not exist", e)
    }
    try {
      var pos = 0
      var n = 0
      while (pos < buf.length && { n = in.read(buf, pos, buf.length - pos); n > 0 }) pos += n
      if (pos < buf.length) {
        throw new MdsException(s"MDS file $p is shorter ($pos bytes) than the ${buf.length} bytes its index entry says")
      }
      if (expected >= 0 && in.read() != -1) {
        throw new MdsException(s"MDS file $p is longer than the $expected bytes its index entry says")
      }
    } finally in.close()
    buf
  }

  /** The bytes of `<dir>/index.json`, or None when there is none. */
  def readIndexBytes(dir: Path, conf: Configuration): Option[Array[Byte]] = {
    val f = fs(dir, conf)
    val p = new Path(dir, MdsIndex.FileName)
    try Some(readFully(f, p)) catch {
      case _: FileNotFoundException => None
      case e: MdsException if e.getCause.isInstanceOf[FileNotFoundException] => None
    }
  }

  def readIndex(dir: Path, conf: Configuration): Option[(MdsIndex, Array[Byte])] =
    readIndexBytes(dir, conf).map(b => (MdsIndex.parse(b, s"${new Path(dir, MdsIndex.FileName)}"), b))

  def writeFile(fs: FileSystem, p: Path, data: Array[Byte], off: Int, len: Int): Unit = {
    val out = fs.create(p, false, 1 << 20)
    try out.write(data, off, len) finally out.close()
  }

  /**
   * Publishes `index.json` atomically: one PUT on object stores, else a temporary file renamed over
   * the old index.
   */
  def publishIndex(dir: Path, conf: Configuration, bytes: Array[Byte], jobId: String): Unit = {
    val f = fs(dir, conf)
    val target = new Path(dir, MdsIndex.FileName)
    val scheme = Option(f.getUri.getScheme).getOrElse("").toLowerCase(Locale.ROOT)
    if (objectStores(scheme)) {
      val out = f.create(target, true)
      try out.write(bytes) finally out.close()
    } else {
      val tmp = new Path(dir, s".index.json.$jobId.tmp")
      writeFile(f, tmp, bytes, 0, bytes.length)
      try {
        if (f.isInstanceOf[org.apache.hadoop.fs.RawLocalFileSystem]) {
          // POSIX rename(2) replaces the target atomically.
          if (!f.rename(tmp, target)) throw new IOException(s"could not rename $tmp to $target")
        } else FileContext.getFileContext(f.getUri, conf).rename(tmp, target, Options.Rename.OVERWRITE)
      } catch {
        case _: org.apache.hadoop.fs.UnsupportedFileSystemException | _: UnsupportedOperationException =>
          // No AbstractFileSystem binding for this scheme: fall back to delete + rename.
          f.delete(target, false)
          if (!f.rename(tmp, target)) throw new IOException(s"could not rename $tmp to $target")
      } finally {
        if (f.exists(tmp)) f.delete(tmp, false)
      }
    }
  }

  private def sameBytes(a: Option[Array[Byte]], b: Option[Array[Byte]]): Boolean = (a, b) match {
    case (None, None) => true
    case (Some(x), Some(y)) => java.util.Arrays.equals(x, y)
    case _ => false
  }

  private def changed(where: String): MdsConcurrentWriteException = new MdsConcurrentWriteException(
    s"the MDS dataset at $where was changed by another writer while this job ran (its index.json differs from the " +
      "one read at the start); this job's files were removed, retry the write")

  /**
   * Publishes `index.json` if it still holds `expected` (None: there was no index), the optimistic
   * check of docs/format.md section 6; `beforePublish` runs after the check, just before the index
   * is replaced (a test hook).
   *
   * On a local file system the check and the replacement are one atomic step for every writer that
   * follows this protocol (the JVM source and the Python fallback, in any process of the host): the
   * writer holds an fcntl lock on the current index.json (checking, once locked, that the file is
   * still the index, as the previous holder may have replaced it), compares its bytes and renames
   * the new index over it; a first index is created with link(2), which fails if one appeared. A
   * writer that dies releases its lock with its process. Other file systems (HDFS, object stores)
   * check the bytes just before the rename or PUT, which leaves a window of milliseconds.
   *
   * @throws MdsConcurrentWriteException the index changed since the job read it
   */
  def publishIndexIfUnchanged(dir: Path, conf: Configuration, bytes: Array[Byte], jobId: String,
      expected: Option[Array[Byte]], where: String, beforePublish: () => Unit): Unit = fs(dir, conf) match {
    case local: RawLocalFileSystem => publishLocal(local.pathToFile(dir).toPath, bytes, jobId, expected, where, beforePublish)
    case _ =>
      if (!sameBytes(readIndexBytes(dir, conf), expected)) throw changed(where)
      beforePublish()
      publishIndex(dir, conf, bytes, jobId)
  }

  private def publishLocal(dir: java.nio.file.Path, bytes: Array[Byte], jobId: String, expected: Option[Array[Byte]],
      where: String, beforePublish: () => Unit): Unit = {
    val target = dir.resolve(MdsIndex.FileName)
    val tmp = dir.resolve(s".${MdsIndex.FileName}.$jobId.tmp")
    val out = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE)
    try {
      val buf = ByteBuffer.wrap(bytes)
      while (buf.hasRemaining) out.write(buf)
      out.force(true)
    } finally out.close()
    try {
      withIndexLock(target) { current =>
        if (!sameBytes(current, expected)) throw changed(where)
        beforePublish()
        if (current.isEmpty) {
          try Files.createLink(target, tmp) catch { case _: FileAlreadyExistsException => throw changed(where) }
        } else {
          try Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING)
          catch { case _: AtomicMoveNotSupportedException => Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING) }
        }
      }
    } finally Files.deleteIfExists(tmp)
  }

  private def fileKey(p: java.nio.file.Path): Option[AnyRef] =
    try Option(Files.readAttributes(p, classOf[BasicFileAttributes]).fileKey()) catch { case _: NoSuchFileException => None }

  /**
   * Runs `body` with the current bytes of `target` (None: no such file) while holding an exclusive
   * fcntl lock on it, once the locked file is known to still be `target`. The bytes are read through
   * the locked channel: closing another descriptor of the file would release a POSIX lock.
   */
  private def withIndexLock[T](target: java.nio.file.Path)(body: Option[Array[Byte]] => T): T = {
    val deadline = System.nanoTime() + 600L * 1000000000L
    var result: Option[T] = None
    while (result.isEmpty) {
      val before = fileKey(target)
      val channel = try Some(FileChannel.open(target, StandardOpenOption.READ, StandardOpenOption.WRITE)) catch {
        case _: NoSuchFileException => None
      }
      channel match {
        case None if before.isEmpty => result = Some(body(None))
        case None => () // replaced between the two calls: look again
        case Some(ch) =>
          try {
            var lock: FileLock = null
            while (lock == null) {
              // Another thread of this JVM holding the lock: wait for it like another process.
              try lock = ch.lock() catch {
                case _: OverlappingFileLockException =>
                  if (System.nanoTime() > deadline) throw new IOException(s"timed out waiting for the lock on $target")
                  Thread.sleep(20)
              }
            }
            try {
              val now = fileKey(target)
              if (before.isDefined && now == before) {
                val size = ch.size()
                if (size > Int.MaxValue - 16) throw new MdsException(s"$target is larger than 2 GiB")
                val buf = ByteBuffer.allocate(size.toInt)
                while (buf.hasRemaining && ch.read(buf, buf.position().toLong) > 0) {}
                result = Some(body(Some(java.util.Arrays.copyOf(buf.array(), buf.position()))))
              } // else: the previous holder replaced the index, or it was replaced before we opened it
            } finally if (lock.isValid) lock.release()
          } finally ch.close()
      }
      if (result.isEmpty && System.nanoTime() > deadline) throw new IOException(s"timed out waiting for the lock on $target")
    }
    result.get
  }

  /**
   * The marker of write job `jobId` (docs/format.md section 6): it exists from before the job's
   * first task starts until its commit or abort, which delete it before they list the job's files.
   * A task attempt checks it before and after each file it writes, so no file of an ended job can
   * outlive its cleanup: one created before the driver's listing is listed, one created after it
   * finds the marker gone and is removed by its own task.
   */
  def jobMarker(jobId: String): String = s".mds-write.$jobId"

  def createJobMarker(dir: Path, conf: Configuration, jobId: String): Unit = {
    val out = fs(dir, conf).create(new Path(dir, jobMarker(jobId)), true)
    out.close()
  }

  def jobMarkerExists(f: FileSystem, dir: Path, jobId: String): Boolean = f.exists(new Path(dir, jobMarker(jobId)))

  def deleteJobMarker(dir: Path, conf: Configuration, jobId: String): Unit = fs(dir, conf).delete(new Path(dir, jobMarker(jobId)), false)

  /** Deletes `<dir>/<basename>` for each basename (already validated as safe). */
  def deleteAll(dir: Path, conf: Configuration, basenames: Iterable[String]): Unit = {
    val f = fs(dir, conf)
    basenames.foreach { b =>
      MdsIndex.checkBasename(b, "delete")
      try f.delete(new Path(dir, b), false) catch { case _: IOException => () }
    }
  }

  /**
   * The files of a write job under `dir` (names starting with `prefix`), as paths relative to `dir`:
   * directly in it, or anywhere below it for a partitioned dataset.
   */
  def listJobFiles(dir: Path, conf: Configuration, prefix: String, recursive: Boolean): Seq[String] = {
    val f = fs(dir, conf)
    try {
      if (!recursive) f.listStatus(dir).toSeq.filter(_.isFile).map(_.getPath.getName).filter(_.startsWith(prefix))
      else {
        val base = f.makeQualified(dir).toUri.getPath.stripSuffix("/") + "/"
        val it = f.listFiles(dir, true)
        val out = Seq.newBuilder[String]
        while (it.hasNext) {
          val p = it.next().getPath
          if (p.getName.startsWith(prefix)) out += p.toUri.getPath.stripPrefix(base)
        }
        out.result()
      }
    } catch { case _: FileNotFoundException => Nil }
  }
}
