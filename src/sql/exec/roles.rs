//! `CREATE ROLE | USER`, `ALTER ROLE | USER`, `DROP ROLE | USER`: schema changes of the
//! role records ([`crate::sql::roles`]).

use super::*;
use crate::sql::roles;

impl Exec<'_> {
    pub(super) async fn create_roles(
        &mut self,
        cr: &ast::CreateRole,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        const TAG: &str = "CREATE ROLE";
        let ts = self.ctx.shared.hlc.now();
        let mut writes = Vec::new();
        let mut known = self.cat.roles.clone();
        for n in &cr.names {
            let name = roles::role_name(n);
            if cr.if_not_exists && (name == roles::ROOT || known.iter().any(|r| r.name == name)) {
                continue;
            }
            let oid = catalog::next_id(self.ctx, ts, &mut writes).await?;
            let role = roles::create(&known, &name, oid, cr)?;
            writes.push(KvWrite::Insert {
                key: roles::key(&name),
                value: roles::encode(&role),
            });
            known.push(role);
        }
        if !writes.is_empty() {
            catalog::commit_schema(self.ctx, ts, writes).await?;
        }
        Ok((Outcome::Command(TAG.into()), None))
    }

    pub(super) async fn alter_role(
        &mut self,
        name: &ast::Ident,
        op: &ast::AlterRoleOperation,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        let name = ident_name(name);
        let mut writes = Vec::new();
        match op {
            ast::AlterRoleOperation::WithOptions { options } => {
                let role = roles::alter(&self.cat.roles, &name, options)?;
                writes.push(KvWrite::Put {
                    key: roles::key(&name),
                    value: roles::encode(&role),
                });
            }
            ast::AlterRoleOperation::RenameRole { role_name } => {
                let to = ident_name(role_name);
                let role = roles::rename(&self.cat.roles, &name, &to)?;
                writes.push(KvWrite::Delete {
                    key: roles::key(&name),
                });
                writes.push(KvWrite::Insert {
                    key: roles::key(&to),
                    value: roles::encode(&role),
                });
            }
            other => return Err(Error::unsupported(format!("ALTER ROLE … {other}"))),
        }
        let ts = self.ctx.shared.hlc.now();
        catalog::commit_schema(self.ctx, ts, writes).await?;
        Ok((Outcome::Command("ALTER ROLE".into()), None))
    }

    pub(super) async fn drop_roles(
        &mut self,
        names: &[ast::ObjectName],
        if_exists: bool,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        let names: Vec<String> = names.iter().map(roles::role_name).collect();
        let writes = roles::drop(&self.cat.roles, &names, if_exists)?;
        if !writes.is_empty() {
            let ts = self.ctx.shared.hlc.now();
            catalog::commit_schema(self.ctx, ts, writes).await?;
        }
        Ok((Outcome::Command("DROP ROLE".into()), None))
    }
}
