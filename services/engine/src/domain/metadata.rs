//! Driver metadata: its parameter types and the argument checks of `exec`.

use super::*;

/// One type of the metadata's type language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseType {
    String,
    Int32,
    Int64,
    Float64,
    Bool,
    Json,
}

impl BaseType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.trim() {
            "String" => Self::String,
            "Int32" => Self::Int32,
            "Int64" => Self::Int64,
            "Float64" => Self::Float64,
            "Bool" => Self::Bool,
            "JSON" => Self::Json,
            _ => return None,
        })
    }

    /// Whether a JSON value has this type.
    #[must_use]
    pub fn accepts(self, v: &Value) -> bool {
        match self {
            Self::String => v.is_string(),
            Self::Int32 => v.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
            Self::Int64 => v.is_i64() || v.as_u64().is_some_and(|u| i64::try_from(u).is_ok()),
            Self::Float64 => v.is_number(),
            Self::Bool => v.is_boolean(),
            Self::Json => true,
        }
    }
}

/// A parameter's type: one base type or a union (`String|Int32`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamType {
    pub text: String,
    pub alternatives: Vec<BaseType>,
}

impl ParamType {
    /// Parses `String`, `Int32|String`, ...
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the unknown type.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut alternatives = Vec::new();
        for part in text.split('|') {
            let t = BaseType::parse(part).ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown parameter type {part:?} in {text:?}; types are String, Int32, Int64, Float64, Bool, JSON and unions like String|Int32"
                ))
            })?;
            alternatives.push(t);
        }
        Ok(Self {
            text: text.to_string(),
            alternatives,
        })
    }

    /// Whether a JSON value has one of the alternatives.
    #[must_use]
    pub fn accepts(&self, v: &Value) -> bool {
        self.alternatives.iter().any(|t| t.accepts(v))
    }
}

/// One parameter: its type and optional default.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub ty: ParamType,
    pub default: Option<Value>,
}

/// Checked driver metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// Function -> parameter -> spec.
    pub functions: BTreeMap<String, BTreeMap<String, Param>>,
    pub support: BTreeSet<String>,
    pub administrator: BTreeSet<String>,
    /// The wire form, as registered.
    pub raw: schemas::engine::DriverMetadata,
}

impl Metadata {
    /// Checks wire metadata: every type known, every spec `[type]` or `[type, default]` with a
    /// default of that type, every protected function a function of the driver.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the function and parameter at fault.
    pub fn parse(raw: schemas::engine::DriverMetadata) -> Result<Self, Error> {
        let mut functions = BTreeMap::new();
        for (f, params) in &raw.functions {
            if f.is_empty() {
                return Err(Error::Invalid("a function name must not be empty".into()));
            }
            let mut ps = BTreeMap::new();
            for (p, spec) in params {
                let at = format!("metadata.functions.{f}.{p}");
                let ty = match spec.first() {
                    Some(Value::String(t)) => ParamType::parse(t).map_err(|e| Error::Invalid(format!("{at}: {e}")))?,
                    _ => {
                        return Err(Error::Invalid(format!(
                            "{at} must be [type] or [type, default] with the type a string like \"Int32\""
                        )))
                    }
                };
                if spec.len() > 2 {
                    return Err(Error::Invalid(format!(
                        "{at} has {} elements; it is [type] or [type, default]",
                        spec.len()
                    )));
                }
                let default = spec.get(1).cloned();
                if let Some(d) = &default {
                    if !ty.accepts(d) {
                        return Err(Error::Invalid(format!(
                            "{at}: the default {d} is not a {}",
                            ty.text
                        )));
                    }
                }
                ps.insert(p.clone(), Param { ty, default });
            }
            functions.insert(f.clone(), ps);
        }
        for (level, list) in [
            ("support", &raw.security.support),
            ("administrator", &raw.security.administrator),
        ] {
            for f in list {
                if !functions.contains_key(f) {
                    return Err(Error::Invalid(format!(
                        "metadata.security.{level} names {f:?}, which is not one of the driver's functions"
                    )));
                }
            }
        }
        Ok(Self {
            functions,
            support: raw.security.support.iter().cloned().collect(),
            administrator: raw.security.administrator.iter().cloned().collect(),
            raw,
        })
    }

    /// Parses metadata from its stored JSON.
    ///
    /// # Errors
    /// As [`Metadata::parse`], or JSON of the wrong shape.
    pub fn from_value(v: &Value) -> Result<Self, Error> {
        let raw: schemas::engine::DriverMetadata = serde_json::from_value(v.clone())
            .map_err(|e| Error::Invalid(format!("metadata: {e}")))?;
        Self::parse(raw)
    }

    /// The role a function needs, if any.
    #[must_use]
    pub fn required_role(&self, function: &str) -> Option<Role> {
        if self.administrator.contains(function) {
            Some(Role::Administrator)
        } else if self.support.contains(function) {
            Some(Role::Support)
        } else {
            None
        }
    }

    /// Checks `args` against a function's parameters and fills in defaults.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown function; [`Error::Invalid`] for an unknown parameter, a
    /// missing one without a default, or a value of the wrong type (Int32 out of range included).
    pub fn check_args(
        &self,
        function: &str,
        args: &Map<String, Value>,
    ) -> Result<Map<String, Value>, Error> {
        let params = self.functions.get(function).ok_or_else(|| {
            Error::NotFound(format!(
                "the driver has no function {function:?}; it has: {}",
                self.functions
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let mut unknown: Vec<&str> = args
            .keys()
            .filter(|k| !params.contains_key(*k))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            return Err(Error::Invalid(format!(
                "{function} has no parameter {}; its parameters are: {}",
                unknown.join(", "),
                params.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let mut out = Map::new();
        for (name, p) in params {
            match args.get(name) {
                Some(v) => {
                    if !p.ty.accepts(v) {
                        return Err(Error::Invalid(format!(
                            "argument `{name}` of {function} must be {}; got {v}",
                            describe(&p.ty)
                        )));
                    }
                    out.insert(name.clone(), v.clone());
                }
                None => match &p.default {
                    Some(d) => {
                        out.insert(name.clone(), d.clone());
                    }
                    None => {
                        return Err(Error::Invalid(format!(
                            "argument `{name}` ({}) of {function} is missing",
                            p.ty.text
                        )))
                    }
                },
            }
        }
        Ok(out)
    }
}

pub(super) fn describe(t: &ParamType) -> String {
    let parts: Vec<&str> = t
        .alternatives
        .iter()
        .map(|b| match b {
            BaseType::String => "a String",
            BaseType::Int32 => "an Int32 (a whole number from -2147483648 to 2147483647)",
            BaseType::Int64 => "an Int64 (a whole number)",
            BaseType::Float64 => "a Float64 (a number)",
            BaseType::Bool => "a Bool",
            BaseType::Json => "any JSON",
        })
        .collect();
    parts.join(" or ")
}
