//! Shopping carts on a sharded DHT (contract section 3).
use runtime::Ctx;
pub async fn start(ctx: &Ctx) -> anyhow::Result<()> {
    ctx.health.started("shop");
    Ok(())
}
/// Rebuilds the named projection if it belongs to shop.
pub async fn rebuild(_ctx: &Ctx, _name: &str) -> anyhow::Result<bool> {
    Ok(false)
}
