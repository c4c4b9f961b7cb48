//! Storage: SQLite through sqlx, with embedded migrations. Written against one small API so a
//! PostgreSQL backend (scale-out, ARCHITECTURE.md) can follow behind the same methods.
//!
//! Durability: WAL with `synchronous = FULL`, so a write that returned is on disk and survives
//! SIGKILL or power loss. Safety: an exclusive lock file keeps a second router off the same
//! data folder, and a file that is not an SQLite database is refused and left untouched.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;
use switchboard_api::{CallOutcome, CallRecord, NewTenant, Tenant};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data folder {path}: {source} — check permissions or choose another with --data-dir")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another switchboard-router{pid} is using {path} — stop it, or give this one another --data-dir", pid = pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked { path: PathBuf, pid: Option<u32> },
    #[error("{path} is not a valid Switchboard database ({detail}); it was NOT modified — restore it from a backup, or move it away to start empty")]
    Corrupt { path: PathBuf, detail: String },
    #[error("cannot open the database {path}: {detail}")]
    Open { path: PathBuf, detail: String },
    #[error("cannot bring the database schema up to date: {0}")]
    Migrate(String),
    #[error("a tenant with SIP domain {0:?} exists already")]
    DuplicateDomain(String),
    #[error("storage error: {0}")]
    Query(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Query(e.to_string())
    }
}

/// An exclusive claim on a data folder, released when the process ends or this drops.
#[derive(Debug)]
struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    fn acquire(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("router.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| StoreError::DataDir {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut s = String::new();
                let _ = file.read_to_string(&mut s);
                return Err(StoreError::Locked {
                    path: dir.to_owned(),
                    pid: s.trim().parse().ok(),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StoreError::DataDir {
                    path: path.clone(),
                    source,
                })
            }
        }
        let _ = file.set_len(0);
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(Self { _file: file })
    }
}

/// The router's database.
#[derive(Debug)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
    _lock: DataDirLock,
}

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Creates `dir` (and missing parents) readable by this user only (0700 on Unix); an
/// existing folder is left as it is, with a warning when others may read it.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let existed = dir.is_dir();
        b.mode(0o700);
        b.create(dir)?;
        if existed {
            let mode = std::fs::metadata(dir)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %dir.display(), mode = format!("{:o}", mode & 0o777), "the data folder can be read by other users; chmod 700 it");
            }
        }
        Ok(())
    }
    #[cfg(not(unix))]
    b.create(dir)
}

