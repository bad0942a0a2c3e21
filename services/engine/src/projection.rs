//! The engine read model in PostgreSQL (schema `engine`): drivers, modules, statuses, systems and
//! their places. Queries read it after waiting for `min_seq`.

use crate::domain::{places, Event};
use runtime::projector::Projection;
use runtime::sqltext::{esc, esc_all, esc_value, unesc};
use runtime::store::Stored;
use sqlx::types::Json;
use sqlx::PgConnection;
use std::collections::HashMap;

/// Projection `engine_read_model`.
pub struct ReadModel;

impl Projection for ReadModel {
    type Event = Event;
    const NAME: &'static str = "engine_read_model";

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[Stored<Event>],
    ) -> Result<(), sqlx::Error> {
        for e in events {
            let seq = i64::try_from(e.seq).unwrap_or(i64::MAX);
            match &e.event {
                Event::ExecAudited(a) => {
                    sqlx::query(
                        "INSERT INTO engine.audit (seq, system_id, module, module_id, who, roles, method, args, outcome, message, duration_ms, at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (seq) DO NOTHING",
                    )
                    .bind(seq)
                    .bind(esc(&a.system_id).as_ref())
                    .bind(esc(&a.module).as_ref())
                    .bind(a.module_id.as_deref().map(esc))
                    .bind(a.who.as_deref().map(esc))
                    .bind(Json(esc_all(&a.roles)))
                    .bind(esc(&a.method).as_ref())
                    .bind(Json(esc_value(&serde_json::Value::Object(a.args.clone()))))
                    .bind(esc(&a.outcome).as_ref())
                    .bind(a.message.as_deref().map(esc))
                    .bind(i64::try_from(a.duration_ms).unwrap_or(i64::MAX))
                    .bind(a.at)
                    .execute(&mut *tx)
                    .await?;
                }
                Event::DriverRegistered {
                    driver_id,
                    metadata,
                } => {
                    sqlx::query(
                        "INSERT INTO engine.drivers (driver_id, metadata, seq) VALUES ($1, $2, $3)
                         ON CONFLICT (driver_id) DO UPDATE SET metadata = EXCLUDED.metadata, seq = EXCLUDED.seq",
                    )
                    .bind(esc(driver_id).as_ref())
                    .bind(Json(esc_value(metadata)))
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                }
                Event::ModuleAdded {
                    module_id,
                    driver_id,
                    name,
                } => {
                    sqlx::query(
                        "INSERT INTO engine.modules (module_id, driver_id, name, seq) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (module_id) DO UPDATE SET driver_id = EXCLUDED.driver_id, name = EXCLUDED.name, seq = EXCLUDED.seq",
                    )
                    .bind(esc(module_id).as_ref())
                    .bind(esc(driver_id).as_ref())
                    .bind(esc(name).as_ref())
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                }
                Event::StatusUpdated {
                    module_id,
                    name,
                    value,
                } => {
                    sqlx::query(
                        "INSERT INTO engine.statuses (module_id, name, value, seq) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (module_id, name) DO UPDATE SET value = EXCLUDED.value, seq = EXCLUDED.seq",
                    )
                    .bind(esc(module_id).as_ref())
                    .bind(esc(name).as_ref())
                    .bind(Json(esc_value(value)))
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                }
                Event::SystemSet { system_id, modules } => {
                    sqlx::query(
                        "INSERT INTO engine.systems (system_id, modules, seq) VALUES ($1, $2, $3)
                         ON CONFLICT (system_id) DO UPDATE SET modules = EXCLUDED.modules, seq = EXCLUDED.seq",
                    )
                    .bind(esc(system_id).as_ref())
                    .bind(Json(esc_all(modules)))
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                    let names: HashMap<String, String> = sqlx::query_as(
                        "SELECT module_id, name FROM engine.modules WHERE module_id = ANY($1)",
                    )
                    .bind(esc_all(modules))
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .map(|(m, n): (String, String)| (unesc(m), unesc(n)))
                    .collect();
                    let held = places(modules, |m| names.get(m).map(String::as_str));
                    sqlx::query("DELETE FROM engine.places WHERE system_id = $1")
                        .bind(esc(system_id).as_ref())
                        .execute(&mut *tx)
                        .await?;
                    let (mut n, mut i, mut m) = (Vec::new(), Vec::new(), Vec::new());
                    for (place, module) in held {
                        n.push(esc(&place.name).into_owned());
                        i.push(i32::try_from(place.index).unwrap_or(i32::MAX));
                        m.push(esc(&module).into_owned());
                    }
                    sqlx::query(
                        "INSERT INTO engine.places (system_id, name, idx, module_id)
                         SELECT $1::text, * FROM UNNEST($2::text[], $3::int[], $4::text[])",
                    )
                    .bind(esc(system_id).as_ref())
                    .bind(&n)
                    .bind(&i)
                    .bind(&m)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn reset(&self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query("TRUNCATE engine.drivers, engine.modules, engine.statuses, engine.systems, engine.places, engine.audit")
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}
