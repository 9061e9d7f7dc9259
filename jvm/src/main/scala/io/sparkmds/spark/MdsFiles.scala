package io.sparkmds.spark

import java.io.{FileNotFoundException, IOException}
import java.util.Locale

import io.sparkmds.format._
import org.apache.hadoop.conf.Configuration
import org.apache.hadoop.fs.{FileContext, FileSystem, Options, Path}

/** Hadoop FileSystem IO for MDS datasets: any scheme the cluster has configured. */
object MdsFiles {
  /** Object stores whose single PUT is atomic and whose rename is a copy. */
  private val objectStores = Set("s3", "s3a", "s3n", "gs", "oss", "cos", "cosn", "obs", "r2")

  /** The file system of `dir`; checksummed local file systems are bypassed so no `.crc` side files appear. */
  def fs(dir: Path, conf: Configuration): FileSystem = dir.getFileSystem(conf) match {
    case c: org.apache.hadoop.fs.ChecksumFileSystem => c.getRawFileSystem
    case f => f
  }

  def readFully(fs: FileSystem, p: Path, expected: Long = -1L): Array[Byte] = {
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

  /** Deletes `<dir>/<basename>` for each basename (already validated as safe). */
  def deleteAll(dir: Path, conf: Configuration, basenames: Iterable[String]): Unit = {
    val f = fs(dir, conf)
    basenames.foreach { b =>
      MdsIndex.checkBasename(b, "delete")
      try f.delete(new Path(dir, b), false) catch { case _: IOException => () }
    }
  }

  /** Names of the files directly in `dir` that start with `prefix`. */
  def listWithPrefix(dir: Path, conf: Configuration, prefix: String): Seq[String] = {
    val f = fs(dir, conf)
    try f.listStatus(dir).toSeq.filter(_.isFile).map(_.getPath.getName).filter(_.startsWith(prefix))
    catch { case _: FileNotFoundException => Nil }
  }
}
