//! `mvault tenant`: create, list, limit, delete (with crypto-shredding) and rekey tenants on the local vault.
//! (Over a server the same commands go through `cmd::remote`.)

use crate::args::TenantCommand;
use crate::open::{audit_local_action, open, stale_reporter};
use crate::print::print_list;
use crate::{ui, Global};
use mvault_core::{Error, Result};
use mvault_server::registry;
use serde_json::json;

pub fn tenant(global: &Global, command: TenantCommand) -> Result<i32> {
    match command {
        TenantCommand::Rekey { .. } => {}
        other => return tenant_local(global, other),
    }
    match command {
        TenantCommand::Rekey { tenant, rewrite, resume } => {
            let base = open(global)?;
            let mut repo = if tenant == base.tenant { base } else { base.for_tenant(&tenant)? };
            let r = repo.rekey(!resume, rewrite, &stale_reporter(global))?;
            if global.json {
                ui::print_json(&r);
            } else {
                println!(
                    "tenant {}: new writes use key version {}; {} packs and {} snapshots re-encrypted; old versions removed: {:?} ({:.1}s)",
                    r.tenant, r.new_version, r.packs_rewritten, r.snapshots_rewritten, r.old_versions_removed, r.seconds
                );
            }
            Ok(0)
        }
        _ => unreachable!("handled above"),
    }
}

pub fn tenant_local(global: &Global, command: TenantCommand) -> Result<i32> {
    let repo = open(global)?;
    let sys = repo.system()?;
    let v = match command {
        TenantCommand::Create { name, limits } => {
            let rec = registry::create(&repo, &sys, &name, limits.limits()?)?;
            audit_local_action(&sys, "tenant.create", &format!("tenant {name}"), Some(&name))?;
            json!(rec)
        }
        TenantCommand::List => json!(registry::list(&sys)?),
        TenantCommand::Limits { name, limits } => {
            let mut rec = registry::load(&sys, &name)?;
            rec.limits = limits.limits()?;
            registry::save(&sys, &rec)?;
            audit_local_action(&sys, "tenant.limits", &format!("tenant {name}"), Some(&name))?;
            json!(rec)
        }
        TenantCommand::Delete { name, shred } => {
            if !shred {
                return Err(Error::Usage("deleting a tenant destroys its keys and data: add --shred".into()));
            }
            let (k, o) = registry::shred(&repo, &sys, &name)?;
            audit_local_action(&sys, "tenant.delete", &format!("tenant {name}"), Some(&name))?;
            json!({ "tenant": name, "key_objects_deleted": k, "objects_deleted": o })
        }
        TenantCommand::Rekey { .. } => unreachable!("rekey is handled by the lifecycle commands"),
    };
    print_list(global, &if v.is_array() { v } else { json!([v]) });
    Ok(0)
}
