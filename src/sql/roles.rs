//! Roles: `CREATE ROLE | USER`, `ALTER ROLE | USER`, `DROP ROLE | USER`, recorded in the
//! system range (one record per role under `role/<name>`) and loaded with the catalog, so
//! `pg_roles`, `pg_user` and psql's `\du` list them on every node.
//!
//! `root` is built in (the superuser every connection acts as today) and cannot be
//! created, altered or dropped.
//!
//! # Implementation caveats
//!
//! - Roles are names and attributes only: no authentication (a password is accepted and
//!   not kept; pgwire accepts any user name), no privileges (GRANT / REVOKE are not
//!   checked), no membership (`IN ROLE`, `GRANT role TO role`).

use sqlparser::ast;

use crate::error::{Error, ErrorKind, Result};
use crate::kv::keys;
use crate::kv::KvWrite;
use crate::sql::record::{put_str, Reader};

/// The key prefix of role records (under the system range's meta keys).
pub const PREFIX: &str = "role/";

/// The built-in superuser.
pub const ROOT: &str = "root";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub oid: u32,
    pub superuser: bool,
    pub create_db: bool,
    pub create_role: bool,
    pub inherit: bool,
    pub login: bool,
    pub replication: bool,
    pub bypass_rls: bool,
    /// `CONNECTION LIMIT` (-1: none).
    pub conn_limit: i64,
}

impl Role {
    fn new(name: String, oid: u32, login: bool) -> Role {
        Role {
            name,
            oid,
            superuser: false,
            create_db: false,
            create_role: false,
            inherit: true,
            login,
            replication: false,
            bypass_rls: false,
            conn_limit: -1,
        }
    }
}

pub fn key(name: &str) -> Vec<u8> {
    keys::meta_key(&format!("{PREFIX}{name}"))
}

pub fn encode(r: &Role) -> Vec<u8> {
    let mut out = vec![1u8];
    put_str(&mut out, &r.name);
    out.extend_from_slice(&r.oid.to_le_bytes());
    let flags = [
        r.superuser,
        r.create_db,
        r.create_role,
        r.inherit,
        r.login,
        r.replication,
        r.bypass_rls,
    ]
    .iter()
    .enumerate()
    .fold(0u8, |acc, (i, &b)| acc | (u8::from(b) << i));
    out.push(flags);
    out.extend_from_slice(&r.conn_limit.to_le_bytes());
    out
}

pub fn decode(b: &[u8]) -> Result<Role> {
    let corrupt = || Error::internal("corrupt role record");
    let (&version, rest) = b.split_first().ok_or_else(corrupt)?;
    if version != 1 {
        return Err(corrupt());
    }
    let mut r = Reader(rest);
    let name = r.str().ok_or_else(corrupt)?;
    let oid = r.u32().ok_or_else(corrupt)?;
    let flags = r.u8().ok_or_else(corrupt)?;
    let conn_limit = r.i64().ok_or_else(corrupt)?;
    let bit = |i: u8| flags & (1 << i) != 0;
    Ok(Role {
        name,
        oid,
        superuser: bit(0),
        create_db: bit(1),
        create_role: bit(2),
        inherit: bit(3),
        login: bit(4),
        replication: bit(5),
        bypass_rls: bit(6),
        conn_limit,
    })
}

/// A role name as written: unquoted identifiers fold to lower case.
pub fn role_name(n: &ast::ObjectName) -> String {
    crate::sql::expr::object_name(n)
}

fn refuse_builtin(name: &str, what: &str) -> Result<()> {
    if name == ROOT || name.starts_with("pg_") {
        return Err(Error::new(
            ErrorKind::ReservedName,
            format!("role name \"{name}\" is reserved: it cannot be {what}"),
        ));
    }
    Ok(())
}

