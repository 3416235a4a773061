//! Desired state on disk: applied objects and each Deployment's programs
//! in SQLite (as k3s keeps its state), each apply one transaction, so a
//! `weir up` killed at any moment restarts with exactly what was last
//! applied. Over 600 lines because every table (objects, metadata, pods,
//! statuses, template history, programs, commands) is written here, beside
//! its tests, in the one place that knows the schema.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use weir_api::resource::{Kind, ObjectRef};

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

/// The programs one Deployment's images run, written with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentPrograms {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Image and program, for each image it maps.
    pub entries: Vec<(String, String)>,
}

impl Store {
    /// Opens (creating if needed, 0600) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // Created private before SQLite opens it; its -wal and -shm files
        // take the database file's permissions.
        {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path);
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // The write-ahead log is checkpointed every 256 pages (1 MiB) and cut
        // back to 1 MiB after: the state dir's size stays bounded however
        // many applies and pod changes it sees.
        conn.pragma_update(None, "wal_autocheckpoint", 256)?;
        conn.pragma_update(None, "journal_size_limit", 1024 * 1024)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS objects (
                kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
                manifest TEXT NOT NULL, revision INTEGER NOT NULL,
                PRIMARY KEY (kind, namespace, name));
             CREATE TABLE IF NOT EXISTS images (image TEXT PRIMARY KEY, program TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS deployment_images (
                namespace TEXT NOT NULL, name TEXT NOT NULL, image TEXT NOT NULL,
                program TEXT NOT NULL,
                PRIMARY KEY (namespace, name, image));
             CREATE TABLE IF NOT EXISTS revision (id INTEGER PRIMARY KEY AUTOINCREMENT);
             CREATE TABLE IF NOT EXISTS object_meta (
                kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
                created INTEGER NOT NULL, uid TEXT NOT NULL,
                PRIMARY KEY (kind, namespace, name));
             CREATE TABLE IF NOT EXISTS pods (
                namespace TEXT NOT NULL, name TEXT NOT NULL, record TEXT NOT NULL,
                PRIMARY KEY (namespace, name));
             CREATE TABLE IF NOT EXISTS object_status (
                kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
                status TEXT NOT NULL,
                PRIMARY KEY (kind, namespace, name));
             CREATE TABLE IF NOT EXISTS pending_command (
                kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
                intent TEXT NOT NULL,
                PRIMARY KEY (kind, namespace, name));
             CREATE TABLE IF NOT EXISTS template_history (
                namespace TEXT NOT NULL, name TEXT NOT NULL, revision INTEGER NOT NULL,
                template TEXT NOT NULL,
                PRIMARY KEY (namespace, name, revision));",
        )?;
        // `generation` came after the table: a state dir from before gets it.
        let has_generation = conn
            .prepare("SELECT 1 FROM pragma_table_info('object_meta') WHERE name = 'generation'")?
            .exists([])?;
        if !has_generation {
            conn.execute_batch(
                "ALTER TABLE object_meta ADD COLUMN generation INTEGER NOT NULL DEFAULT 1",
            )?;
        }
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

