package io.sparkmds.format

/** A numpy dtype that MDS can store, with its `ndarray` type code. */
sealed abstract class DType(val name: String, val code: Int, val size: Int, val isFloat: Boolean, val signed: Boolean)
    extends Serializable {
  def isInteger: Boolean = !isFloat
  override def toString: String = name
}

object DType {
  case object UInt8 extends DType("uint8", 8, 1, false, false)
  case object Int8 extends DType("int8", 9, 1, false, true)
  case object UInt16 extends DType("uint16", 16, 2, false, false)
  case object Int16 extends DType("int16", 17, 2, false, true)
  case object Float16 extends DType("float16", 18, 2, true, true)
  case object UInt32 extends DType("uint32", 32, 4, false, false)
  case object Int32 extends DType("int32", 33, 4, false, true)
  case object Float32 extends DType("float32", 34, 4, true, true)
  case object UInt64 extends DType("uint64", 64, 8, false, false)
  case object Int64 extends DType("int64", 65, 8, false, true)
  case object Float64 extends DType("float64", 66, 8, true, true)

  val all: Seq[DType] = Seq(UInt8, Int8, UInt16, Int16, Float16, UInt32, Int32, Float32, UInt64, Int64, Float64)
  private val byName = all.map(d => d.name -> d).toMap
  private val byCode = all.map(d => d.code -> d).toMap

  def fromName(n: String): Option[DType] = byName.get(n)
  def fromCode(c: Int): Option[DType] = byCode.get(c)

  /** Inclusive value range of an integer dtype (uint64's upper bound does not fit a Long). */
  def minLong(d: DType): Long = if (!d.signed) 0L else -(1L << (d.size * 8 - 1))
  def maxLong(d: DType): Long = if (d.size == 8) Long.MaxValue else if (d.signed) (1L << (d.size * 8 - 1)) - 1 else (1L << (d.size * 8)) - 1
}

/**
 * A parsed MDS column encoding. `name` is the exact string stored in `index.json`; all parsing of
 * encoding strings happens in [[MdsEncoding.parse]].
 */
sealed trait MdsEncoding extends Serializable {
  def name: String
  /** Fixed byte size of a value, or -1 for variable-size encodings. */
  def fixedSize: Int
  def isFixed: Boolean = fixedSize >= 0
  override def toString: String = name
}

object MdsEncoding {
  /** `int8` .. `uint64`, `float16` .. `float64`: numpy scalars, little-endian. */
  final case class Num(dtype: DType) extends MdsEncoding {
    def name: String = dtype.name
    def fixedSize: Int = dtype.size
  }
  /** `int`: a Python int stored as int64. */
  case object PyInt extends MdsEncoding { def name = "int"; def fixedSize = 8 }
  case object Str extends MdsEncoding { def name = "str"; def fixedSize = -1 }
  case object StrInt extends MdsEncoding { def name = "str_int"; def fixedSize = -1 }
  case object StrFloat extends MdsEncoding { def name = "str_float"; def fixedSize = -1 }
  case object StrDecimal extends MdsEncoding { def name = "str_decimal"; def fixedSize = -1 }
  case object Json extends MdsEncoding { def name = "json"; def fixedSize = -1 }
  /** `bytes`, `pkl`, `jpeg`, `png`, `pil`: opaque bytes for us. */
  final case class Blob(name: String) extends MdsEncoding { def fixedSize: Int = -1 }
  /** `list[jpeg]`, `list[png]`, `list[pil]`. */
  final case class ImageList(name: String) extends MdsEncoding { def fixedSize: Int = -1 }
  /** `jpeg_array` (alias `jpegarray`). */
  final case class JpegArray(name: String) extends MdsEncoding { def fixedSize: Int = -1 }
  /** `ndarray[:dtype[:shape]]`. */
  final case class NdArray(name: String, dtype: Option[DType], shape: Option[Array[Int]]) extends MdsEncoding {
    def fixedSize: Int = (dtype, shape) match {
      case (Some(d), Some(s)) => s.product * d.size
      case _ => -1
    }
    def numElements: Option[Int] = shape.map(_.product)
    override def equals(o: Any): Boolean = o match {
      case n: NdArray => n.name == name
      case _ => false
    }
    override def hashCode(): Int = name.hashCode
  }

  val blobNames: Set[String] = Set("bytes", "pkl", "jpeg", "png", "pil")
  val imageListNames: Set[String] = Set("list[jpeg]", "list[png]", "list[pil]")

  def ndarray(dtype: DType, shape: Option[Array[Int]] = None): NdArray = {
    val n = shape match {
      case Some(s) => s"ndarray:${dtype.name}:${s.mkString(",")}"
      case None => s"ndarray:${dtype.name}"
    }
    NdArray(n, Some(dtype), shape)
  }

  /** Parses an encoding string as the reference accepts it; fails naming `what` (e.g. a column). */
  def parse(s: String, what: => String = "encoding"): MdsEncoding = {
    def bad(msg: String) = throw new MdsException(s"$what: unsupported MDS encoding '$s': $msg")
    s match {
      case "int" => PyInt
      case "str" => Str
      case "str_int" => StrInt
      case "str_float" => StrFloat
      case "str_decimal" => StrDecimal
      case "json" => Json
      case "jpeg_array" | "jpegarray" => JpegArray(s)
      case b if blobNames(b) => Blob(b)
      case l if imageListNames(l) => ImageList(l)
      case n if DType.fromName(n).isDefined => Num(DType.fromName(n).get)
      case "ndarray" | "ndarray:" => NdArray(s, None, None)
      case nd if nd.startsWith("ndarray:") =>
        val parts = nd.substring("ndarray:".length).split(":", -1)
        if (parts.length > 2) bad("expected ndarray[:DTYPE[:D0,D1,...]]")
        val dtype =
          if (parts(0).isEmpty) None
          else Some(DType.fromName(parts(0)).getOrElse(bad(s"unknown dtype '${parts(0)}'; use one of ${DType.all.mkString(", ")}")))
        val shape =
          if (parts.length < 2 || parts(1).isEmpty) None
          else {
            val dims = parts(1).split(",", -1).map { d =>
              val v = try d.trim.toInt catch { case _: NumberFormatException => bad(s"bad dimension '$d'") }
              if (v < 1) bad("every dimension must be at least 1")
              v
            }
            if (dims.length > 63) bad("at most 63 dimensions")
            Some(dims)
          }
        NdArray(s, dtype, shape)
      case _ =>
        bad("known encodings are int8..int64, uint8..uint64, float16, float32, float64, int, str, bytes, " +
          "str_int, str_float, str_decimal, json, pkl, jpeg, png, pil, list[jpeg], list[png], list[pil], " +
          "jpeg_array, ndarray[:DTYPE[:SHAPE]]")
    }
  }

  /** Code of the smallest unsigned type that holds `max` (the ndarray shape dtype). */
  def shapeCode(max: Long): Int = if (max < (1L << 8)) 0 else if (max < (1L << 16)) 1 else if (max < (1L << 32)) 2 else 3
}
