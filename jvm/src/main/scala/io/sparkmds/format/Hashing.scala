package io.sparkmds.format

import java.security.MessageDigest

import net.jpountz.xxhash.XXHashFactory

/**
 * File hashes as the reference writes them: lowercase `hexdigest()` of hashlib algorithms and of
 * xxh32/xxh64. blake2 and xxh3/xxh128 have no implementation in Spark's jars, so they fail clearly.
 */
object Hashing {
  private val digests: Map[String, String] = Map(
    "md5" -> "MD5", "sha1" -> "SHA-1", "sha224" -> "SHA-224", "sha256" -> "SHA-256", "sha384" -> "SHA-384",
    "sha512" -> "SHA-512", "sha3_224" -> "SHA3-224", "sha3_256" -> "SHA3-256", "sha3_384" -> "SHA3-384",
    "sha3_512" -> "SHA3-512")
  val supported: Seq[String] = (digests.keys.toSeq ++ Seq("xxh32", "xxh64")).sorted
  private val referenceOnly = Set("blake2b", "blake2s", "xxh128", "xxh3_64", "xxh3_128")

  /** Validates a hash name; `what` names the option in errors. */
  def check(name: String, what: String = "hashes"): String = {
    if (supported.contains(name)) name
    else if (referenceOnly(name)) throw new MdsException(
      s"$what: hash '$name' is not available on the JVM (Spark's jars have no implementation of it); " +
        s"use one of ${supported.mkString(", ")} (e.g. sha1 or xxh64)")
    else throw new MdsException(s"$what: unknown hash '$name'; use one of ${supported.mkString(", ")}")
  }

  private val hexChars = "0123456789abcdef".toCharArray
  private def hex(b: Array[Byte]): String = {
    val c = new Array[Char](b.length * 2)
    var i = 0
    while (i < b.length) { c(2 * i) = hexChars((b(i) >> 4) & 0xf); c(2 * i + 1) = hexChars(b(i) & 0xf); i += 1 }
    new String(c)
  }

  def hexdigest(name: String, data: Array[Byte], off: Int, len: Int): String = name match {
    case "xxh32" =>
      val v = XXHashFactory.fastestInstance().hash32().hash(data, off, len, 0)
      f"${v & 0xffffffffL}%08x"
    case "xxh64" =>
      val v = XXHashFactory.fastestInstance().hash64().hash(data, off, len, 0L)
      f"$v%016x"
    case _ =>
      val md = MessageDigest.getInstance(digests.getOrElse(name, throw new MdsException(s"unknown hash '$name'")))
      md.update(data, off, len)
      hex(md.digest())
  }
}
