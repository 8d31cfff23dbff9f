//! `EVAL`, `EVALSHA` and `SCRIPT` in the simulated Redis: the project's Lua scripts run unchanged
//! on Lua 5.1 (Redis's version) through mlua, with Redis's `redis.call`, `redis.pcall`,
//! `redis.error_reply`, `redis.status_reply` and `cjson`, and Redis's conversion rules between
//! Lua values and replies.

use std::collections::BTreeMap;

use mlua::{Function, LightUserData, Lua, MultiValue, Table, Value};
use redis_protocol::resp2::types::OwnedFrame as Frame;

use super::keyspace::{Keyspace, Reply, error};

/// Loaded scripts, by SHA1, and the Lua state they run in.
pub struct Scripts {
    lua: Lua,
    functions: BTreeMap<String, Function>,
}

impl std::fmt::Debug for Scripts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scripts")
            .field("loaded", &self.functions.len())
            .finish_non_exhaustive()
    }
}

/// The SHA1 Redis names a script by, lowercase hex.
pub fn sha1_hex(body: &[u8]) -> String {
    sha1_smol::Sha1::from(body).digest().to_string()
}

/// `cjson.null`: JSON null, as Redis's cjson represents it.
fn json_null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

fn json_to_lua(lua: &Lua, json: &serde_json::Value) -> mlua::Result<Value> {
    Ok(match json {
        serde_json::Value::Null => json_null(),
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Value::String(lua.create_string(s)?),
        serde_json::Value::Array(items) => {
            let table = lua.create_table()?;
            for (index, item) in items.iter().enumerate() {
                table.raw_set(index + 1, json_to_lua(lua, item)?)?;
            }
            Value::Table(table)
        }
        serde_json::Value::Object(fields) => {
            let table = lua.create_table()?;
            for (key, item) in fields {
                table.raw_set(key.as_str(), json_to_lua(lua, item)?)?;
            }
            Value::Table(table)
        }
    })
}

fn lua_to_json(value: &Value) -> mlua::Result<serde_json::Value> {
    Ok(match value {
        Value::Nil => serde_json::Value::Null,
        Value::LightUserData(data) if data.0.is_null() => serde_json::Value::Null,
        Value::Boolean(b) => serde_json::Value::Bool(*b),
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Number(n) => serde_json::Value::from(*n),
        Value::String(s) => serde_json::Value::String(s.to_str()?.to_owned()),
        Value::Table(table) if table.raw_len() > 0 => serde_json::Value::Array(
            table
                .clone()
                .sequence_values::<Value>()
                .map(|item| lua_to_json(&item?))
                .collect::<mlua::Result<_>>()?,
        ),
        Value::Table(table) => {
            let mut object = serde_json::Map::new();
            for pair in table.clone().pairs::<String, Value>() {
                let (key, item) = pair?;
                object.insert(key, lua_to_json(&item)?);
            }
            serde_json::Value::Object(object)
        }
        other => {
            return Err(mlua::Error::RuntimeError(format!(
                "Cannot serialise {}",
                other.type_name()
            )));
        }
    })
}

/// A `redis.call` argument as the bytes Redis would send: strings as they are, numbers printed.
fn argument(value: &Value) -> mlua::Result<Vec<u8>> {
    match value {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        Value::Integer(i) => Ok(i.to_string().into_bytes()),
        Value::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => {
            Ok((*n as i64).to_string().into_bytes())
        }
        Value::Number(n) => Ok(n.to_string().into_bytes()),
        _ => Err(mlua::Error::RuntimeError(
            "Lua redis lib command arguments must be strings or integers".to_owned(),
        )),
    }
}

/// A reply as Lua sees it (Redis's conversion): integers, strings, `false` for nil, tables for
/// arrays, `{ok=...}` for statuses, `{err=...}` for errors.
fn reply_to_lua(lua: &Lua, reply: &Reply) -> mlua::Result<Value> {
    Ok(match reply {
        Frame::Integer(i) => Value::Integer(*i),
        Frame::BulkString(bytes) => Value::String(lua.create_string(bytes)?),
        Frame::Null => Value::Boolean(false),
        Frame::SimpleString(status) => {
            let table = lua.create_table()?;
            table.raw_set("ok", lua.create_string(status)?)?;
            Value::Table(table)
        }
        Frame::Error(message) => {
            let table = lua.create_table()?;
            table.raw_set("err", message.as_str())?;
            Value::Table(table)
        }
        Frame::Array(items) => {
            let table = lua.create_table()?;
            for (index, item) in items.iter().enumerate() {
                table.raw_set(index + 1, reply_to_lua(lua, item)?)?;
            }
            Value::Table(table)
        }
    })
}

/// A script's return value as a reply (Redis's conversion).
fn lua_to_reply(value: &Value) -> Reply {
    match value {
        Value::Integer(i) => Frame::Integer(*i),
        Value::Number(n) => Frame::Integer(*n as i64),
        Value::String(s) => Frame::BulkString(s.as_bytes().to_vec()),
        Value::Boolean(true) => Frame::Integer(1),
        Value::Table(table) => {
            if let Ok(Value::String(message)) = table.raw_get::<Value>("err") {
                return Frame::Error(message.to_string_lossy());
            }
            if let Ok(Value::String(status)) = table.raw_get::<Value>("ok") {
                return Frame::SimpleString(status.as_bytes().to_vec());
            }
            // An array stops at its first nil, as in Redis.
            let mut items = Vec::new();
            for index in 1.. {
                match table.raw_get::<Value>(index) {
                    Ok(Value::Nil) | Err(_) => break,
                    Ok(item) => items.push(lua_to_reply(&item)),
                }
            }
            Frame::Array(items)
        }
        _ => Frame::Null,
    }
}