/// Creates `path` if absent, and makes it readable and writable by this user only (0600 on
/// Unix). A `sqlite:` URL that names no file (`:memory:`) is left alone.
fn make_private_file(path: &Path) -> std::io::Result<()> {
    if path.as_os_str().is_empty() || path.to_string_lossy().starts_with(':') {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

impl Store {
    /// Opens (creating when absent) `router.db` in `data_dir`, or `database_url` when given,
    /// and runs the migrations.
    pub async fn open(data_dir: &Path, database_url: Option<&str>) -> Result<Self, StoreError> {
        create_private_dir(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let lock = DataDirLock::acquire(data_dir)?;
        let mut opts = match database_url {
            Some(url) => SqliteConnectOptions::from_str(url).map_err(|e| StoreError::Open {
                path: PathBuf::from(url),
                detail: e.to_string(),
            })?,
            None => SqliteConnectOptions::new().filename(data_dir.join("router.db")),
        };
        let path = opts.get_filename().to_path_buf();
        check_header(&path)?;
        // SQLite gives the -wal and -shm files the database file's mode: create it 0600
        // before SQLite does (which would follow the umask), and narrow an older one.
        make_private_file(&path).map_err(|source| StoreError::DataDir {
            path: path.clone(),
            source,
        })?;
        opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|e| classify_open_error(&path, e))?;
        let check: String = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_one(&pool)
            .await
            .map_err(|e| classify_open_error(&path, e))?;
        if check != "ok" {
            pool.close().await;
            return Err(StoreError::Corrupt {
                path,
                detail: check,
            });
        }
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        tracing::info!(database = %path.display(), "storage ready");
        Ok(Self {
            pool,
            path,
            _lock: lock,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A trivial query: is the database answering?
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Folds the WAL into the database file and closes every connection, so a cleanly
    /// stopped router leaves one self-contained file behind.
    pub async fn close(&self) {
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await
        {
            tracing::warn!(error = %e, "WAL checkpoint at close failed; the WAL is applied at next start");
        }
        self.pool.close().await;
    }

    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query("SELECT id, name, sip_domain, entra_tenant_id, created_at FROM tenants ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(tenant_from_row).collect()
    }

    pub async fn get_tenant(&self, id: Uuid) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, sip_domain, entra_tenant_id, created_at FROM tenants WHERE id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    /// Stores a new tenant; the SIP domain must be unique (case-insensitive).
    pub async fn create_tenant(&self, new: &NewTenant) -> Result<Tenant, StoreError> {
        let now = OffsetDateTime::now_utc();
        let tenant = Tenant {
            id: Uuid::new_v4(),
            name: new.name.trim_matches([' ', '\t', '\r', '\n']).to_owned(),
            sip_domain: new.sip_domain.trim().to_ascii_lowercase(),
            entra_tenant_id: new.entra_tenant_id.clone(),
            created_at: now.replace_nanosecond(0).unwrap_or(now),
        };
        let created = tenant
            .created_at
            .format(&Rfc3339)
            .map_err(|e| StoreError::Query(e.to_string()))?;
        let r = sqlx::query("INSERT INTO tenants (id, name, sip_domain, entra_tenant_id, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(tenant.id.to_string())
            .bind(&tenant.name)
            .bind(&tenant.sip_domain)
            .bind(&tenant.entra_tenant_id)
            .bind(created)
            .execute(&self.pool)
            .await;
        match r {
            Ok(_) => Ok(tenant),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                Err(StoreError::DuplicateDomain(tenant.sip_domain))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a tenant; false when there was none.
    pub async fn delete_tenant(&self, id: Uuid) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM tenants WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}

impl Store {
    /// Writes a call's record (the first time, or again as it changes).
    pub async fn put_call(&self, rec: &CallRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(rec).map_err(|e| StoreError::Query(e.to_string()))?;
        let started = rec
            .started_at
            .format(&Rfc3339)
            .map_err(|e| StoreError::Query(e.to_string()))?;
        sqlx::query(
            "INSERT INTO calls (id, tenant, started_at, outcome, record) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT(id) DO UPDATE SET outcome = excluded.outcome, record = excluded.record",
        )
        .bind(&rec.id)
        .bind(&rec.tenant)
        .bind(started)
        .bind(outcome_name(rec.outcome))
        .bind(json)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest calls of `tenants` (all when `None`), at most `limit`, newest first.
    pub async fn list_calls(
        &self,
        tenants: Option<&[String]>,
        limit: u32,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new("SELECT record FROM calls");
        if let Some(ts) = tenants {
            if ts.is_empty() {
                return Ok(Vec::new());
            }
            q.push(" WHERE ");
            tenant_in(&mut q, ts);
        }
        q.push(" ORDER BY started_at DESC, id LIMIT ");
        q.push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let json: String = row.try_get("record")?;
            match serde_json::from_str(&json) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(error = %e, "a stored call record does not read; skipped"),
            }
        }
        Ok(out)
    }

    /// The newest calls of tenant `tenant` that agent `upn` took part in — placed, answered,
    /// was offered, consulted on or transferred (their UPN in the record's caller, agent,
    /// offers or steps, any case) — at most `limit`, newest first.
    pub async fn list_agent_calls(
        &self,
        tenant: &str,
        upn: &str,
        limit: u32,
    ) -> Result<Vec<CallRecord>, StoreError> {
        use futures_util::TryStreamExt;
        // SQLite's lower() folds ASCII only: so does the key, and `involves` compares the same.
        let key = upn.to_ascii_lowercase();
        // Whole records are matched below; the text test only narrows what is read, and the
        // rows are read one at a time until `limit` matched.
        let mut rows = sqlx::query(
            "SELECT record FROM calls WHERE tenant = ? AND instr(lower(record), ?) > 0 \
             ORDER BY started_at DESC, id",
        )
        .bind(tenant)
        .bind(&key)
        .fetch(&self.pool);
        let mut out = Vec::new();
        while let Some(row) = rows.try_next().await? {
            let json: String = row.try_get("record")?;
            match serde_json::from_str::<CallRecord>(&json) {
                Ok(r) if involves(&r, &key) => out.push(r),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "a stored call record does not read; skipped"),
            }
            if out.len() >= limit as usize {
                break;
            }
        }
        Ok(out)
    }

    /// One call's record.
    /// Hands `each` every call record of `tenants` (all with `None`) that started in
    /// `[from, to)`, oldest first, one at a time (a long period is never held in memory);
    /// records that do not read are skipped with a warning. Returns how many were handed.
    pub async fn for_each_call(
        &self,
        tenants: Option<&[String]>,
        from: OffsetDateTime,
        to: OffsetDateTime,
        mut each: impl FnMut(CallRecord),
    ) -> Result<u64, StoreError> {
        use futures_util::TryStreamExt;
        if tenants.is_some_and(|t| t.is_empty()) {
            return Ok(0);
        }
        // The column is RFC 3339 text whose fraction varies in length, so text order is off
        // by under a second at the edges: a second more either side, then the exact test.
        let text = |t: OffsetDateTime| {
            t.to_offset(time::UtcOffset::UTC)
                .format(&Rfc3339)
                .map_err(|e| StoreError::Query(e.to_string()))
        };
        let (lo, hi) = (
            text(from - Duration::from_secs(1))?,
            text(to + Duration::from_secs(1))?,
        );
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "SELECT record FROM calls WHERE started_at >= ",
        );
        q.push_bind(lo);
        q.push(" AND started_at < ");
        q.push_bind(hi);
        if let Some(ts) = tenants {
            q.push(" AND ");
            tenant_in(&mut q, ts);
        }
        q.push(" ORDER BY started_at, id");
        let query = q.build();
        let mut rows = query.fetch(&self.pool);
        let mut n = 0;
        while let Some(row) = rows.try_next().await? {
            let json: String = row.try_get("record")?;
            match serde_json::from_str::<CallRecord>(&json) {
                Ok(r) if r.started_at >= from && r.started_at < to => {
                    n += 1;
                    each(r);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "a stored call record does not read; skipped"),
            }
        }
        Ok(n)
    }

    pub async fn get_call(&self, id: &str) -> Result<Option<CallRecord>, StoreError> {
        let row = sqlx::query("SELECT record FROM calls WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => {
                let json: String = r.try_get("record")?;
                serde_json::from_str(&json)
                    .map(Some)
                    .map_err(|e| StoreError::Query(format!("stored call {id} does not read: {e}")))
            }
            None => Ok(None),
        }
    }

    /// Keeps what the configuration API set for the `kind` (`agent`, `queue`) named `name`
    /// of `tenant`: its settings as JSON, or `None` when it was removed. Replaces what was
    /// kept before.
    pub async fn put_config_change(
        &self,
        tenant: &str,
        kind: &str,
        name: &str,
        settings: Option<String>,
    ) -> Result<(), StoreError> {
        let at = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .map_err(|e| StoreError::Query(e.to_string()))?;
        sqlx::query(
            "INSERT INTO config_changes (tenant, kind, name, settings, updated_at, seq) \
             VALUES (?, ?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM config_changes)) \
             ON CONFLICT (tenant, kind, name) DO UPDATE SET settings = excluded.settings, \
             updated_at = excluded.updated_at, seq = excluded.seq",
        )
        .bind(tenant)
        .bind(kind)
        .bind(name)
        .bind(settings)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every change the configuration API made, oldest first: (tenant, kind, name, settings
    /// as JSON or `None` for removed).
    #[allow(clippy::type_complexity)]
    pub async fn config_changes(
        &self,
    ) -> Result<Vec<(String, String, String, Option<String>)>, StoreError> {
        let rows =
            sqlx::query("SELECT tenant, kind, name, settings FROM config_changes ORDER BY seq")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect()
    }

    /// Keeps agent `s`'s session (replacing the one kept before).
    pub async fn put_agent_session(&self, s: &crate::desk::AgentSession) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agent_sessions (tenant, upn, username, password, ready, reason, aor, contact, registered_until) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, upn) DO UPDATE SET \
             username = excluded.username, password = excluded.password, ready = excluded.ready, \
             reason = excluded.reason, aor = excluded.aor, contact = excluded.contact, \
             registered_until = excluded.registered_until",
        )
        .bind(&s.tenant)
        .bind(s.upn.to_ascii_lowercase())
        .bind(&s.username)
        .bind(&s.password)
        .bind(i64::from(s.ready))
        .bind(&s.reason)
        .bind(&s.aor)
        .bind(&s.contact)
        .bind(s.registered_until.map(|u| u.min(i64::MAX as u64) as i64))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets agent `upn`'s session (signed off, credentials revoked, removed).
    pub async fn delete_agent_session(&self, tenant: &str, upn: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM agent_sessions WHERE tenant = ? AND upn = ?")
            .bind(tenant)
            .bind(upn.to_ascii_lowercase())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every session kept.
    pub async fn agent_sessions(&self) -> Result<Vec<crate::desk::AgentSession>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant, upn, username, password, ready, reason, aor, contact, registered_until FROM agent_sessions",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let until: Option<i64> = r.try_get(8)?;
                Ok(crate::desk::AgentSession {
                    tenant: r.try_get(0)?,
                    upn: r.try_get(1)?,
                    username: r.try_get(2)?,
                    password: r.try_get(3)?,
                    ready: r.try_get::<i64, _>(4)? != 0,
                    reason: r.try_get(5)?,
                    aor: r.try_get(6)?,
                    contact: r.try_get(7)?,
                    registered_until: until.and_then(|u| u64::try_from(u).ok()),
                })
            })
            .collect()
    }

    /// Keeps where round-robin queue `queue` of `tenant` stopped: the agent it offered its
    /// last call to.
    pub async fn put_round_robin(
        &self,
        tenant: &str,
        queue: &str,
        upn: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO round_robin (tenant, queue, upn) VALUES (?, ?, ?) \
             ON CONFLICT (tenant, queue) DO UPDATE SET upn = excluded.upn",
        )
        .bind(tenant)
        .bind(queue)
        .bind(upn.to_ascii_lowercase())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Where each round-robin queue stopped: (tenant, queue, UPN).
    pub async fn round_robin(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let rows = sqlx::query("SELECT tenant, queue, upn FROM round_robin ORDER BY tenant, queue")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Closes the calls a run cut short (still in progress when it stopped) as interrupted,
    /// ending at `now`; returns how many.
    /// Keeps callback `p` (replacing the one kept for its call before).
    pub async fn put_pending_callback(
        &self,
        p: &crate::desk::PendingCallback,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(p).map_err(|e| StoreError::Query(e.to_string()))?;
        sqlx::query(
            "INSERT INTO pending_callbacks (id, tenant, callback) VALUES (?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET callback = excluded.callback",
        )
        .bind(&p.id)
        .bind(&p.tenant)
        .bind(json)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets the callback of call `id` (made, given up, or the call ended otherwise).
    pub async fn delete_pending_callback(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM pending_callbacks WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every callback kept (those that no longer read are skipped).
    pub async fn pending_callbacks(&self) -> Result<Vec<crate::desk::PendingCallback>, StoreError> {
        let rows = sqlx::query("SELECT callback FROM pending_callbacks ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let json: String = r.try_get(0)?;
            match serde_json::from_str(&json) {
                Ok(p) => out.push(p),
                Err(e) => tracing::warn!(error = %e, "a kept callback no longer reads; skipped"),
            }
        }
        Ok(out)
    }

    /// Closes every call still in progress as interrupted, but those in `keep` (callbacks
    /// the router takes up again).
    pub async fn close_interrupted_calls(
        &self,
        now: OffsetDateTime,
        keep: &std::collections::HashSet<String>,
    ) -> Result<u64, StoreError> {
        let rows = sqlx::query("SELECT record FROM calls WHERE outcome = 'in_progress'")
            .fetch_all(&self.pool)
            .await?;
        let mut closed = 0;
        for row in rows {
            let json: String = row.try_get("record")?;
            let Ok(mut rec) = serde_json::from_str::<CallRecord>(&json) else {
                continue;
            };
            if keep.contains(&rec.id) {
                continue;
            }
            rec.outcome = CallOutcome::Interrupted;
            rec.ended_at.get_or_insert(now);
            rec.reason
                .get_or_insert_with(|| "the router stopped during the call".into());
            self.put_call(&rec).await?;
            closed += 1;
        }
        Ok(closed)
    }
}

/// Whether the agent whose (ASCII) lower-case UPN is `upn` took part in the call: their UPN
/// is its caller, agent, an offer's agent, or a word of a step (`transfer by … to …`).
pub(crate) fn involves(r: &CallRecord, upn: &str) -> bool {
    let is = |s: &str| s.eq_ignore_ascii_case(upn);
    is(&r.caller)
        || r.agent.as_deref().is_some_and(is)
        || r.offers.iter().any(|o| is(&o.agent))
        || r.steps.iter().any(|s| {
            s.to_ascii_lowercase()
                .split(|c: char| c.is_whitespace() || c == ',' || c == ':')
                .any(|w| w == upn)
        })
}

/// `tenant IN (?, ?, …)` with `ts` bound.
fn tenant_in(q: &mut sqlx::QueryBuilder<'_, sqlx::Sqlite>, ts: &[String]) {
    q.push("tenant IN (");
    let mut list = q.separated(", ");
    for t in ts {
        list.push_bind(t.clone());
    }
    q.push(")");
}

fn outcome_name(o: CallOutcome) -> String {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn tenant_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Tenant, StoreError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::Query(format!("stored tenant has a bad {what}: {e}"))
    };
    let id: String = row.try_get("id")?;
    let created: String = row.try_get("created_at")?;
    Ok(Tenant {
        id: Uuid::parse_str(&id).map_err(|e| bad("id", &e))?,
        name: row.try_get("name")?,
        sip_domain: row.try_get("sip_domain")?,
        entra_tenant_id: row.try_get("entra_tenant_id")?,
        created_at: OffsetDateTime::parse(&created, &Rfc3339).map_err(|e| bad("created_at", &e))?,
    })
}

/// Refuses, before SQLite touches it, a non-empty file that does not start with SQLite's
/// magic header: opening it in WAL mode could otherwise write to it.
fn check_header(path: &Path) -> Result<(), StoreError> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(StoreError::Open {
                path: path.to_owned(),
                detail: e.to_string(),
            })
        }
    };
    let mut head = [0u8; 16];
    let mut read = 0;
    while read < head.len() {
        match f.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => {
                return Err(StoreError::Open {
                    path: path.to_owned(),
                    detail: e.to_string(),
                })
            }
        }
    }
    if read == 0 {
        return Ok(()); // empty: SQLite initialises it
    }
    if read < head.len() || &head != SQLITE_MAGIC {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            detail: "no SQLite header".into(),
        });
    }
    Ok(())
}

