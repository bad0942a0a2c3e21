//! The context registry as a new user meets it: `projections list` on a deployment that has not run
//! yet, `projections rebuild` of every projection (dfs's too), and a `DATABASE_URL` naming a missing
//! database.

use e2e::TestEnv;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_fresh_deployment_lists_every_projection_without_a_checkpoint() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let ctx = runtime::Ctx::connect(env.config()).await?;
    let listed = switchyard::list_projections(&ctx.pool).await?;
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "cluster_tree",
            "dfs_catalog",
            "dispatch",
            "engine_read_model",
            "shop_dht"
        ]
    );
    assert!(listed.iter().all(|(_, seq)| seq.is_none()), "{listed:?}");
    Ok(())
}

#[tokio::test]
async fn every_registered_projection_can_be_rebuilt() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    for c in switchyard::CONTEXTS {
        for p in c.projections {
            switchyard::projections_with(env.config(), vec!["rebuild".into(), (*p).into()])
                .await
                .map_err(|e| anyhow::anyhow!("rebuild {p}: {e:#}"))?;
        }
    }
    let ctx = runtime::Ctx::connect(env.config()).await?;
    let listed = switchyard::list_projections(&ctx.pool).await?;
    let dfs = listed.iter().find(|(n, _)| n == "dfs_catalog");
    assert_eq!(dfs, Some(&("dfs_catalog".to_string(), Some(0))));
    let err = switchyard::projections_with(env.config(), vec!["rebuild".into(), "nope".into()])
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("dfs_catalog"), "{err:#}");
    Ok(())
}

#[tokio::test]
async fn a_missing_database_fails_at_once_saying_so() -> anyhow::Result<()> {
    let url = runtime::db::with_database(&e2e::admin_url(), "switchyard_no_such_database");
    let started = Instant::now();
    let err = runtime::db::connect(&url, Duration::from_secs(30))
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("does not exist"), "{text}");
    assert!(text.contains("DATABASE_URL"), "{text}");
    // Not after the 30 s of retries meant for a server that is not up yet.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}
