//! Secrets: a value that must never be shown ([`SecretString`]: RPC
//! passwords and AWS keys read from etcd at run time, the etcd password),
//! the rule for the etcd keys that hold them, and the decoding helper that
//! refuses a secret written in the spec without echoing it.
//!
//! `Debug` and `Display` are redacted, so a secret that ends up in a log
//! line or an error message by mistake shows as `<redacted>`; the value is
//! reachable only through [`SecretString::expose`], which is easy to audit.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    /// The value, for the one place that has to send it (an auth header, a
    /// request signer). Never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An etcd key: starts with `/`, no whitespace or control characters.
pub fn is_etcd_key(key: &str) -> bool {
    key.starts_with('/') && !key.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Visitor methods for every value type but strings and maps, each
/// answering `$refused()`: serde's default messages quote the value
/// (`invalid type: floating point `1234.5`), which in a secret field may
/// be the secret itself.
macro_rules! refuse_other_types {
    ($refused:ident) => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err($refused())
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err($refused())
        }
        fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<Self::Value, E> {
            Err($refused())
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err($refused())
        }
        fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<Self::Value, E> {
            Err($refused())
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err($refused())
        }
        fn visit_char<E: serde::de::Error>(self, _: char) -> Result<Self::Value, E> {
            Err($refused())
        }
        fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
            Err($refused())
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Err($refused())
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Err($refused())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err($refused())
        }
        fn visit_enum<A: serde::de::EnumAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err($refused())
        }
    };
}
pub(crate) use refuse_other_types;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let s = SecretString::new("hunter2");
        assert_eq!(
            format!("{s} {s:?} {:?}", Some(&s)),
            "<redacted> <redacted> Some(<redacted>)"
        );
        assert_eq!(s.expose(), "hunter2");
    }
}