/// The record of a new role `name` (`CREATE ROLE` / `CREATE USER`, whose pre-parsed form
/// adds LOGIN): 42710 when it exists.
pub fn create(existing: &[Role], name: &str, oid: u32, cr: &ast::CreateRole) -> Result<Role> {
    refuse_builtin(name, "created")?;
    if existing.iter().any(|r| r.name == name) {
        return Err(Error::new(
            ErrorKind::DuplicateObject,
            format!("role \"{name}\" already exists"),
        ));
    }
    let mut role = Role::new(name.to_string(), oid, false);
    let set = |target: &mut bool, v: Option<bool>| {
        if let Some(v) = v {
            *target = v;
        }
    };
    set(&mut role.login, cr.login);
    set(&mut role.superuser, cr.superuser);
    set(&mut role.create_db, cr.create_db);
    set(&mut role.create_role, cr.create_role);
    set(&mut role.inherit, cr.inherit);
    set(&mut role.replication, cr.replication);
    set(&mut role.bypass_rls, cr.bypassrls);
    if let Some(limit) = &cr.connection_limit {
        role.conn_limit = connection_limit(limit)?;
    }
    Ok(role)
}

fn connection_limit(e: &ast::Expr) -> Result<i64> {
    let text = e.to_string();
    match text.trim().parse::<i64>() {
        Ok(n) if n >= -1 => Ok(n),
        _ => Err(Error::new(
            ErrorKind::InvalidParameterValue,
            format!("invalid connection limit: {text}"),
        )),
    }
}

/// The writes that drop roles `names` (42704 for a missing one unless `if_exists`).
pub fn drop(existing: &[Role], names: &[String], if_exists: bool) -> Result<Vec<KvWrite>> {
    let mut writes = Vec::new();
    for name in names {
        if name == ROOT {
            return Err(Error::new(
                ErrorKind::DependentObjects,
                format!("role \"{name}\" cannot be dropped: it is the built-in superuser"),
            ));
        }
        if existing.iter().any(|r| &r.name == name) {
            writes.push(KvWrite::Delete { key: key(name) });
        } else if !if_exists {
            return Err(undefined(name));
        }
    }
    Ok(writes)
}

/// Role `name` after `ALTER ROLE name WITH options` (the writes replace its record).
pub fn alter(existing: &[Role], name: &str, options: &[ast::RoleOption]) -> Result<Role> {
    refuse_builtin(name, "altered")?;
    let mut role = existing
        .iter()
        .find(|r| r.name == name)
        .cloned()
        .ok_or_else(|| undefined(name))?;
    for o in options {
        use ast::RoleOption as O;
        match o {
            O::BypassRLS(b) => role.bypass_rls = *b,
            O::ConnectionLimit(e) => role.conn_limit = connection_limit(e)?,
            O::CreateDB(b) => role.create_db = *b,
            O::CreateRole(b) => role.create_role = *b,
            O::Inherit(b) => role.inherit = *b,
            O::Login(b) => role.login = *b,
            O::Replication(b) => role.replication = *b,
            O::SuperUser(b) => role.superuser = *b,
            O::Password(_) | O::ValidUntil(_) => {}
        }
    }
    Ok(role)
}

/// Role `from` renamed `to` (42710 when `to` exists).
pub fn rename(existing: &[Role], from: &str, to: &str) -> Result<Role> {
    refuse_builtin(from, "renamed")?;
    refuse_builtin(to, "created")?;
    if existing.iter().any(|r| r.name == to) {
        return Err(Error::new(
            ErrorKind::DuplicateObject,
            format!("role \"{to}\" already exists"),
        ));
    }
    let mut role = existing
        .iter()
        .find(|r| r.name == from)
        .cloned()
        .ok_or_else(|| undefined(from))?;
    role.name = to.to_string();
    Ok(role)
}

pub fn undefined(name: &str) -> Error {
    Error::new(
        ErrorKind::UndefinedObject,
        format!("role \"{name}\" does not exist"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut r = Role::new("setsuna".into(), 120, true);
        r.create_db = true;
        r.conn_limit = 5;
        assert_eq!(decode(&encode(&r)).unwrap(), r);
        assert!(decode(&[2]).is_err());
        assert!(decode(&encode(&r)[..5]).is_err());
    }
}
