//! The schema, embedded in the binary: one portable set of migrations (`migrations/`), run at start on SQLite and PostgreSQL alike.

use std::{borrow::Cow, future::Future, pin::Pin};

use sqlx::{
    error::BoxDynError,
    migrate::{Migration, MigrationSource, MigrationType, Migrator},
};

/// Version, description and SQL of every migration, oldest first. A released migration is
/// never edited (its checksum is recorded where it ran): a change is a new file.
const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "accounts", include_str!("../../migrations/0001_accounts.sql"))];

/// The migrations from the binary rather than from a directory at run time, so a deployed
/// groxy needs nothing beside it.
#[derive(Debug)]
struct Embedded;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

pub(super) async fn migrator() -> Result<Migrator, String> {
    Migrator::new(Embedded).await.map_err(|e| e.to_string())
}
