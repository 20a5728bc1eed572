//! SQLite tenants: one database file each, `DIR/NAME.db` (the directory is `DATA_DIR/tenants`).
//! The file's existence is the tenant's existence; names are validated before they become paths.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use fraise_core::StoreError;
use fraise_core::store::Store;
use fraise_core::tenant::{TenantDirectory, TenantName};

use super::SqliteStore;
use crate::{MigrationReport, TenantAdmin, TenantError};

/// The tenant files under one directory.
#[derive(Debug, Clone)]
pub struct SqliteTenants {
    dir: PathBuf,
    /// Connections per open tenant.
    max_connections: u32,
}

impl SqliteTenants {
    pub fn new(dir: impl Into<PathBuf>, max_connections: u32) -> Self {
        Self { dir: dir.into(), max_connections: max_connections.max(1) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &TenantName) -> PathBuf {
        self.dir.join(format!("{name}.db"))
    }

    async fn open_store(&self, name: &TenantName) -> Result<Option<SqliteStore>, StoreError> {
        let path = self.path(name);
        if !path.is_file() {
            return Ok(None);
        }
        SqliteStore::open_existing(&path, self.max_connections).await.map(Some)
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

#[async_trait]
impl TenantDirectory for SqliteTenants {
    /// A dropped tenant's file is gone at once; its open connections would keep writing to the
    /// unlinked file, so every use checks (one `stat`).
    fn still_there(&self, name: &TenantName) -> bool {
        self.path(name).is_file()
    }

    async fn open(&self, name: &TenantName) -> Result<Option<Arc<dyn Store>>, StoreError> {
        Ok(self.open_store(name).await?.map(|s| Arc::new(s) as Arc<dyn Store>))
    }

    async fn list(&self) -> Result<Vec<TenantName>, StoreError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(e)),
        };
        let mut names: Vec<TenantName> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let file = e.file_name();
                let stem = file.to_str()?.strip_suffix(".db")?;
                TenantName::parse(stem).ok()
            })
            .collect();
        names.sort();
        Ok(names)
    }
}

#[async_trait]
impl TenantAdmin for SqliteTenants {
    async fn create(&self, name: &TenantName) -> Result<MigrationReport, TenantError> {
        let path = self.path(name);
        if path.exists() {
            return Err(TenantError::Exists(name.clone()));
        }
        // Built under a name no tenant can have (tenant names never start with '.'), then
        // renamed: a tenant is visible only once fully migrated, and half a tenant never is.
        let building = self.dir.join(format!(".{name}.db.creating"));
        remove_files(&building);
        let store = SqliteStore::open(&building, 1).await?;
        let report = store.migrate().await;
        store.close().await;
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                remove_files(&building);
                return Err(e.into());
            }
        };
        if path.exists() {
            remove_files(&building);
            return Err(TenantError::Exists(name.clone()));
        }
        std::fs::rename(&building, &path).map_err(io)?;
        remove_files(&building); // the -wal/-shm leftovers, if the last close kept any
        Ok(report)
    }

    async fn migrate_tenant(&self, name: &TenantName) -> Result<MigrationReport, TenantError> {
        let store = self.open_store(name).await?.ok_or_else(|| TenantError::NotFound(name.clone()))?;
        let report = store.migrate().await;
        store.close().await;
        Ok(report?)
    }

    async fn drop_tenant(&self, name: &TenantName) -> Result<(), TenantError> {
        let path = self.path(name);
        if !path.is_file() {
            return Err(TenantError::NotFound(name.clone()));
        }
        std::fs::remove_file(&path).map_err(io)?;
        remove_files(&path);
        Ok(())
    }
}

/// Removes the database file and its WAL companions, ignoring the ones that are not there.
fn remove_files(path: &Path) {
    let _ = std::fs::remove_file(path);
    for suffix in ["-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}
