//! `doproxy inventory import FILE` / `export`: move an inventory between a line file and the
//! configured store (the migration path to and from etcd).

use super::{note, say, Ctx};
use anyhow::{Context, Result};
use std::path::Path;

/// Appends the IDs of the inventory file `from` that the store does not have yet, in the
/// file's order. Running it twice changes nothing the second time.
pub async fn import(ctx: &Ctx, from: &Path) -> Result<()> {
    let file = crate::store::file::read(from)?;
    let (inv, added) = ctx
        .locked(async || {
            let mut added = 0;
            let inv = ctx
                .store
                .update(|inv| {
                    added = 0;
                    for id in &file.ids {
                        if !inv.ids.contains(id) {
                            inv.ids.push(*id);
                            added += 1;
                        }
                    }
                })
                .await?;
            Ok((inv, added))
        })
        .await?;
    note(&format!(
        "imported {added} droplet ID(s) from {} into {}; it now has {}",
        from.display(),
        ctx.store.describe(),
        inv.ids.len()
    ));
    crate::output::json(&serde_json::json!({ "action": "import", "added": added, "ids": inv.ids }));
    Ok(())
}

/// Prints the inventory in the line format, or writes it atomically to `to`.
pub async fn export(ctx: &Ctx, to: Option<&Path>) -> Result<()> {
    let inv = ctx.store.load().await?;
    match to {
        Some(p) => {
            crate::fsutil::write_atomic(p, inv.render().as_bytes())
                .with_context(|| format!("cannot write {}", p.display()))?;
            note(&format!(
                "exported {} droplet ID(s) to {}",
                inv.ids.len(),
                p.display()
            ));
        }
        None => {
            let text = inv.render();
            if !text.is_empty() {
                say(text.trim_end());
            }
        }
    }
    crate::output::json(&serde_json::json!({ "action": "export", "ids": inv.ids }));
    Ok(())
}