fn classify_open_error(path: &Path, e: sqlx::Error) -> StoreError {
    let detail = e.to_string();
    if let sqlx::Error::Database(db) = &e {
        // SQLITE_CORRUPT (11) and SQLITE_NOTADB (26), with extended codes in the high bits.
        if let Some(code) = db.code().and_then(|c| c.parse::<i64>().ok()) {
            if matches!(code & 0xff, 11 | 26) {
                return StoreError::Corrupt {
                    path: path.to_owned(),
                    detail,
                };
            }
        }
    }
    StoreError::Open {
        path: path.to_owned(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[tokio::test]
    async fn the_data_folder_and_database_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("new").join("data");
        let store = Store::open(&data, None).await.unwrap();
        store
            .create_tenant(&tenant("contoso.example"))
            .await
            .unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("router.db")), 0o600);
        assert_eq!(mode(&data.join("router.db-wal")), 0o600);
        drop(store);
        // An older database that others could read is narrowed when opened.
        let other = dir.path().join("old");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("router.db"), b"").unwrap();
        std::fs::set_permissions(
            other.join("router.db"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let _store = Store::open(&other, None).await.unwrap();
        assert_eq!(mode(&other.join("router.db")), 0o600);
    }

    fn record(
        id: &str,
        tenant: &str,
        caller: &str,
        agent: Option<&str>,
        steps: &[&str],
        minute: u8,
    ) -> CallRecord {
        let at =
            OffsetDateTime::from_unix_timestamp(1_796_000_000 + 60 * i64::from(minute)).unwrap();
        CallRecord {
            id: id.into(),
            tenant: tenant.into(),
            trunk: "carrier".into(),
            caller: caller.into(),
            dialled: "+18005550100".into(),
            started_at: at,
            answered_at: None,
            ended_at: Some(at),
            choices: Vec::new(),
            queue: None,
            steps: steps.iter().map(|s| (*s).to_owned()).collect(),
            offers: Vec::new(),
            agent: agent.map(str::to_owned),
            outcome: CallOutcome::Answered,
            reason: None,
            hold_seconds: 0,
            transfers: Vec::new(),
            wrap_up_seconds: None,
            disposition: None,
            notes: None,
            language: Some("en".into()),
        }
    }

    #[tokio::test]
    async fn an_agent_reads_only_the_calls_they_took_part_in() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        let adele = "adele@contoso.example";
        let mut offered = record(
            "offered",
            "contoso",
            "+15550001",
            Some("megan@contoso.example"),
            &[],
            1,
        );
        offered.offers.push(switchboard_api::OfferRecord {
            agent: "Adele@Contoso.example".into(),
            at: offered.started_at,
            outcome: "no_answer".into(),
            ended_at: None,
        });
        for r in [
            record(
                "answered",
                "contoso",
                "+15550002",
                Some(adele),
                &["queue billing"],
                2,
            ),
            record(
                "placed",
                "contoso",
                adele,
                Some("alex@contoso.example"),
                &[],
                3,
            ),
            record(
                "consulted",
                "contoso",
                "+15550003",
                Some("megan@contoso.example"),
                &["transfer by adele@contoso.example to megan@contoso.example after consulting"],
                4,
            ),
            offered,
            // Not hers: another agent's, a UPN that only starts like hers, another tenant's.
            record(
                "other",
                "contoso",
                "+15550004",
                Some("alex@contoso.example"),
                &[],
                5,
            ),
            record(
                "longer",
                "contoso",
                "+15550005",
                Some("adele@contoso.example.evil"),
                &[],
                6,
            ),
            record("tenant", "fabrikam", "+15550006", Some(adele), &[], 7),
        ] {
            store.put_call(&r).await.unwrap();
        }
        let ids = |v: Vec<CallRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
        let mine = store.list_agent_calls("contoso", adele, 50).await.unwrap();
        assert_eq!(ids(mine), ["consulted", "placed", "answered", "offered"]);
        let two = store
            .list_agent_calls("contoso", "ADELE@contoso.example", 2)
            .await
            .unwrap();
        assert_eq!(ids(two), ["consulted", "placed"]);
        assert!(store
            .list_agent_calls("contoso", "nobody@contoso.example", 50)
            .await
            .unwrap()
            .is_empty());
    }

    fn tenant(domain: &str) -> NewTenant {
        NewTenant {
            name: "Contoso".into(),
            sip_domain: domain.into(),
            entra_tenant_id: None,
        }
    }

    #[tokio::test]
    async fn tenants_round_trip_and_domains_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        let t = store
            .create_tenant(&tenant("Contoso.Example.com"))
            .await
            .unwrap();
        assert_eq!(t.sip_domain, "contoso.example.com");
        assert_eq!(store.get_tenant(t.id).await.unwrap(), Some(t.clone()));
        assert_eq!(store.list_tenants().await.unwrap(), vec![t.clone()]);
        let dup = store
            .create_tenant(&tenant("CONTOSO.example.com"))
            .await
            .unwrap_err();
        assert!(matches!(dup, StoreError::DuplicateDomain(_)), "{dup}");
        assert!(store.delete_tenant(t.id).await.unwrap());
        assert!(!store.delete_tenant(t.id).await.unwrap());
        assert!(store.list_tenants().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn where_round_robin_stopped_is_kept_per_tenant_and_queue() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), None).await.unwrap();
            assert!(store.round_robin().await.unwrap().is_empty());
            store
                .put_round_robin("contoso", "general", "Adele@contoso.example")
                .await
                .unwrap();
            store
                .put_round_robin("fabrikam", "general", "alex@fabrikam.example")
                .await
                .unwrap();
            store
                .put_round_robin("contoso", "general", "lynne@contoso.example")
                .await
                .unwrap();
            store.close().await;
        }
        let store = Store::open(dir.path(), None).await.unwrap();
        let s = |t: &str, q: &str, u: &str| (t.to_owned(), q.to_owned(), u.to_owned());
        assert_eq!(
            store.round_robin().await.unwrap(),
            [
                s("contoso", "general", "lynne@contoso.example"),
                s("fabrikam", "general", "alex@fabrikam.example"),
            ]
        );
    }

    #[tokio::test]
    async fn a_second_store_on_the_same_folder_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path(), None).await.unwrap();
        let e = Store::open(dir.path(), None).await.unwrap_err();
        assert!(
            matches!(e, StoreError::Locked { pid: Some(p), .. } if p == std::process::id()),
            "{e}"
        );
        assert!(e.to_string().contains("another switchboard-router"), "{e}");
    }

    #[tokio::test]
    async fn a_garbage_file_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("router.db");
        let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&db, &garbage).unwrap();
        let e = Store::open(dir.path(), None).await.unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("NOT modified"), "{e}");
        assert_eq!(std::fs::read(&db).unwrap(), garbage);
        assert!(!dir.path().join("router.db-wal").exists());
    }

    #[tokio::test]
    async fn a_damaged_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), None).await.unwrap();
            for i in 0..50 {
                store
                    .create_tenant(&tenant(&format!("t{i}.example.com")))
                    .await
                    .unwrap();
            }
            store.close().await;
        }
        // Keep the header, wreck the pages after it; no WAL may hold good copies of them.
        let db = dir.path().join("router.db");
        let _ = std::fs::remove_file(dir.path().join("router.db-wal"));
        let _ = std::fs::remove_file(dir.path().join("router.db-shm"));
        let mut bytes = std::fs::read(&db).unwrap();
        for b in bytes.iter_mut().skip(100) {
            *b = 0xA5;
        }
        std::fs::write(&db, &bytes).unwrap();
        let e = Store::open(dir.path(), None).await.unwrap_err();
        assert!(
            matches!(e, StoreError::Corrupt { .. } | StoreError::Open { .. }),
            "{e}"
        );
    }
}