/// The text of a Lua error, without mlua's wrapping.
fn error_text(error: &mlua::Error) -> String {
    match error {
        mlua::Error::CallbackError { cause, .. } => error_text(cause),
        mlua::Error::RuntimeError(message) => message.clone(),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// A script error as Redis replies it: errors that carry a code (`ERR`, `WRONGTYPE`, …) as
/// they are, anything else under `ERR`.
fn script_error(error: &mlua::Error) -> Reply {
    let text = error_text(error);
    let has_code = text
        .split(' ')
        .next()
        .is_some_and(|word| !word.is_empty() && word.chars().all(|c| c.is_ascii_uppercase()));
    if has_code {
        Frame::Error(text)
    } else {
        Frame::Error(format!("ERR user_script: {text}"))
    }
}

impl Scripts {
    /// A fresh Lua state with `cjson` and the static part of `redis`.
    pub fn new() -> mlua::Result<Self> {
        let lua = Lua::new();
        let cjson = lua.create_table()?;
        cjson.set(
            "decode",
            lua.create_function(|lua, text: mlua::String| {
                let json: serde_json::Value = serde_json::from_slice(&text.as_bytes())
                    .map_err(|e| mlua::Error::RuntimeError(format!("Expected value: {e}")))?;
                json_to_lua(lua, &json)
            })?,
        )?;
        cjson.set(
            "encode",
            lua.create_function(|_, value: Value| {
                serde_json::to_string(&lua_to_json(&value)?)
                    .map_err(|e| mlua::Error::RuntimeError(e.to_string()))
            })?,
        )?;
        cjson.set("null", json_null())?;
        lua.globals().set("cjson", cjson)?;
        let redis = lua.create_table()?;
        redis.set(
            "error_reply",
            lua.create_function(|lua, message: mlua::String| {
                let table = lua.create_table()?;
                table.raw_set("err", message)?;
                Ok(table)
            })?,
        )?;
        redis.set(
            "status_reply",
            lua.create_function(|lua, message: mlua::String| {
                let table = lua.create_table()?;
                table.raw_set("ok", message)?;
                Ok(table)
            })?,
        )?;
        lua.globals().set("redis", redis)?;
        Ok(Self {
            lua,
            functions: BTreeMap::new(),
        })
    }

    /// `SCRIPT LOAD`: compiles `body` and returns its SHA1.
    pub fn load(&mut self, body: &[u8]) -> Result<String, Reply> {
        let sha = sha1_hex(body);
        if !self.functions.contains_key(&sha) {
            let function = self
                .lua
                .load(body)
                .set_name(format!("@user_script:{sha}"))
                .into_function()
                .map_err(|e| {
                    error(format!(
                        "ERR Error compiling script (new function): {}",
                        error_text(&e)
                    ))
                })?;
            self.functions.insert(sha.clone(), function);
        }
        Ok(sha)
    }

    /// `SCRIPT EXISTS` for one SHA1.
    pub fn exists(&self, sha: &str) -> bool {
        self.functions.contains_key(&sha.to_ascii_lowercase())
    }

    /// `SCRIPT FLUSH`.
    pub fn flush(&mut self) {
        self.functions.clear();
    }

    /// Runs the loaded script `sha` with `keys` and `argv` against `keyspace`, atomically (the
    /// caller holds the server).
    pub fn eval(
        &mut self,
        keyspace: &mut Keyspace,
        sha: &str,
        keys: &[Vec<u8>],
        argv: &[Vec<u8>],
    ) -> Reply {
        let Some(function) = self.functions.get(&sha.to_ascii_lowercase()).cloned() else {
            return error("NOSCRIPT No matching script. Please use EVAL.");
        };
        let lua = &self.lua;
        // Both `call` and `pcall` run commands on the keyspace; they differ on errors.
        let keyspace = std::cell::RefCell::new(keyspace);
        let run = |lua: &Lua, args: MultiValue, raise: bool| -> mlua::Result<Value> {
            let args = args
                .iter()
                .map(argument)
                .collect::<mlua::Result<Vec<Vec<u8>>>>()?;
            if args.is_empty() {
                return Err(mlua::Error::RuntimeError(
                    "Please specify at least one argument for this redis lib call".into(),
                ));
            }
            let reply = keyspace.borrow_mut().execute(&args);
            match reply {
                Frame::Error(message) if raise => Err(mlua::Error::RuntimeError(message)),
                reply => reply_to_lua(lua, &reply),
            }
        };
        let strings = |items: &[Vec<u8>]| -> mlua::Result<Table> {
            let table = lua.create_table()?;
            for (index, item) in items.iter().enumerate() {
                table.raw_set(index + 1, lua.create_string(item)?)?;
            }
            Ok(table)
        };
        let result = lua.scope(|scope| {
            lua.globals().set("KEYS", strings(keys)?)?;
            lua.globals().set("ARGV", strings(argv)?)?;
            let redis: Table = lua.globals().get("redis")?;
            redis.set(
                "call",
                scope.create_function(|lua, args: MultiValue| run(lua, args, true))?,
            )?;
            redis.set(
                "pcall",
                scope.create_function(|lua, args: MultiValue| run(lua, args, false))?,
            )?;
            function.call::<Value>(())
        });
        match result {
            Ok(value) => lua_to_reply(&value),
            Err(e) => script_error(&e),
        }
    }
}
