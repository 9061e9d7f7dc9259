package io.sparkmds.format

import java.nio.{ByteBuffer, ByteOrder}
import java.nio.charset.StandardCharsets

/**
 * A growable little-endian byte buffer. Samples are encoded straight into it, so encoding a row
 * allocates nothing once the buffer has reached its working size.
 */
final class ByteBuf(initialCapacity: Int = 1 << 16) {
  private var arr: Array[Byte] = new Array[Byte](math.max(16, initialCapacity))
  private var bb: ByteBuffer = ByteBuffer.wrap(arr).order(ByteOrder.LITTLE_ENDIAN)
  private var pos: Int = 0

  def array: Array[Byte] = arr
  def position: Int = pos
  def position_=(p: Int): Unit = pos = p
  def clear(): Unit = pos = 0

  /** Growth stops at this capacity while it suffices (0: no cap), so a buffer sized by a shard limit
   *  does not double past it. */
  var softMax: Long = 0L

  /** Makes room for `n` more bytes. */
  def ensure(n: Int): Unit = {
    val need = pos.toLong + n
    if (need > arr.length) {
      if (need > Int.MaxValue - 16) {
        throw new MdsException(s"a shard buffer cannot grow past 2 GiB (needed $need bytes); lower size_limit")
      }
      var cap = arr.length.toLong * 2
      while (cap < need) cap *= 2
      if (softMax > 0 && need <= softMax) cap = math.min(cap, softMax)
      val next = new Array[Byte](math.min(cap, Int.MaxValue - 16L).toInt)
      System.arraycopy(arr, 0, next, 0, pos)
      arr = next
      bb = ByteBuffer.wrap(arr).order(ByteOrder.LITTLE_ENDIAN)
    }
  }

  /** Reserves `n` bytes and returns their start offset. */
  def skip(n: Int): Int = { ensure(n); val p = pos; pos += n; p }

  def putByte(v: Int): Unit = { ensure(1); arr(pos) = v.toByte; pos += 1 }
  def putShort(v: Int): Unit = { ensure(2); bb.putShort(pos, v.toShort); pos += 2 }
  def putInt(v: Int): Unit = { ensure(4); bb.putInt(pos, v); pos += 4 }
  def putLong(v: Long): Unit = { ensure(8); bb.putLong(pos, v); pos += 8 }
  def putFloat(v: Float): Unit = { ensure(4); bb.putFloat(pos, v); pos += 4 }
  def putDouble(v: Double): Unit = { ensure(8); bb.putDouble(pos, v); pos += 8 }
  def putIntAt(at: Int, v: Int): Unit = bb.putInt(at, v)
  def putBytes(src: Array[Byte]): Unit = putBytes(src, 0, src.length)
  def putBytes(src: Array[Byte], off: Int, len: Int): Unit = {
    ensure(len); System.arraycopy(src, off, arr, pos, len); pos += len
  }
  def putAscii(s: String): Unit = {
    val n = s.length
    ensure(n)
    var i = 0
    while (i < n) { arr(pos + i) = s.charAt(i).toByte; i += 1 }
    pos += n
  }
  def putUtf8(s: String): Unit = putBytes(s.getBytes(StandardCharsets.UTF_8))

  /** Moves bytes [from, position) to offset `to`. */
  def moveTail(from: Int, to: Int): Unit = {
    val n = pos - from
    if (to <= from) System.arraycopy(arr, from, arr, to, n)
    else { // rare (the header reserve grew): the move may need a larger array
      val tail = java.util.Arrays.copyOfRange(arr, from, from + n)
      pos = to
      ensure(n)
      System.arraycopy(tail, 0, arr, to, n)
    }
    pos = to + n
  }

  def toByteArray: Array[Byte] = java.util.Arrays.copyOf(arr, pos)
}

/** Little-endian reads from a byte array (the decoded shard). */
object LE {
  @inline def u8(a: Array[Byte], i: Int): Int = a(i) & 0xff
  @inline def i16(a: Array[Byte], i: Int): Short = ((a(i) & 0xff) | (a(i + 1) << 8)).toShort
  @inline def u16(a: Array[Byte], i: Int): Int = (a(i) & 0xff) | ((a(i + 1) & 0xff) << 8)
  @inline def i32(a: Array[Byte], i: Int): Int =
    (a(i) & 0xff) | ((a(i + 1) & 0xff) << 8) | ((a(i + 2) & 0xff) << 16) | (a(i + 3) << 24)
  @inline def u32(a: Array[Byte], i: Int): Long = i32(a, i) & 0xffffffffL
  @inline def i64(a: Array[Byte], i: Int): Long =
    (i32(a, i) & 0xffffffffL) | (i32(a, i + 4).toLong << 32)
  @inline def f32(a: Array[Byte], i: Int): Float = java.lang.Float.intBitsToFloat(i32(a, i))
  @inline def f64(a: Array[Byte], i: Int): Double = java.lang.Double.longBitsToDouble(i64(a, i))
  @inline def f16(a: Array[Byte], i: Int): Float = Half.toFloat(u16(a, i))
}

/** IEEE 754 half precision conversions (Java 17 has no Float.float16ToFloat). */
object Half {
  def toFloat(h: Int): Float = {
    val sign = (h >>> 15) & 1
    val exp = (h >>> 10) & 0x1f
    val mant = h & 0x3ff
    val bits =
      if (exp == 0) {
        if (mant == 0) sign << 31
        else { // subnormal: normalise
          var e = -14
          var m = mant
          while ((m & 0x400) == 0) { m <<= 1; e -= 1 }
          (sign << 31) | ((e + 127) << 23) | ((m & 0x3ff) << 13)
        }
      } else if (exp == 0x1f) (sign << 31) | 0x7f800000 | (mant << 13)
      else (sign << 31) | ((exp - 15 + 127) << 23) | (mant << 13)
    java.lang.Float.intBitsToFloat(bits)
  }

  /** Rounds to nearest, ties to even, like numpy's float16 cast. */
  def fromFloat(f: Float): Int = {
    val bits = java.lang.Float.floatToRawIntBits(f)
    val sign = (bits >>> 16) & 0x8000
    val absBits = bits & 0x7fffffff
    if (absBits >= 0x7f800000) { // inf or nan
      if (absBits == 0x7f800000) sign | 0x7c00 else sign | 0x7e00 | ((absBits >>> 13) & 0x3ff)
    } else if (absBits >= 0x477ff000) sign | 0x7c00 // rounds to >= 65520: overflow to inf
    else if (absBits < 0x38800000) { // half subnormal or zero
      if (absBits < 0x33000000) sign // below half of the smallest subnormal
      else {
        val e = absBits >>> 23
        val m = (absBits & 0x7fffff) | 0x800000
        val s = 126 - e // bits of the 24-bit mantissa that do not fit a half subnormal
        val kept = m >>> s
        val rem = m & ((1 << s) - 1)
        val half = 1 << (s - 1)
        val r = if (rem > half || (rem == half && (kept & 1) == 1)) kept + 1 else kept
        sign | r
      }
    } else {
      val e = (absBits >>> 23) - 127 + 15
      val m = absBits & 0x7fffff
      val kept = (e << 10) | (m >>> 13)
      val rem = m & 0x1fff
      val r = if (rem > 0x1000 || (rem == 0x1000 && (kept & 1) == 1)) kept + 1 else kept
      sign | r
    }
  }
}
