//! Secrets (the API token, the etcd password): a newtype that cannot be printed by accident.

use std::fmt;

/// A secret value. It has no `Display`, and its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    /// The secret value, for building an `Authorization` header or a login request only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let t = Secret::new("secret-value".into());
        assert!(!format!("{t:?}").contains("secret"));
    }
}