    /// Each Deployment's programs, by image (namespace, name, image, program).
    pub fn deployment_images(&self) -> Result<Vec<[String; 4]>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT namespace, name, image, program FROM deployment_images ORDER BY namespace, name, image",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok([row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?])
        })?;
        rows.collect::<Result<_, _>>().map_err(StoreError)
    }

    /// The image mappings stores kept before they were scoped to their
    /// Deployments: read (for what was applied then), never written.
    pub fn images(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT image, program FROM images ORDER BY image")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect::<Result<_, _>>().map_err(StoreError)
    }

    /// Writes objects and the programs of the Deployments among them in
    /// one transaction.
    pub fn apply(
        &self,
        objects: &[StoredObject],
        programs: &[DeploymentPrograms],
    ) -> Result<Vec<Written>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute("INSERT INTO revision DEFAULT VALUES", [])?;
        let revision = tx.last_insert_rowid();
        // Only the counter matters (AUTOINCREMENT never reuses a number).
        tx.execute("DELETE FROM revision WHERE id < ?1", params![revision])?;
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
            let outcome = match &old {
                None => Written::Created,
                Some(old) if *old == o.manifest => Written::Unchanged,
                Some(_) => Written::Configured,
            };
            let old_manifest = old;
            if outcome == Written::Created {
                let created = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                let uid = random_uid();
                tx.execute(
                    "INSERT INTO object_meta (kind, namespace, name, created, uid, generation) VALUES (?1, ?2, ?3, ?4, ?5, 1)
                     ON CONFLICT (kind, namespace, name) DO UPDATE SET created = excluded.created, uid = excluded.uid, generation = 1",
                    params![kind, o.object.namespace, o.object.name, created, uid],
                )?;
            }
            if outcome == Written::Configured
                && o.object.kind == Kind::Deployment
                && let Some(template) =
                    replaced_template(old_manifest.as_deref().unwrap_or_default(), &o.manifest)
            {
                tx.execute(
                    "INSERT INTO template_history (namespace, name, revision, template)
                     SELECT ?1, ?2, COALESCE(MAX(revision), 0) + 1, ?3 FROM template_history
                     WHERE namespace = ?1 AND name = ?2",
                    params![o.object.namespace, o.object.name, template],
                )?;
                // Kubernetes' default revisionHistoryLimit.
                tx.execute(
                    "DELETE FROM template_history WHERE namespace = ?1 AND name = ?2 AND revision <=
                     (SELECT MAX(revision) - ?3 FROM template_history WHERE namespace = ?1 AND name = ?2)",
                    params![o.object.namespace, o.object.name, HISTORY_LIMIT],
                )?;
            }
            if outcome == Written::Configured
                && spec_changed(old_manifest.as_deref().unwrap_or_default(), &o.manifest)
            {
                tx.execute(
                    "UPDATE object_meta SET generation = generation + 1 WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                    params![kind, o.object.namespace, o.object.name],
                )?;
            }
            if outcome != Written::Unchanged {
                tx.execute(
                    "INSERT INTO objects (kind, namespace, name, manifest, revision) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (kind, namespace, name) DO UPDATE SET manifest = excluded.manifest, revision = excluded.revision",
                    params![kind, o.object.namespace, o.object.name, o.manifest, revision],
                )?;
            }
            written.push(outcome);
        }
        for p in programs {
            tx.execute(
                "DELETE FROM deployment_images WHERE namespace = ?1 AND name = ?2",
                params![p.namespace, p.name],
            )?;
            for (image, program) in &p.entries {
                tx.execute(
                    "INSERT INTO deployment_images (namespace, name, image, program) VALUES (?1, ?2, ?3, ?4)",
                    params![p.namespace, p.name, image, program],
                )?;
            }
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
            if o.kind == Kind::Deployment {
                for table in ["template_history", "deployment_images"] {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE namespace = ?1 AND name = ?2"),
                        params![o.namespace, o.name],
                    )?;
                }
            }
            for table in ["object_meta", "object_status", "pending_command"] {
                tx.execute(
                    &format!(
                        "DELETE FROM {table} WHERE kind = ?1 AND namespace = ?2 AND name = ?3"
                    ),
                    params![o.kind.name(), o.namespace, o.name],
                )?;
            }
            existed.push(n > 0);
        }
        tx.commit()?;
        Ok(existed)
    }
}

impl Store {
    /// Records the status a controller keeps for an object (a Rollout's),
    /// so a restarted runtime resumes where it was.
    pub fn set_status(&self, object: &ObjectRef, status: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO object_status (kind, namespace, name, status) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (kind, namespace, name) DO UPDATE SET status = excluded.status",
            params![object.kind.name(), object.namespace, object.name, status],
        )?;
        Ok(())
    }

    /// Every recorded status.
    pub fn statuses(&self) -> Result<Vec<(ObjectRef, String)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT kind, namespace, name, status FROM object_status")?;
        let rows = stmt.query_map([], |row| Ok((keyed(row)?, row.get::<_, String>(3)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (object, status) = row?;
            out.extend(object.map(|o| (o, status)));
        }
        Ok(out)
    }
}

