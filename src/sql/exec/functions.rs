//! `CREATE [OR REPLACE] FUNCTION … LANGUAGE sql` and `DROP FUNCTION [IF EXISTS] f[(types)]`.
//!
//! A function is a descriptor of its own ([`catalog::FunctionDesc`], under
//! [`keys::function_key`]), in a database and a schema like a relation; calls are inlined
//! where statements are planned ([`crate::sql::udf`]). CREATE checks the body as
//! PostgreSQL's `check_function_bodies` does: the body is planned with each parameter a
//! NULL of its type, so unknown tables, columns and functions fail the CREATE, and the
//! body's one result column must convert to the return type by assignment.
//!
//! # Implementation caveats
//!
//! - Only `LANGUAGE sql` with a scalar result; `DROP FUNCTION … CASCADE` drops nothing
//!   more (no dependencies are recorded).
//! - `DROP FUNCTION IF EXISTS` of a missing function is silent (PostgreSQL sends a NOTICE).

use super::*;
use crate::sql::catalog::{FunctionArgDesc, FunctionBody, FunctionDesc};
use crate::sql::udf::{self, Inliner};

impl Exec<'_> {
    pub(super) async fn create_function(
        &mut self,
        cf: &ast::CreateFunction,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        if cf.temporary || cf.or_alter || cf.if_not_exists || cf.using.is_some() {
            return Err(Error::syntax(format!(
                "syntax error at or near \"{}\"",
                if cf.temporary {
                    "TEMPORARY"
                } else if cf.using.is_some() {
                    "USING"
                } else {
                    "FUNCTION"
                }
            )));
        }
        let desc = self.function_desc(cf)?;
        let same_args = |f: &Rc<FunctionDesc>| {
            f.args.len() == desc.args.len()
                && f.args.iter().zip(&desc.args).all(|(a, b)| a.ty == b.ty)
        };
        let existing = self
            .cat
            .functions_in(self.db_id)
            .find(|f| f.schema_id == desc.schema_id && f.name == desc.name && same_args(f))
            .cloned();
        let mut desc = desc;
        if let Some(old) = &existing {
            if !cf.or_replace {
                return Err(Error::new(
                    ErrorKind::DuplicateFunction,
                    format!(
                        "function \"{}\" already exists with same argument types",
                        desc.name
                    ),
                ));
            }
            if old.returns != desc.returns {
                return Err(Error::new(
                    ErrorKind::InvalidFunctionDefinition,
                    "cannot change return type of existing function",
                )
                .with_hint(format!(
                    "Use DROP FUNCTION {}({}) first.",
                    old.name,
                    old.signature().replace(", ", ",")
                )));
            }
            desc.id = old.id;
        }
        self.check_function_body(&desc)?;
        let ts = self.ctx.shared.hlc.now();
        let mut writes = Vec::new();
        if existing.is_none() {
            desc.id = catalog::next_id(self.ctx, ts, &mut writes).await?;
        }
        writes.push(KvWrite::Put {
            key: keys::function_key(desc.id),
            value: catalog::encode_function(&desc),
        });
        catalog::commit_schema(self.ctx, ts, writes).await?;
        Ok((Outcome::Command("CREATE FUNCTION".into()), None))
    }

    /// The descriptor `cf` asks for (its id still 0).
    fn function_desc(&self, cf: &ast::CreateFunction) -> Result<FunctionDesc> {
        let (schema_id, name) = self.cat.creation_name(self.db_id, &self.path, &cf.name)?;
        let body = match &cf.function_body {
            Some(ast::CreateFunctionBody::AsBeforeOptions {
                body,
                link_symbol: None,
            })
            | Some(ast::CreateFunctionBody::AsAfterOptions(body)) => match body {
                Expr::Value(v) => match &v.value {
                    ast::Value::SingleQuotedString(s) => FunctionBody::As(s.clone()),
                    ast::Value::DollarQuotedString(d) => FunctionBody::As(d.value.clone()),
                    _ => return Err(Error::syntax("a function body must be a string")),
                },
                _ => return Err(Error::syntax("a function body must be a string")),
            },
            Some(ast::CreateFunctionBody::Return(e)) => FunctionBody::Return(e.to_string()),
            Some(ast::CreateFunctionBody::AsBeforeOptions { .. }) => {
                return Err(Error::new(
                    ErrorKind::InvalidFunctionDefinition,
                    "only one AS item needed for language \"sql\"",
                ))
            }
            Some(_) => {
                return Err(Error::unsupported(
                    "this form of function body is not supported (use AS '…' or RETURN expr)",
                ))
            }
            None => {
                return Err(Error::new(
                    ErrorKind::InvalidFunctionDefinition,
                    "no function body specified",
                ))
            }
        };
        match cf.language.as_ref().map(ident_name) {
            Some(l) if l == "sql" => {}
            None if matches!(body, FunctionBody::Return(_)) => {}
            None => {
                return Err(Error::new(
                    ErrorKind::InvalidFunctionDefinition,
                    "no language specified",
                ))
            }
            Some(l) if ["plpgsql", "c", "internal"].contains(&l.as_str()) => {
                return Err(Error::unsupported(format!(
                    "functions in language \"{l}\" are not supported (only LANGUAGE sql)"
                )))
            }
            Some(l) => {
                return Err(Error::new(
                    ErrorKind::UndefinedObject,
                    format!("language \"{l}\" does not exist"),
                )
                .with_hint("Use CREATE EXTENSION to load the language into the database."))
            }
        }
        let returns_dt = match &cf.return_type {
            Some(ast::FunctionReturnType::DataType(dt)) => dt,
            Some(ast::FunctionReturnType::SetOf(_)) => {
                return Err(Error::unsupported(
                    "functions returning SETOF are not supported",
                ))
            }
            None => {
                return Err(Error::new(
                    ErrorKind::InvalidFunctionDefinition,
                    "function result type must be specified",
                ))
            }
        };
        let returns = function_type(returns_dt)?;
        let mut args: Vec<FunctionArgDesc> = Vec::new();
        for a in cf.args.iter().flatten() {
            if matches!(
                a.mode,
                Some(ast::ArgMode::Out | ast::ArgMode::InOut | ast::ArgMode::Variadic)
            ) {
                return Err(Error::unsupported(
                    "OUT, INOUT and VARIADIC parameters are not supported",
                ));
            }
            let arg_name = a.name.as_ref().map(ident_name);
            if let Some(n) = &arg_name {
                if args.iter().any(|b| b.name.as_ref() == Some(n)) {
                    return Err(Error::new(
                        ErrorKind::InvalidFunctionDefinition,
                        format!("parameter name \"{n}\" used more than once"),
                    ));
                }
            }
            if a.default_expr.is_none() && args.iter().any(|b| b.default.is_some()) {
                return Err(Error::new(
                    ErrorKind::InvalidFunctionDefinition,
                    "input parameters after one with a default value must also have defaults",
                ));
            }
            args.push(FunctionArgDesc {
                name: arg_name,
                type_sql: a.data_type.to_string(),
                ty: function_type(&a.data_type)?,
                default: a.default_expr.as_ref().map(|e| e.to_string()),
            });
        }
        let volatility = match cf.behavior {
            Some(ast::FunctionBehavior::Immutable) => b'i',
            Some(ast::FunctionBehavior::Stable) => b's',
            Some(ast::FunctionBehavior::Volatile) | None => b'v',
        };
        let strict = matches!(
            cf.called_on_null,
            Some(
                ast::FunctionCalledOnNull::Strict
                    | ast::FunctionCalledOnNull::ReturnsNullOnNullInput
            )
        );
        Ok(FunctionDesc {
            id: 0,
            db_id: self.db_id,
            schema_id,
            name,
            args,
            returns_sql: returns_dt.to_string(),
            returns,
            body,
            volatility,
            strict,
        })
    }

    /// Plans `desc`'s body (see the module essay): 42P13 unless it answers one column
    /// whose type converts to the return type.
    fn check_function_body(&self, desc: &FunctionDesc) -> Result<()> {
        let q = Inliner::new(self.cat, self.db_id, &self.path).validation_query(desc)?;
        let mut params = Vec::new();
        let columns = describe(
            self.cat,
            self.db_id,
            &self.path,
            &Statement::Query(Box::new(q)),
            &mut params,
        )?
        .unwrap_or_default();
        let mismatch = || {
            Error::new(
                ErrorKind::InvalidFunctionDefinition,
                format!(
                    "return type mismatch in function declared to return {}",
                    desc.returns.name()
                ),
            )
        };
        match columns.as_slice() {
            [c] if udf::assignment_converts(c.ty, desc.returns) => Ok(()),
            [c] => Err(mismatch().with_detail(format!("Actual return type is {}.", c.ty.name()))),
            _ => Err(mismatch().with_detail("Final statement must return exactly one column.")),
        }
    }

    pub(super) async fn drop_function(
        &mut self,
        df: &ast::DropFunction,
    ) -> Result<(Outcome, Option<Vec<Column>>)> {
        let mut writes = Vec::new();
        for fd in &df.func_desc {
            if let Some(f) = self.function_to_drop(fd, df.if_exists)? {
                writes.push(KvWrite::Delete {
                    key: keys::function_key(f.id),
                });
            }
        }
        if !writes.is_empty() {
            let ts = self.ctx.shared.hlc.now();
            catalog::commit_schema(self.ctx, ts, writes).await?;
        }
        Ok((Outcome::Command("DROP FUNCTION".into()), None))
    }

    /// The function `fd` names (`None` when it does not exist and `if_exists`).
    fn function_to_drop(
        &self,
        fd: &ast::FunctionDesc,
        if_exists: bool,
    ) -> Result<Option<Rc<FunctionDesc>>> {
        let (schema, name) = catalog::split_name(&fd.name)?;
        let (schema, name) = (schema.as_deref(), &name);
        let found = match self
            .cat
            .functions_named(self.db_id, &self.path, schema, name)
        {
            Ok(found) => found,
            Err(_) if if_exists => return Ok(None),
            Err(e) => return Err(e),
        };
        match &fd.args {
            None => match found.as_slice() {
                [one] => Ok(Some(one.clone())),
                [] if if_exists => Ok(None),
                [] => Err(Error::new(
                    ErrorKind::UndefinedFunction,
                    format!("could not find a function named \"{name}\""),
                )),
                _ => Err(Error::new(
                    ErrorKind::AmbiguousFunction,
                    format!("function name \"{name}\" is not unique"),
                )
                .with_hint("Specify the argument list to select the function unambiguously.")),
            },
            Some(args) => {
                // OUT parameters are not part of the signature.
                let mut types = Vec::new();
                for a in args {
                    if !matches!(a.mode, Some(ast::ArgMode::Out)) {
                        types.push(function_type(&a.data_type)?);
                    }
                }
                let hit = found.into_iter().find(|f| {
                    f.args.len() == types.len()
                        && f.args.iter().zip(&types).all(|(a, t)| a.ty == *t)
                });
                match hit {
                    Some(f) => Ok(Some(f)),
                    None if if_exists => Ok(None),
                    None => Err(Error::new(
                        ErrorKind::UndefinedFunction,
                        format!(
                            "function {}({}) does not exist",
                            catalog::display_name(&fd.name),
                            types
                                .iter()
                                .map(|t| t.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )),
                }
            }
        }
    }
}

/// The type a parameter or result names: 42704 for one that does not exist, 0A000 for
/// `void` and the pseudo-types.
fn function_type(dt: &ast::DataType) -> Result<SqlType> {
    let text = dt.to_string().to_lowercase();
    if [
        "void",
        "record",
        "trigger",
        "anyelement",
        "anyarray",
        "internal",
    ]
    .contains(&text.as_str())
        || matches!(dt, ast::DataType::Table(_))
    {
        return Err(Error::unsupported(format!(
            "SQL functions of type {text} are not supported"
        )));
    }
    let ty = catalog::function_type(&dt.to_string());
    if ty == SqlType::Unknown {
        // PostgreSQL names the type unquoted here.
        return Err(Error::new(
            ErrorKind::UndefinedObject,
            format!("type {text} does not exist"),
        ));
    }
    Ok(ty)
}
