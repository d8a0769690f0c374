//! The args file of a binary module: a flat JSON object of options plus `_ansible_*`
//! keys, checked against a module's option spec the way Ansible's own argument spec
//! would check it (types, string booleans, choices, unknown options).

use serde_json::{Map, Value};

/// The type of one option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// A string (numbers are accepted and turned into strings).
    Str,
    /// An integer (a string of digits is accepted, as `k=v` sends them).
    Int,
    /// A boolean, in any form Ansible accepts (`yes`, `true`, `1`, `on`, ...).
    Bool,
    /// A list of strings; a comma-separated string is split, as Ansible does.
    List,
    /// A mapping of name to a list of strings.
    DictOfLists,
}

impl Type {
    /// The name Ansible's docs use for this type.
    pub fn doc_name(self) -> &'static str {
        match self {
            Type::Str => "str",
            Type::Int => "int",
            Type::Bool => "bool",
            Type::List => "list",
            Type::DictOfLists => "dict",
        }
    }
}

/// One option of a module.
#[derive(Debug, Clone, Copy)]
pub struct Opt {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub ty: Type,
    /// Allowed values (strings only); empty for any.
    pub choices: &'static [&'static str],
    /// Must be given.
    pub required: bool,
}

impl Opt {
    /// An optional option of type `ty`.
    pub const fn new(name: &'static str, ty: Type) -> Opt {
        Opt {
            name,
            ty,
            choices: &[],
            required: false,
        }
    }

    /// The same option, required.
    pub const fn required(mut self) -> Opt {
        self.required = true;
        self
    }

    /// The same option, limited to `choices`.
    pub const fn choices(mut self, choices: &'static [&'static str]) -> Opt {
        self.choices = choices;
        self
    }
}

/// Options plus what Ansible told the module about the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModuleArgs {
    /// Options after checking and coercion; unset and `null` options are absent.
    pub options: Map<String, Value>,
    /// `_ansible_check_mode`: predict, change nothing.
    pub check_mode: bool,
    /// `_ansible_diff`: return `diff` with `before`/`after`.
    pub diff: bool,
}

/// Ansible's truthy and falsy strings (`ansible.module_utils.parsing.convert_bool`).
pub fn parse_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => {
            let x = n.as_f64();
            (x == Some(1.0) || x == Some(0.0)).then_some(x == Some(1.0))
        }
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" | "on" | "1" | "true" | "t" | "1.0" => Some(true),
            "n" | "no" | "off" | "0" | "false" | "f" | "0.0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn as_str_item(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn as_list(v: &Value) -> Option<Value> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|x| as_str_item(x).map(Value::String))
            .collect::<Option<Vec<_>>>()
            .map(Value::Array),
        // `k=v` and Jinja give "a,b"; Ansible splits such strings into lists.
        Value::String(s) => Some(Value::Array(
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(|x| Value::String(x.to_string()))
                .collect(),
        )),
        Value::Number(n) => Some(Value::Array(vec![Value::String(n.to_string())])),
        _ => None,
    }
}

fn coerce(opt: &Opt, v: &Value) -> Result<Value, String> {
    let bad = || {
        format!(
            "argument '{}' is of type {} and we were unable to convert to {}: {}",
            opt.name,
            type_name(v),
            opt.ty.doc_name(),
            v
        )
    };
    let out = match opt.ty {
        Type::Str => as_str_item(v).map(Value::String),
        Type::Int => match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => Some(v.clone()),
            Value::String(s) => s.trim().parse::<i64>().ok().map(Value::from),
            _ => None,
        },
        Type::Bool => parse_bool(v).map(Value::Bool),
        Type::List => as_list(v),
        Type::DictOfLists => match v {
            Value::Object(m) => m
                .iter()
                .map(|(k, x)| as_list(x).map(|l| (k.clone(), l)))
                .collect::<Option<Map<_, _>>>()
                .map(Value::Object),
            _ => None,
        },
    }
    .ok_or_else(bad)?;
    if !opt.choices.is_empty() {
        let s = out.as_str().unwrap_or_default();
        if !opt.choices.contains(&s) {
            return Err(format!(
                "value of {} must be one of: {}, got: {s}",
                opt.name,
                opt.choices.join(", ")
            ));
        }
    }
    Ok(out)
}

