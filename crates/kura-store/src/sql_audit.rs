//! [`AuditStore`] on the SQL store.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{AuditStore, TrailEvent, TrailFilter, TrailQuery, TrailRow};
use crate::error::Result;
use crate::sql::{retry_write, SqlMetaStore, MAX_RETRIES};

/// Records (or resources) per INSERT statement (9 parameters each: well
/// under both engines' parameter limits).
const ROWS_PER_INSERT: usize = 200;

const COLS: &str = "e.seq, e.event_id, e.account, e.event_time, e.event_name, e.event_source, e.username, \
     e.access_key_id, e.read_only, e.record";

fn event(r: &AnyRow) -> Result<TrailEvent> {
    Ok(TrailEvent {
        seq: r.try_get(0)?,
        row: TrailRow {
            event_id: r.try_get(1)?,
            account: r.try_get(2)?,
            event_time: r.try_get(3)?,
            event_name: r.try_get(4)?,
            event_source: r.try_get(5)?,
            username: r.try_get(6)?,
            access_key_id: r.try_get(7)?,
            read_only: r.try_get::<i64, _>(8)? != 0,
            resources: Vec::new(),
            record: r.try_get(9)?,
        },
    })
}

#[async_trait]
impl AuditStore for SqlMetaStore {
    async fn trail_append(&self, rows: &[TrailRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        retry_write!(self, async {
            let mut w = self.relaxed().await?;
            let mut tx = self.begin_on(w.conn()).await?;
            // Few statements whatever the batch's size: one multi-row
            // INSERT per chunk of records, one per chunk of their resources.
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                let marks: Vec<String> = (0..chunk.len())
                    .map(|i| {
                        let b = i * 9;
                        format!(
                            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                            b + 1,
                            b + 2,
                            b + 3,
                            b + 4,
                            b + 5,
                            b + 6,
                            b + 7,
                            b + 8,
                            b + 9
                        )
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO trail_events (event_id, account, event_time, event_name, event_source, username, \
                     access_key_id, read_only, record) VALUES {} \
                     ON CONFLICT (account, event_id) DO NOTHING RETURNING seq, account, event_id",
                    marks.join(", ")
                );
                let mut q = sqlx::query(&sql);
                for r in chunk {
                    q = q
                        .bind(&r.event_id)
                        .bind(&r.account)
                        .bind(r.event_time)
                        .bind(&r.event_name)
                        .bind(&r.event_source)
                        .bind(&r.username)
                        .bind(&r.access_key_id)
                        .bind(r.read_only as i64)
                        .bind(&r.record);
                }
                // Rows already recorded (a retried batch) are not returned.
                let mut inserted = std::collections::HashMap::new();
                for row in q.fetch_all(&mut *tx).await? {
                    let (seq, account, id): (i64, String, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
                    inserted.insert((account, id), seq);
                }
                let resources: Vec<(i64, &TrailRow, &(String, String))> = chunk
                    .iter()
                    .filter_map(|r| inserted.get(&(r.account.clone(), r.event_id.clone())).map(|s| (*s, r)))
                    .flat_map(|(seq, r)| r.resources.iter().map(move |x| (seq, r, x)))
                    .collect();
                for part in resources.chunks(ROWS_PER_INSERT) {
                    let marks: Vec<String> = (0..part.len())
                        .map(|i| {
                            let b = i * 5;
                            format!("(${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5)
                        })
                        .collect();
                    let sql = format!(
                        "INSERT INTO trail_resources (seq, account, event_time, resource_type, resource_name) \
                         VALUES {} ON CONFLICT DO NOTHING",
                        marks.join(", ")
                    );
                    let mut q = sqlx::query(&sql);
                    for (seq, r, (kind, name)) in part {
                        q = q.bind(*seq).bind(&r.account).bind(r.event_time).bind(kind).bind(name);
                    }
                    q.execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            w.done().await?;
            Ok(())
        })
    }

    async fn trail_lookup(&self, q: &TrailQuery) -> Result<Vec<TrailEvent>> {
        // $1 account, $2 start, $3 end, $4/$5 the page's lower bound,
        // $6 limit, $7 the attribute's value.
        let (from, cond) = match &q.filter {
            TrailFilter::All => ("trail_events e", ""),
            TrailFilter::EventName(_) => ("trail_events e", "AND e.event_name = $7"),
            TrailFilter::Username(_) => ("trail_events e", "AND e.username = $7"),
            TrailFilter::EventSource(_) => ("trail_events e", "AND e.event_source = $7"),
            TrailFilter::AccessKeyId(_) => ("trail_events e", "AND e.access_key_id = $7"),
            TrailFilter::ReadOnly(_) => ("trail_events e", "AND e.read_only = $7"),
            TrailFilter::EventId(_) => ("trail_events e", "AND e.event_id = $7"),
            TrailFilter::ResourceName(_) => (
                "trail_resources x JOIN trail_events e ON e.seq = x.seq",
                "AND x.resource_name = $7",
            ),
            TrailFilter::ResourceType(_) => (
                "trail_resources x JOIN trail_events e ON e.seq = x.seq",
                "AND x.resource_type = $7",
            ),
        };
        // The resource tables carry account and time so the walk is on
        // their own index; the join fetches the record.
        let t = if from.starts_with("trail_resources") { "x" } else { "e" };
        let sql = format!(
            "SELECT {COLS} FROM {from} WHERE {t}.account = $1 AND {t}.event_time >= $2 AND {t}.event_time <= $3 \
             AND ({t}.event_time < $4 OR ({t}.event_time = $4 AND {t}.seq < $5)) {cond} \
             ORDER BY {t}.event_time DESC, {t}.seq DESC LIMIT $6"
        );
        let (bt, bs) = q.before.unwrap_or((i64::MAX, i64::MAX));
        let mut query = sqlx::query(&sql)
            .bind(&q.account)
            .bind(q.start_ms)
            .bind(q.end_ms)
            .bind(bt)
            .bind(bs)
            .bind(q.limit);
        query = match &q.filter {
            TrailFilter::All => query,
            TrailFilter::EventName(v)
            | TrailFilter::Username(v)
            | TrailFilter::EventSource(v)
            | TrailFilter::AccessKeyId(v)
            | TrailFilter::EventId(v)
            | TrailFilter::ResourceName(v)
            | TrailFilter::ResourceType(v) => query.bind(v.clone()),
            TrailFilter::ReadOnly(b) => query.bind(*b as i64),
        };
        let rows = query.fetch_all(&self.read).await?;
        let mut events = rows.iter().map(event).collect::<Result<Vec<_>>>()?;
        // A record naming one resource under two types is one event.
        events.dedup_by_key(|e| e.seq);
        if events.is_empty() {
            return Ok(events);
        }
        // The resources of the page, in one query.
        let marks: Vec<String> = (1..=events.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT seq, resource_type, resource_name FROM trail_resources WHERE seq IN ({}) \
             ORDER BY seq, resource_type, resource_name",
            marks.join(", ")
        );
        let mut rq = sqlx::query(&sql);
        for e in &events {
            rq = rq.bind(e.seq);
        }
        for r in rq.fetch_all(&self.read).await? {
            let seq: i64 = r.try_get(0)?;
            if let Some(e) = events.iter_mut().find(|e| e.seq == seq) {
                e.row.resources.push((r.try_get(1)?, r.try_get(2)?));
            }
        }
        Ok(events)
    }

    async fn trail_purge(&self, before_ms: i64, limit: i64) -> Result<u64> {
        retry_write!(self, async {
            let mut w = self.relaxed().await?;
            let mut tx = self.begin_on(w.conn()).await?;
            let seqs: Vec<i64> = sqlx::query_scalar(
                "SELECT seq FROM trail_events WHERE event_time < $1 ORDER BY event_time, seq LIMIT $2",
            )
            .bind(before_ms)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            let mut gone = 0;
            for chunk in seqs.chunks(500) {
                let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
                let list = marks.join(", ");
                let sql_res = format!("DELETE FROM trail_resources WHERE seq IN ({list})");
                let sql_ev = format!("DELETE FROM trail_events WHERE seq IN ({list})");
                let mut dr = sqlx::query(&sql_res);
                let mut de = sqlx::query(&sql_ev);
                for s in chunk {
                    dr = dr.bind(*s);
                    de = de.bind(*s);
                }
                dr.execute(&mut *tx).await?;
                gone += de.execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            w.done().await?;
            Ok(gone)
        })
    }
}
