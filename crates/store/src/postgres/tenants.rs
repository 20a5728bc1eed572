//! PostgreSQL tenants: one schema each, all served by the control store's single pool.
//!
//! The registry is the table `tb_tenant` in the control schema (`DEFAULT_SCHEMA`): a tenant
//! exists for the service once its row is there, and its row is written only after its schema
//! is migrated. Several deployments can share a database with different control schemas without
//! seeing each other's tenants: each tenant schema carries a comment naming its control schema,
//! and `create` refuses a schema whose comment is not this deployment's.
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use fraise_core::StoreError;
use fraise_core::store::Store;
use fraise_core::tenant::{TenantDirectory, TenantName};
use sqlx::AssertSqlSafe;

use super::{PgStore, SchemaName};
use crate::errors::map;
use crate::{MigrationReport, TenantAdmin, TenantError};

/// PostgreSQL's "undefined table": the registry does not exist yet, so there are no tenants.
const UNDEFINED_TABLE: &str = "42P01";

/// The tenants registered in the control store's schema.
#[derive(Debug, Clone)]
pub struct PgTenants {
    control: PgStore,
}

impl PgTenants {
    pub fn new(control: PgStore) -> Self {
        Self { control }
    }

    /// The store of tenant `name`: the same pool, the tenant's schema.
    pub fn store(&self, name: &TenantName) -> Result<PgStore, StoreError> {
        // A tenant name is always a valid schema name (a stricter rule); parse anyway rather
        // than trust that here.
        let schema = SchemaName::parse(name.as_str()).map_err(|e| StoreError::Other(e.into()))?;
        Ok(self.control.sibling(schema))
    }

    async fn ensure_registry(&self) -> Result<(), StoreError> {
        let c = &self.control;
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {}", c.q)))
            .execute(&c.pool)
            .await
            .map_err(map)?;
        sqlx::query(
            c.sql("CREATE TABLE IF NOT EXISTS {s}.tb_tenant (name text PRIMARY KEY, created_at timestamptz NOT NULL)"),
        )
        .execute(&c.pool)
        .await
        .map_err(map)?;
        Ok(())
    }

    async fn registered(&self, name: &TenantName) -> Result<bool, StoreError> {
        let found = sqlx::query_scalar::<_, i32>(self.control.sql("SELECT 1 FROM {s}.tb_tenant WHERE name = $1"))
            .bind(name.as_str())
            .fetch_optional(&self.control.pool)
            .await;
        match found {
            Ok(row) => Ok(row.is_some()),
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some(UNDEFINED_TABLE) => Ok(false),
            Err(e) => Err(map(e)),
        }
    }

    /// The comment that marks a schema as a tenant of this deployment (of this control schema).
    fn marker(&self) -> String {
        format!("fraise-auth tenant of {}", self.control.schema.as_str())
    }

    /// `None` when schema `name` does not exist, else its comment (`Some(None)`: no comment).
    async fn schema_comment(&self, name: &TenantName) -> Result<Option<Option<String>>, StoreError> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1")
                .bind(name.as_str())
                .fetch_optional(&self.control.pool)
                .await
                .map_err(map)?;
        Ok(row.map(|(comment,)| comment))
    }
}

#[async_trait]
impl TenantDirectory for PgTenants {
    async fn open(&self, name: &TenantName) -> Result<Option<Arc<dyn Store>>, StoreError> {
        if !self.registered(name).await? {
            return Ok(None);
        }
        Ok(Some(Arc::new(self.store(name)?)))
    }

    async fn list(&self) -> Result<Vec<TenantName>, StoreError> {
        let rows = sqlx::query_scalar::<_, String>(self.control.sql("SELECT name FROM {s}.tb_tenant ORDER BY name"))
            .fetch_all(&self.control.pool)
            .await;
        match rows {
            Ok(rows) => Ok(rows.iter().filter_map(|n| TenantName::parse(n).ok()).collect()),
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some(UNDEFINED_TABLE) => Ok(Vec::new()),
            Err(e) => Err(map(e)),
        }
    }
}

#[async_trait]
impl TenantAdmin for PgTenants {
    async fn create(&self, name: &TenantName) -> Result<MigrationReport, TenantError> {
        if name.as_str() == self.control.schema.as_str() {
            return Err(TenantError::Refused(format!(
                "'{name}' is the control schema (DEFAULT_SCHEMA); a tenant cannot share it"
            )));
        }
        self.ensure_registry().await?;
        if self.registered(name).await? {
            return Err(TenantError::Exists(name.clone()));
        }
        // Only a schema this deployment started to create (a run that failed half-way) may be
        // reused: never another application's schema, another deployment's tenant, or a control
        // schema sharing the database.
        let marker = self.marker();
        match self.schema_comment(name).await? {
            None => {}
            Some(Some(comment)) if comment == marker => {}
            Some(_) => {
                return Err(TenantError::Refused(format!(
                    "schema '{name}' already exists and is not a tenant of this deployment (control schema '{}'); choose another name",
                    self.control.schema.as_str()
                )));
            }
        }
        let store = self.store(name)?;
        // Identifiers and the marker are validated names: nothing here comes from outside unchecked.
        for ddl in
            [format!("CREATE SCHEMA IF NOT EXISTS {}", store.q), format!("COMMENT ON SCHEMA {} IS '{marker}'", store.q)]
        {
            sqlx::query(AssertSqlSafe(ddl)).execute(&self.control.pool).await.map_err(map)?;
        }
        let report = store.migrate().await?;
        sqlx::query(
            self.control.sql("INSERT INTO {s}.tb_tenant (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING"),
        )
        .bind(name.as_str())
        .bind(Utc::now())
        .execute(&self.control.pool)
        .await
        .map_err(map)?;
        Ok(report)
    }

    async fn migrate_tenant(&self, name: &TenantName) -> Result<MigrationReport, TenantError> {
        if !self.registered(name).await? {
            return Err(TenantError::NotFound(name.clone()));
        }
        Ok(self.store(name)?.migrate().await?)
    }

    async fn drop_tenant(&self, name: &TenantName) -> Result<(), TenantError> {
        let _after = self.control.cache.after_write(super::cache::Target::All);
        let mut tx = self.control.pool.begin().await.map_err(map)?;
        let gone = sqlx::query(self.control.sql("DELETE FROM {s}.tb_tenant WHERE name = $1"))
            .bind(name.as_str())
            .execute(&mut *tx)
            .await;
        let gone = match gone {
            Ok(done) => done.rows_affected(),
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some(UNDEFINED_TABLE) => 0,
            Err(e) => return Err(map(e).into()),
        };
        if gone == 0 {
            return Err(TenantError::NotFound(name.clone()));
        }
        let schema = self.store(name)?;
        sqlx::query(AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {} CASCADE", schema.q)))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        // Dropping a schema fires no row trigger: tell every node's session cache by hand.
        sqlx::query("SELECT pg_notify($1, '*' || $2)")
            .bind(super::cache::CHANNEL)
            .bind(schema.schema.as_str())
            .execute(&mut *tx)
            .await
            .map_err(map)?;
        tx.commit().await.map_err(map)?;
        Ok(())
    }
}
