//! Ids, names, status names and places (`Display_2`).

use super::*;

/// Checks a contract id (1..=256 bytes).
///
/// # Errors
/// [`Error::Invalid`] naming the field.
pub fn check_id(field: &str, id: &str) -> Result<(), Error> {
    schemas::check_id(field, id).map_err(Error::Invalid)
}

/// Checks a module name: 1..=64 ASCII letters, digits, `_` or `-`, starting with a letter.
///
/// # Errors
/// [`Error::Invalid`] saying the rule.
pub fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "`name` {name:?} must be 1 to 64 ASCII letters, digits, '_' or '-', starting with a letter (like \"Display\")"
        )))
    }
}

/// Checks a status name (1..=256 bytes of UTF-8).
///
/// # Errors
/// [`Error::Invalid`].
pub fn check_status_name(name: &str) -> Result<(), Error> {
    check_id("name", name)
}

/// A place of a system: a module name and its 1-based index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Place {
    pub name: String,
    pub index: u32,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.name, self.index)
    }
}

impl Place {
    /// Reads `{module, index?}` as a lookup or exec names it: with an index, `module` is the name;
    /// without, `Display_3` is name `Display` index 3 and `Display` alone is index 1.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty module or an index below 1.
    pub fn parse(module: &str, index: Option<i64>) -> Result<Self, Error> {
        if module.is_empty() {
            return Err(Error::Invalid(
                "`module` must not be empty (like \"Display_1\")".into(),
            ));
        }
        if module.len() > 256 {
            return Err(Error::Invalid("`module` is longer than 256 bytes".into()));
        }
        if let Some(i) = index {
            let index = u32::try_from(i)
                .ok()
                .filter(|i| *i >= 1)
                .ok_or_else(|| Error::Invalid(format!("`index` is {i}; indexes start at 1")))?;
            return Ok(Self {
                name: module.to_string(),
                index,
            });
        }
        if let Some((name, idx)) = module.rsplit_once('_') {
            if !name.is_empty() && !idx.is_empty() && idx.chars().all(|c| c.is_ascii_digit()) {
                let index: u32 = idx.parse().ok().filter(|i| *i >= 1).ok_or_else(|| {
                    Error::Invalid(format!("`module` {module:?}: indexes start at 1"))
                })?;
                return Ok(Self {
                    name: name.to_string(),
                    index,
                });
            }
        }
        Ok(Self {
            name: module.to_string(),
            index: 1,
        })
    }
}

/// The places of a system's modules in order: each name's modules are counted from 1.
/// `name_of` gives a module's name (modules without one are skipped).
pub fn places<'a>(
    modules: &'a [String],
    name_of: impl Fn(&str) -> Option<&'a str>,
) -> Vec<(Place, String)> {
    let mut counts: HashMap<&str, u32> = HashMap::new();
    let mut out = Vec::with_capacity(modules.len());
    for m in modules {
        if let Some(name) = name_of(m) {
            let c = counts.entry(name).or_insert(0);
            *c += 1;
            out.push((
                Place {
                    name: name.to_string(),
                    index: *c,
                },
                m.clone(),
            ));
        }
    }
    out
}
