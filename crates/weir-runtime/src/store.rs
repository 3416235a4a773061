//! Desired state on disk: applied objects and image mappings in SQLite
//! (as k3s keeps its state), each apply one transaction, so a `weir up`
//! killed at any moment restarts with exactly what was last applied.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use weir_api::resource::ObjectRef;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[error("state store: {0}")]
pub struct StoreError(#[from] rusqlite::Error);

/// The state database.
pub struct Store {
    conn: Mutex<Connection>,
}

/// One stored object: its reference and its manifest (JSON).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// Kind, namespace, name.
    pub object: ObjectRef,
    /// The manifest, as JSON.
    pub manifest: String,
}

/// What an apply did to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// New.
    Created,
    /// Changed.
    Configured,
    /// Identical.
    Unchanged,
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS objects (
                kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
                manifest TEXT NOT NULL, revision INTEGER NOT NULL,
                PRIMARY KEY (kind, namespace, name));
             CREATE TABLE IF NOT EXISTS images (image TEXT PRIMARY KEY, program TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS revision (id INTEGER PRIMARY KEY AUTOINCREMENT);",
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (transactions roll back), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every stored object, in a stable order.
    pub fn objects(&self) -> Result<Vec<StoredObject>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT kind, namespace, name, manifest FROM objects ORDER BY revision, kind, namespace, name")?;
        let rows = stmt.query_map([], |row| {
            let kind: String = row.get(0)?;
            Ok((
                kind,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, namespace, name, manifest) = row?;
            if let Ok(kind) = kind.parse() {
                out.push(StoredObject {
                    object: ObjectRef {
                        kind,
                        namespace,
                        name,
                    },
                    manifest,
                });
            }
        }
        Ok(out)
    }

    /// The stored image mappings.
    pub fn images(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT image, program FROM images ORDER BY image")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect::<Result<_, _>>().map_err(StoreError)
    }

    /// Writes objects and image mappings in one transaction.
    pub fn apply(
        &self,
        objects: &[StoredObject],
        images: &[(String, String)],
    ) -> Result<Vec<Written>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute("INSERT INTO revision DEFAULT VALUES", [])?;
        let revision = tx.last_insert_rowid();
        let mut written = Vec::new();
        for o in objects {
            let kind = o.object.kind.name();
            let old: Option<String> = tx
                .query_row(
                    "SELECT manifest FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                    params![kind, o.object.namespace, o.object.name],
                    |row| row.get(0),
                )
                .optional()?;
            let outcome = match old {
                None => Written::Created,
                Some(old) if old == o.manifest => Written::Unchanged,
                Some(_) => Written::Configured,
            };
            if outcome != Written::Unchanged {
                tx.execute(
                    "INSERT INTO objects (kind, namespace, name, manifest, revision) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (kind, namespace, name) DO UPDATE SET manifest = excluded.manifest, revision = excluded.revision",
                    params![kind, o.object.namespace, o.object.name, o.manifest, revision],
                )?;
            }
            written.push(outcome);
        }
        for (image, program) in images {
            tx.execute(
                "INSERT INTO images (image, program) VALUES (?1, ?2) ON CONFLICT (image) DO UPDATE SET program = excluded.program",
                params![image, program],
            )?;
        }
        tx.commit()?;
        Ok(written)
    }

    /// Deletes objects; returns whether each existed.
    pub fn delete(&self, objects: &[ObjectRef]) -> Result<Vec<bool>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut existed = Vec::new();
        for o in objects {
            let n = tx.execute(
                "DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                params![o.kind.name(), o.namespace, o.name],
            )?;
            existed.push(n > 0);
        }
        tx.commit()?;
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_api::resource::Kind;

    fn obj(name: &str, manifest: &str) -> StoredObject {
        StoredObject {
            object: ObjectRef {
                kind: Kind::Service,
                namespace: "default".into(),
                name: name.into(),
            },
            manifest: manifest.into(),
        }
    }

    #[test]
    fn apply_reports_created_configured_unchanged_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.apply(&[obj("a", "1"), obj("b", "1")], &[]).unwrap(),
            vec![Written::Created, Written::Created]
        );
        assert_eq!(
            store
                .apply(
                    &[obj("a", "1"), obj("b", "2")],
                    &[("img".into(), "prog".into())]
                )
                .unwrap(),
            vec![Written::Unchanged, Written::Configured]
        );
        drop(store);
        let store = Store::open(&path).unwrap();
        let objects = store.objects().unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(
            objects
                .iter()
                .find(|o| o.object.name == "b")
                .unwrap()
                .manifest,
            "2"
        );
        assert_eq!(
            store.images().unwrap(),
            vec![("img".to_owned(), "prog".to_owned())]
        );
        assert_eq!(
            store
                .delete(&[obj("a", "").object, obj("zz", "").object])
                .unwrap(),
            vec![true, false]
        );
        assert_eq!(store.objects().unwrap().len(), 1);
    }
}
