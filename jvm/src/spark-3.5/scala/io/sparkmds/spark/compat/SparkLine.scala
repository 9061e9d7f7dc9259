package io.sparkmds.spark.compat

import org.apache.spark.sql.SQLContext
import org.apache.spark.sql.sources.{BaseRelation, CreatableRelationProvider, RelationProvider, SchemaRelationProvider}
import org.apache.spark.sql.types.StructType

/** The Spark line this jar is built for: Spark 3.5, Scala 2.12 (jvm/src/spark-3.5). */
object SparkLine {
  val name: String = "3.5"
  val scalaBinaryVersion: String = "2.12"
}

/**
 * What `MdsDataSource` adds on Spark 3.5: catalog tables (`CREATE TABLE ... USING mds`, CTAS,
 * `saveAsTable`, INSERT into a table) resolve their format through the V1 relation providers
 * there (V2 `TableProvider`s are used for catalog tables only from Spark 4.0, SPARK-46043).
 */
trait MdsSourceCompat extends CreatableRelationProvider with RelationProvider with SchemaRelationProvider {
  override def createRelation(sqlContext: SQLContext, parameters: Map[String, String]): BaseRelation =
    new MdsV1Relation(sqlContext, parameters, None)

  override def createRelation(sqlContext: SQLContext, parameters: Map[String, String], schema: StructType): BaseRelation =
    new MdsV1Relation(sqlContext, parameters, Some(schema))
}
