//! Text at the SQL boundary: any UTF-8 string survives PostgreSQL.
//!
//! PostgreSQL `text` cannot hold U+0000 ("invalid byte sequence for encoding UTF8: 0x00") and
//! `jsonb` refuses the escape `\u0000`, yet the contract allows NUL in every id (it is valid UTF-8).
//! Every string a read model stores goes through [`esc`] (or [`esc_json`] for documents) and every
//! string read back through [`unesc`] (or [`unesc_json`]), a reversible escape with U+0001 as the
//! escape character:
//!
//! | in the domain | in PostgreSQL |
//! |---|---|
//! | U+0000 | U+0001 `0` |
//! | U+0001 | U+0001 `1` |
//!
//! Every other string is stored unchanged (no copy is made), so equality, `ANY($1)` and the order
//! of strings without these two characters are what they were, and existing rows need no migration.
//! A query binds the escaped form of what it looks up, so an id holding NUL is found like any other.

use serde_json::Value;
use std::borrow::Cow;

/// The escape character.
const ESC: char = '\u{1}';

/// Whether `s` needs escaping.
#[inline]
fn needs(s: &str) -> bool {
    s.bytes().any(|b| b <= 1)
}

/// The form of `s` stored in PostgreSQL (borrowed when nothing changes).
#[must_use]
pub fn esc(s: &str) -> Cow<'_, str> {
    if !needs(s) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\u{1}0"),
            ESC => out.push_str("\u{1}1"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`esc`] into an owned `String`.
#[must_use]
pub fn esc_owned(s: &str) -> String {
    esc(s).into_owned()
}

/// [`esc`] of every string (for `UNNEST($1::text[])` and `= ANY($1)`).
#[must_use]
pub fn esc_all<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Vec<String> {
    items.into_iter().map(|s| esc_owned(s.as_ref())).collect()
}

/// The domain's string from its stored form (the inverse of [`esc`]).
///
/// An escape character followed by anything but `0` or `1` is kept as it is (rows written before
/// the escape existed).
#[must_use]
pub fn unesc(s: String) -> String {
    if !s.contains(ESC) {
        return s;
    }
    unesc_str(&s).into_owned()
}

/// As [`unesc`] on a borrowed string.
#[must_use]
pub fn unesc_str(s: &str) -> Cow<'_, str> {
    if !s.contains(ESC) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ESC {
            match chars.peek() {
                Some('0') => {
                    chars.next();
                    out.push('\0');
                }
                Some('1') => {
                    chars.next();
                    out.push(ESC);
                }
                _ => out.push(ESC),
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`unesc`] of every string.
#[must_use]
pub fn unesc_all(items: Vec<String>) -> Vec<String> {
    items.into_iter().map(unesc).collect()
}

fn value_needs(v: &Value) -> bool {
    match v {
        Value::String(s) => needs(s),
        Value::Array(a) => a.iter().any(value_needs),
        Value::Object(o) => o.iter().any(|(k, v)| needs(k) || value_needs(v)),
        _ => false,
    }
}

fn map_strings(v: Value, f: &impl Fn(String) -> String) -> Value {
    match v {
        Value::String(s) => Value::String(f(s)),
        Value::Array(a) => Value::Array(a.into_iter().map(|v| map_strings(v, f)).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (f(k), map_strings(v, f)))
                .collect(),
        ),
        other => other,
    }
}

/// A JSON value with every string (keys included) escaped, ready for a `jsonb` column.
#[must_use]
pub fn esc_value(v: &Value) -> Cow<'_, Value> {
    if !value_needs(v) {
        return Cow::Borrowed(v);
    }
    Cow::Owned(map_strings(v.clone(), &|s| esc_owned(&s)))
}

/// The inverse of [`esc_value`].
#[must_use]
pub fn unesc_value(v: Value) -> Value {
    map_strings(v, &unesc)
}

/// A document as JSON text for a `jsonb` (or `text`) column, every string escaped.
///
/// # Errors
/// The value does not serialise (a bug).
pub fn esc_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String, serde_json::Error> {
    let text = serde_json::to_string(v)?;
    // serde_json writes U+0000 and U+0001 as `\u0000` / `\u0001`: no such text, nothing to escape.
    if !text.contains("\\u000") {
        return Ok(text);
    }
    let value = serde_json::to_value(v)?;
    serde_json::to_string(&esc_value(&value))
}

/// A document read from a `jsonb` column, every string unescaped.
///
/// # Errors
/// The stored document does not match `T`.
pub fn unesc_json<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, serde_json::Error> {
    if !value_needs_unesc(&v) {
        return serde_json::from_value(v);
    }
    serde_json::from_value(unesc_value(v))
}

fn value_needs_unesc(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains(ESC),
        Value::Array(a) => a.iter().any(value_needs_unesc),
        Value::Object(o) => o
            .iter()
            .any(|(k, v)| k.contains(ESC) || value_needs_unesc(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_strings_are_not_copied() {
        assert!(matches!(esc("plain-1"), Cow::Borrowed("plain-1")));
        assert!(matches!(unesc_str("plain-1"), Cow::Borrowed(_)));
    }

    #[test]
    fn nul_and_the_escape_character_are_escaped() {
        assert_eq!(esc("nul\0item"), "nul\u{1}0item");
        assert_eq!(esc("\u{1}0"), "\u{1}10");
        assert_eq!(unesc("nul\u{1}0item".into()), "nul\0item");
        assert_eq!(unesc("\u{1}10".into()), "\u{1}0");
        assert!(!esc("a\0\0\u{1}").contains('\0'));
    }

    #[test]
    fn documents_escape_keys_and_values() {
        let v = serde_json::json!({"a\u{0}": ["x\u{0}", 1, {"k": "\u{1}"}]});
        let text = esc_json(&v).unwrap();
        assert!(!text.contains("\\u0000"), "{text}");
        let back: Value = unesc_json(serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back, v);
    }

    /// A random string over NUL, the escape character, `0`, `1` and any other character.
    fn random_string(rng: &mut impl rand::Rng) -> String {
        let n = rng.random_range(0..12);
        (0..n)
            .map(|_| match rng.random_range(0..6) {
                0 => '\0',
                1 => ESC,
                2 => '0',
                3 => '1',
                _ => loop {
                    if let Some(c) = char::from_u32(rng.random_range(0..0x11_0000)) {
                        break c;
                    }
                },
            })
            .collect()
    }

    #[test]
    fn escape_round_trips_is_injective_and_never_holds_nul() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        let mut seen = std::collections::HashMap::new();
        for _ in 0..20_000 {
            let s = random_string(&mut rng);
            let e = esc_owned(&s);
            assert!(!e.contains('\0'), "{s:?}");
            assert_eq!(unesc(e.clone()), s);
            if let Some(prev) = seen.insert(e, s.clone()) {
                assert_eq!(prev, s, "two strings share one stored form");
            }
        }
    }
}