/// Parses the text of an args file for `module` against `spec`.
///
/// Unknown `_ansible_*` keys are ignored (their set changes between ansible-core
/// versions); any other unknown key is an error listing the supported options.
pub fn parse(module: &str, text: &str, spec: &[Opt]) -> Result<ModuleArgs, String> {
    let raw: Value = serde_json::from_str(text)
        .map_err(|e| format!("the module arguments are not valid JSON: {e}"))?;
    let Value::Object(raw) = raw else {
        return Err(format!(
            "the module arguments must be a JSON object, got {}",
            type_name(&raw)
        ));
    };
    let mut args = ModuleArgs::default();
    let mut unknown = Vec::new();
    let mut errors = Vec::new();
    for (k, v) in &raw {
        if let Some(internal) = k.strip_prefix("_ansible_") {
            let flag = || parse_bool(v).unwrap_or(false);
            match internal {
                "check_mode" => args.check_mode = flag(),
                "diff" => args.diff = flag(),
                _ => {}
            }
            continue;
        }
        let Some(opt) = spec.iter().find(|o| o.name == k) else {
            unknown.push(k.clone());
            continue;
        };
        if v.is_null() {
            continue;
        }
        match coerce(opt, v) {
            Ok(v) => {
                args.options.insert(k.clone(), v);
            }
            Err(e) => errors.push(e),
        }
    }
    if !unknown.is_empty() {
        let mut names: Vec<&str> = spec.iter().map(|o| o.name).collect();
        names.sort_unstable();
        return Err(format!(
            "Unsupported parameters for ({module}) module: {}. Supported parameters include: {}.",
            unknown.join(", "),
            names.join(", ")
        ));
    }
    let missing: Vec<&str> = spec
        .iter()
        .filter(|o| o.required && !args.options.contains_key(o.name))
        .map(|o| o.name)
        .collect();
    if !missing.is_empty() {
        errors.insert(
            0,
            format!("missing required arguments: {}", missing.join(", ")),
        );
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    Ok(args)
}

impl ModuleArgs {
    /// A string option.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.options.get(name).and_then(Value::as_str)
    }

    /// A boolean option (`None` when not given).
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.options.get(name).and_then(Value::as_bool)
    }

    /// A list option (empty when not given).
    pub fn list(&self, name: &str) -> Vec<String> {
        self.options
            .get(name)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SPEC: &[Opt] = &[
        Opt::new("name", Type::Str).required(),
        Opt::new("state", Type::Str).choices(&["present", "absent"]),
        Opt::new("everyone", Type::Bool),
        Opt::new("port", Type::Int),
        Opt::new("users", Type::List),
        Opt::new("sets", Type::DictOfLists),
    ];

    fn p(v: Value) -> Result<ModuleArgs, String> {
        parse("zfs_allow", &v.to_string(), SPEC)
    }

    #[test]
    fn string_booleans_in_every_form_ansible_sends() {
        for (s, b) in [
            ("yes", true),
            ("True", true),
            ("1", true),
            ("on", true),
            ("y", true),
            ("no", false),
            ("false", false),
            ("0", false),
            ("off", false),
            ("N", false),
        ] {
            let a = p(json!({"name": "p/x", "everyone": s})).unwrap();
            assert_eq!(a.bool("everyone"), Some(b), "{s}");
        }
        assert_eq!(
            p(json!({"name": "p/x", "everyone": 1}))
                .unwrap()
                .bool("everyone"),
            Some(true)
        );
        let e = p(json!({"name": "p/x", "everyone": "maybe"})).unwrap_err();
        assert!(
            e.contains("'everyone' is of type str and we were unable to convert to bool"),
            "{e}"
        );
    }

    #[test]
    fn ansible_internal_keys_are_read_or_tolerated() {
        let a = p(json!({
            "name": "p/x",
            "_ansible_check_mode": "yes",
            "_ansible_diff": true,
            "_ansible_no_log": false,
            "_ansible_some_future_key": {"x": 1},
        }))
        .unwrap();
        assert!(a.check_mode && a.diff);
        assert_eq!(a.options.len(), 1);
    }

    #[test]
    fn unknown_options_are_rejected_with_the_supported_list() {
        let e = p(json!({"name": "p/x", "permisions": ["send"]})).unwrap_err();
        assert!(
            e.starts_with("Unsupported parameters for (zfs_allow) module: permisions."),
            "{e}"
        );
        assert!(
            e.contains("Supported parameters include: everyone, name, port, sets, state, users."),
            "{e}"
        );
    }

    #[test]
    fn types_are_coerced_like_k_equals_v() {
        let a = p(
            json!({"name": "p/x", "port": "2222", "users": "a, b,c", "sets": {"@s": "send,hold"}}),
        )
        .unwrap();
        assert_eq!(a.options["port"], json!(2222));
        assert_eq!(a.list("users"), ["a", "b", "c"]);
        assert_eq!(a.options["sets"], json!({"@s": ["send", "hold"]}));
        let a = p(json!({"name": 5, "users": ["x", 7], "port": null})).unwrap();
        assert_eq!(a.str("name"), Some("5"));
        assert_eq!(a.list("users"), ["x", "7"]);
        assert!(!a.options.contains_key("port"));
    }

    #[test]
    fn wrong_types_missing_and_bad_choices_are_all_reported() {
        let e = p(json!({"port": "twenty", "users": {"a": 1}, "state": "gone"})).unwrap_err();
        assert!(e.starts_with("missing required arguments: name"), "{e}");
        assert!(
            e.contains("'port' is of type str and we were unable to convert to int"),
            "{e}"
        );
        assert!(e.contains("'users' is of type dict"), "{e}");
        assert!(
            e.contains("value of state must be one of: present, absent, got: gone"),
            "{e}"
        );
    }

    #[test]
    fn not_an_object_or_not_json() {
        assert!(parse("m", "[1]", SPEC)
            .unwrap_err()
            .contains("must be a JSON object"));
        assert!(parse("m", "name=x", SPEC)
            .unwrap_err()
            .contains("not valid JSON"));
    }
}
