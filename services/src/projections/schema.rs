//! Where projection rows go: the live tables (`public.<name>`), their shadows
//! (`public.<name>__shadow`, a rebuild), or a scratch schema (`replay --verify`).

use tape_projections::{Table, TableSet};
use tokio_postgres::{Client, GenericClient};

use crate::db::quote_ident;

/// The suffix of a rebuild's shadow tables.
pub const SHADOW_SUFFIX: &str = "__shadow";

/// A set of projection tables: `"{schema}"."{name}{suffix}"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub schema: String,
    pub suffix: String,
}

impl Target {
    /// The live tables.
    #[must_use]
    pub fn live() -> Self {
        Self { schema: "public".to_owned(), suffix: String::new() }
    }

    /// A rebuild's shadow tables, next to the live ones.
    #[must_use]
    pub fn shadow() -> Self {
        Self { schema: "public".to_owned(), suffix: SHADOW_SUFFIX.to_owned() }
    }

    /// Tables in a schema of their own.
    #[must_use]
    pub fn scratch(schema: &str) -> Self {
        Self { schema: schema.to_owned(), suffix: String::new() }
    }

    /// The table's unquoted name in its schema.
    #[must_use]
    pub fn bare(&self, table: Table) -> String {
        format!("{}{}", table.name(), self.suffix)
    }

    /// The table's qualified, quoted name.
    #[must_use]
    pub fn table(&self, table: Table) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.bare(table)))
    }

    /// Creates the target's tables (empty, shaped like the live ones, with their indexes),
    /// replacing any left over.
    ///
    /// # Errors
    /// The database refused.
    pub async fn create(&self, client: &impl GenericClient, tables: TableSet) -> Result<(), tokio_postgres::Error> {
        let mut sql = format!("CREATE SCHEMA IF NOT EXISTS {};", quote_ident(&self.schema));
        for table in tables.iter() {
            let name = self.table(table);
            let live = Self::live().table(table);
            sql.push_str(&format!("DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (LIKE {live} INCLUDING ALL);"));
        }
        client.batch_execute(&sql).await
    }
}

/// Drops a scratch schema and everything in it.
///
/// # Errors
/// The database refused.
pub async fn drop_schema(client: &Client, schema: &str) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(schema))).await
}

/// Inside the caller's transaction: replaces each live table of `tables` by its shadow
/// (drop, rename the shadow and its indexes). Readers block on the swap's locks for its
/// duration and then see the new table whole.
///
/// # Errors
/// The database refused.
pub async fn swap_in_shadows(
    tx: &tokio_postgres::Transaction<'_>,
    tables: TableSet,
) -> Result<(), tokio_postgres::Error> {
    let shadow = Target::shadow();
    for table in tables.iter() {
        let live = Target::live().table(table);
        tx.batch_execute(&format!(
            "DROP TABLE {live}; ALTER TABLE {} RENAME TO {}",
            shadow.table(table),
            quote_ident(table.name())
        ))
        .await?;
        let shadow_prefix = shadow.bare(table);
        let rows = tx
            .query("SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1", &[&table.name()])
            .await?;
        for row in rows {
            let index: String = row.get(0);
            if let Some(rest) = index.strip_prefix(&shadow_prefix) {
                let renamed = format!("{}{rest}", table.name());
                tx.batch_execute(&format!(
                    "ALTER INDEX public.{} RENAME TO {}",
                    quote_ident(&index),
                    quote_ident(&renamed)
                ))
                .await?;
            }
        }
    }
    Ok(())
}