impl Store {
    /// Records the command waiting for an object (a Rollout's intent), or
    /// clears it (`None`) once the controller acknowledged it: a command
    /// outlives a restart of the runtime until then.
    pub fn set_pending_command(
        &self,
        object: &ObjectRef,
        intent: Option<&str>,
    ) -> Result<(), StoreError> {
        let conn = self.lock();
        match intent {
            Some(intent) => conn.execute(
                "INSERT INTO pending_command (kind, namespace, name, intent) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (kind, namespace, name) DO UPDATE SET intent = excluded.intent",
                params![object.kind.name(), object.namespace, object.name, intent],
            )?,
            None => conn.execute(
                "DELETE FROM pending_command WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                params![object.kind.name(), object.namespace, object.name],
            )?,
        };
        Ok(())
    }

    /// Every command still waiting.
    pub fn pending_commands(&self) -> Result<Vec<(ObjectRef, String)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT kind, namespace, name, intent FROM pending_command")?;
        let rows = stmt.query_map([], |row| Ok((keyed(row)?, row.get::<_, String>(3)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (object, intent) = row?;
            out.extend(object.map(|o| (o, intent)));
        }
        Ok(out)
    }
}

/// The object a row's first three columns (kind, namespace, name) name;
/// `None` for a kind this weir does not know.
fn keyed(row: &rusqlite::Row<'_>) -> rusqlite::Result<Option<ObjectRef>> {
    let kind: String = row.get(0)?;
    let Ok(kind) = kind.parse() else {
        return Ok(None);
    };
    Ok(Some(ObjectRef {
        kind,
        namespace: row.get(1)?,
        name: row.get(2)?,
    }))
}

/// An object's identity beyond its manifest: when it was created (Unix
/// seconds), its `metadata.uid` and `metadata.generation`, kept across
/// `weir up` restarts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// `creationTimestamp`, Unix seconds.
    pub created: i64,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.generation`: 1 when created, one more for every change
    /// of its spec (as the API server counts; metadata-only edits do not).
    pub generation: i64,
}

/// Whether two stored manifests differ in their `spec` (what bumps a
/// generation); unreadable ones count as changed.
/// How many earlier pod templates a Deployment keeps for `rollout undo`
/// (Kubernetes' default `revisionHistoryLimit`).
const HISTORY_LIMIT: i64 = 10;

/// The old manifest's pod template, when the new one replaces it.
fn replaced_template(old: &str, new: &str) -> Option<String> {
    let template = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .map(|v| v["spec"]["template"].clone())
    };
    let (before, after) = (template(old)?, template(new)?);
    (before != after && !before.is_null()).then(|| before.to_string())
}

impl Store {
    /// The pod template a Deployment had before its current one (`rollout
    /// undo`'s target), if any.
    pub fn previous_template(
        &self,
        deployment: &ObjectRef,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let conn = self.lock();
        let text: Option<String> = conn
            .query_row(
                "SELECT template FROM template_history WHERE namespace = ?1 AND name = ?2
                 ORDER BY revision DESC LIMIT 1",
                params![deployment.namespace, deployment.name],
                |row| row.get(0),
            )
            .optional()?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }
}

fn spec_changed(old: &str, new: &str) -> bool {
    let spec = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .map(|v| v["spec"].clone())
    };
    match (spec(old), spec(new)) {
        (Some(a), Some(b)) => a != b,
        _ => true,
    }
}

impl Store {
    /// Every object's creation time and uid.
    pub fn object_meta(&self) -> Result<Vec<(ObjectRef, ObjectMeta)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT kind, namespace, name, created, uid, generation FROM object_meta")?;
        let rows = stmt.query_map([], |row| {
            let meta = ObjectMeta {
                created: row.get(3)?,
                uid: row.get(4)?,
                generation: row.get(5)?,
            };
            Ok((keyed(row)?, meta))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (object, meta) = row?;
            out.extend(object.map(|o| (o, meta)));
        }
        Ok(out)
    }

