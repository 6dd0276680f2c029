//! `doproxy inventory import FILE` / `export`: move an inventory between a line file and the
//! configured store (the migration path to and from etcd).

use super::{note, say, Ctx};
use anyhow::{Context, Result};
use std::path::Path;

/// Creates an empty inventory where there is none (a missing etcd key or inventory file
/// is an error for every other command: it is never read as "no droplets").
pub async fn init(ctx: &Ctx) -> Result<()> {
    let created = ctx.locked(async || ctx.store.init().await).await?;
    if created {
        note(&format!(
            "created an empty inventory in {}",
            ctx.store.describe()
        ));
    } else {
        note(&format!(
            "{} already exists; left as it is",
            ctx.store.describe()
        ));
    }
    crate::output::json(&serde_json::json!({ "action": "init", "created": created }));
    Ok(())
}

/// Appends the IDs of the inventory file `from` that the store does not have yet, in the
/// file's order. Running it twice changes nothing the second time.
pub async fn import(ctx: &Ctx, from: &Path) -> Result<()> {
    let file = crate::store::file::read(from)?;
    let (inv, added) = ctx
        .locked(async || {
            // Importing is how an etcd inventory starts: create the key if it is missing.
            ctx.store.init().await?;
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