    /// Every recorded pod: `(namespace, name, record)`.
    pub fn pods(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT namespace, name, record FROM pods")?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        rows.collect::<Result<_, _>>().map_err(StoreError)
    }

    /// Writes pod records and removes others, in one transaction.
    pub fn sync_pods(
        &self,
        upserts: &[(String, String, String)],
        removals: &[(String, String)],
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for (namespace, name, record) in upserts {
            tx.execute(
                "INSERT INTO pods (namespace, name, record) VALUES (?1, ?2, ?3)
                 ON CONFLICT (namespace, name) DO UPDATE SET record = excluded.record",
                params![namespace, name, record],
            )?;
        }
        for (namespace, name) in removals {
            tx.execute(
                "DELETE FROM pods WHERE namespace = ?1 AND name = ?2",
                params![namespace, name],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// A random RFC 4122 version 4 UUID, as Kubernetes' `metadata.uid`.
fn random_uid() -> String {
    let b = fastrand::u128(..).to_be_bytes();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let v = |i: usize, j: usize| &hex[i..j];
    let variant = (u8::from_str_radix(v(16, 17), 16).unwrap_or(0) & 0x3) | 0x8;
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        v(0, 8),
        v(8, 12),
        v(13, 16),
        variant,
        v(17, 20),
        v(20, 32)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn replaced_templates_are_kept_for_undo_ten_deep_and_go_with_their_deployment() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let deployment = |version: u32, replicas: u32| StoredObject {
            object: ObjectRef {
                kind: Kind::Deployment,
                namespace: "default".into(),
                name: "d".into(),
            },
            manifest: format!(
                r#"{{"spec":{{"replicas":{replicas},"template":{{"v":{version}}}}}}}"#
            ),
        };
        let d = deployment(1, 1).object;
        store.apply(&[deployment(1, 1)], &[]).unwrap();
        assert_eq!(store.previous_template(&d).unwrap(), None);
        // Scaling keeps the template: no history.
        store.apply(&[deployment(1, 3)], &[]).unwrap();
        assert_eq!(store.previous_template(&d).unwrap(), None);
        store.apply(&[deployment(2, 3)], &[]).unwrap();
        assert_eq!(
            store.previous_template(&d).unwrap(),
            Some(serde_json::json!({"v": 1}))
        );
        for v in 3..=20 {
            store.apply(&[deployment(v, 3)], &[]).unwrap();
        }
        assert_eq!(
            store.previous_template(&d).unwrap(),
            Some(serde_json::json!({"v": 19}))
        );
        let kept: i64 = store
            .lock()
            .query_row("SELECT COUNT(*) FROM template_history", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, HISTORY_LIMIT);
        store.delete(std::slice::from_ref(&d)).unwrap();
        assert_eq!(store.previous_template(&d).unwrap(), None);
    }

    #[test]
    fn statuses_survive_reopen_and_go_with_their_object() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let a = obj("a", "1");
        {
            let store = Store::open(&path).unwrap();
            store.apply(std::slice::from_ref(&a), &[]).unwrap();
            store
                .set_status(&a.object, "{\"phase\":\"Progressing\"}")
                .unwrap();
            store
                .set_status(&a.object, "{\"phase\":\"Paused\"}")
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.statuses().unwrap(),
            [(a.object.clone(), "{\"phase\":\"Paused\"}".to_owned())]
        );
        store.delete(std::slice::from_ref(&a.object)).unwrap();
        assert!(store.statuses().unwrap().is_empty());
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
                    &[DeploymentPrograms {
                        namespace: "default".into(),
                        name: "b".into(),
                        entries: vec![("img".into(), "prog".into())],
                    }]
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
        let b_runs_prog = ["default", "b", "img", "prog"].map(str::to_owned);
        assert_eq!(store.deployment_images().unwrap(), vec![b_runs_prog]);
        assert_eq!(
            store
                .delete(&[obj("a", "").object, obj("zz", "").object])
                .unwrap(),
            vec![true, false]
        );
        assert_eq!(store.objects().unwrap().len(), 1);
        // A deleted Deployment's programs go with it.
        let b = ObjectRef {
            kind: Kind::Deployment,
            namespace: "default".into(),
            name: "b".into(),
        };
        store.delete(&[b]).unwrap();
        assert!(store.deployment_images().unwrap().is_empty());
    }

    #[test]
    fn creation_time_and_uid_survive_reopen_and_updates_and_go_with_the_object() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::open(&path).unwrap();
        store.apply(&[obj("a", "1")], &[]).unwrap();
        let first = store.object_meta().unwrap();
        assert_eq!(first.len(), 1);
        let uid = &first[0].1.uid;
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "4", "{uid}");
        store.apply(&[obj("a", "2")], &[]).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.object_meta().unwrap(), first);
        store.delete(&[obj("a", "").object]).unwrap();
        assert!(store.object_meta().unwrap().is_empty());
        store.apply(&[obj("a", "1")], &[]).unwrap();
        assert_ne!(store.object_meta().unwrap()[0].1.uid, first[0].1.uid);
    }

    #[test]
    fn the_generation_counts_spec_changes_and_survives_reopen_and_old_state_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        // A state dir from before generations: the column is added, at 1.
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE object_meta (kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
                 created INTEGER NOT NULL, uid TEXT NOT NULL, PRIMARY KEY (kind, namespace, name));
                 INSERT INTO object_meta VALUES ('Service', 'default', 'old', 1, 'u-old');",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let generation = |store: &Store, name: &str| {
            store
                .object_meta()
                .unwrap()
                .into_iter()
                .find(|(o, _)| o.name == name)
                .map(|(_, m)| m.generation)
        };
        assert_eq!(generation(&store, "old"), Some(1));
        let with = |spec: &str, label: &str| {
            format!(r#"{{"metadata":{{"labels":{{"l":"{label}"}}}},"spec":{spec}}}"#)
        };
        store.apply(&[obj("a", &with("1", "x"))], &[]).unwrap();
        assert_eq!(generation(&store, "a"), Some(1), "created");
        store.apply(&[obj("a", &with("2", "x"))], &[]).unwrap();
        assert_eq!(generation(&store, "a"), Some(2), "spec changed");
        store.apply(&[obj("a", &with("2", "y"))], &[]).unwrap();
        assert_eq!(
            generation(&store, "a"),
            Some(2),
            "a label alone does not count"
        );
        store.apply(&[obj("a", &with("2", "y"))], &[]).unwrap();
        assert_eq!(generation(&store, "a"), Some(2), "unchanged");
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(generation(&store, "a"), Some(2), "kept across a restart");
        store
            .delete(&[ObjectRef {
                kind: Kind::Service,
                namespace: "default".into(),
                name: "a".into(),
            }])
            .unwrap();
        store.apply(&[obj("a", &with("3", "y"))], &[]).unwrap();
        assert_eq!(
            generation(&store, "a"),
            Some(1),
            "a new object starts again"
        );
    }

    #[test]
    fn pod_records_are_written_replaced_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let rec = |n: &str, r: &str| ("default".to_owned(), n.to_owned(), r.to_owned());
        store
            .sync_pods(&[rec("p1", "a"), rec("p2", "b")], &[])
            .unwrap();
        store
            .sync_pods(&[rec("p1", "c")], &[("default".into(), "p2".into())])
            .unwrap();
        assert_eq!(store.pods().unwrap(), vec![rec("p1", "c")]);
    }

    #[test]
    fn the_database_is_private_whatever_the_umask() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let old = rustix::process::umask(rustix::fs::Mode::empty());
        let store = Store::open(&dir.path().join("state.db"));
        rustix::process::umask(old);
        let store = store.unwrap();
        store.apply(&[obj("a", "1")], &[]).unwrap();
        for name in ["state.db", "state.db-wal"] {
            let mode = std::fs::metadata(dir.path().join(name)).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
    }
}
