//! The `rpc` step: one JSON-RPC call (bitcoind `backupwallet` and friends).
//! Its fields, its rules, and the one parser of its URL, which the runner
//! uses to connect and the generator to refuse what the runner would.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{SecretKey, Text, Violation, secret::is_etcd_key, timespan};
use crate::diag::shown;

/// Used when the step gives no `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "S: Deserialize<'de>"))]
pub struct RpcCall<S = String> {
    pub url: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet: Option<S>,
    pub method: S,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<S>,
    /// The etcd key holding the password (the spec's `password`), read at
    /// run time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_etcd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_file: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<S>,
}

impl<S: Text> RpcCall<S> {
    pub fn check(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        if let Some(url) = self.url.known()
            && let Err(e) = RpcUrl::parse(url)
        {
            out.push(Violation::at("url", e.0));
        }
        if let Some(m) = self.method.known()
            && (m.is_empty()
                || !m
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)))
        {
            out.push(Violation::at(
                "method",
                format!("`{}` is not an RPC method name", shown(m)),
            ));
        }
        match (&self.password_etcd, &self.cookie_file, &self.user) {
            (Some(_), Some(_), _) => out.push(Violation::at(
                "cookie_file",
                "give either `password` or `cookie_file`, not both",
            )),
            (Some(_), None, None) => {
                out.push(Violation::at("password", "a `password` needs a `user`"))
            }
            (None, _, Some(_)) => out.push(Violation::at(
                "user",
                "a `user` needs a `password` (from etcd)",
            )),
            _ => {}
        }
        if let Some(key) = &self.password_etcd
            && !is_etcd_key(key)
        {
            out.push(Violation::at(
                "password",
                format!("`{}` is not an etcd key; keys start with `/`", shown(key)),
            ));
        }
        if let Some(c) = self.cookie_file.as_ref().and_then(Text::known)
            && !c.starts_with('/')
        {
            out.push(Violation::at(
                "cookie_file",
                "the cookie file must be an absolute path inside the container",
            ));
        }
        if let Some(t) = self.timeout.as_ref().and_then(Text::known)
            && let Err(e) = timespan::parse(t)
        {
            out.push(Violation::at("timeout", e));
        }
        out
    }

    pub fn secrets(&self) -> Vec<SecretKey> {
        self.password_etcd
            .iter()
            .map(|key| SecretKey {
                key: key.clone(),
                field: crate::diag::KeyPath::root().key("password"),
            })
            .collect()
    }
}

impl RpcCall<String> {
    /// The call's time limit: the step's `timeout` (`None` for
    /// `infinity`), else [`DEFAULT_TIMEOUT`].
    pub fn time_limit(&self) -> Result<Option<Duration>, String> {
        match &self.timeout {
            Some(t) => timespan::parse(t),
            None => Ok(Some(DEFAULT_TIMEOUT)),
        }
    }
}

impl RpcCall<super::Maybe> {
    pub fn into_known(self) -> Option<RpcCall> {
        let opt = |v: Option<super::Maybe>| match v {
            None => Some(None),
            Some(m) => m.into_known().map(Some),
        };
        Some(RpcCall {
            url: self.url.into_known()?,
            wallet: opt(self.wallet)?,
            method: self.method.into_known()?,
            params: self.params,
            user: opt(self.user)?,
            password_etcd: self.password_etcd,
            cookie_file: opt(self.cookie_file)?,
            timeout: opt(self.timeout)?,
        })
    }
}

/// Why a URL is not one the runner can call. Never holds credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(pub String);

/// Where a call goes, from an `http://host[:port][/path]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcUrl {
    /// As written, without brackets for an IPv6 literal.
    pub host: String,
    pub port: u16,
    /// Origin-form path, starting with `/`, without a trailing `/` unless it
    /// is only `/`.
    pub path: String,
}

impl RpcUrl {
    pub fn parse(url: &str) -> Result<RpcUrl, UrlError> {
        let invalid = |reason: &str| {
            UrlError(format!(
                "`{}` is not a usable RPC URL: {reason}",
                shown(url)
            ))
        };
        let usage = "expected http://HOST:PORT/";
        if super::url::has_userinfo(url) {
            // Never echo it: the part before `@` may be a password.
            return Err(UrlError(
                "credentials do not belong in the URL (it is not shown here); use the step's \
                 `user` and `password` (from etcd) or `cookie_file`"
                    .into(),
            ));
        }
        let scheme_end = url.find("://").ok_or_else(|| invalid(usage))?;
        let scheme = url[..scheme_end].to_ascii_lowercase();
        if scheme == "https" {
            return Err(UrlError(format!(
                "`{}` uses https, but bitcoind's RPC server has no TLS: use http:// through an \
                 SSH or stunnel tunnel, or over a private network",
                shown(url)
            )));
        }
        if scheme != "http" {
            return Err(invalid(usage));
        }
        let rest = &url[scheme_end + 3..];
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if path.contains(['?', '#']) || authority.contains(['?', '#']) {
            return Err(invalid("JSON-RPC URLs take no query or fragment"));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it contains whitespace or control characters"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| invalid("unclosed `[` in the host"))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(
                        p.strip_prefix(':')
                            .ok_or_else(|| invalid("expected `:PORT` after `]`"))?,
                    ),
                ),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(invalid("the host is missing"));
        }
        let port = match port {
            // URL semantics: http without a port is 80, not bitcoind's 8332.
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return Err(invalid("the port is not a number from 1 to 65535")),
            },
        };
        let trimmed = path.trim_end_matches('/');
        let path = if trimmed.is_empty() { "/" } else { trimmed };
        Ok(RpcUrl {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// `host:port` for messages and the Host header.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The request path: the URL's, plus `/wallet/NAME` for a wallet.
    pub fn path_for(&self, wallet: Option<&str>) -> String {
        let Some(wallet) = wallet else {
            return self.path.clone();
        };
        let mut path = self.path.trim_end_matches('/').to_owned();
        path.push_str("/wallet/");
        path.push_str(&percent_encode(wallet));
        path
    }
}

/// Every byte but RFC 3986's unreserved characters becomes `%XX`
/// (bitcoind URL-decodes the wallet name from the path).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(url: &str) -> RpcCall {
        RpcCall {
            url: url.into(),
            wallet: None,
            method: "backupwallet".into(),
            params: vec![],
            user: Some("u".into()),
            password_etcd: Some("/p".into()),
            cookie_file: None,
            timeout: None,
        }
    }

    #[test]
    fn urls() {
        let t = |url: &str| {
            RpcUrl::parse(url).map(|t| (t.host.clone(), t.port, t.path.clone(), t.addr()))
        };
        let ok = |host: &str, port, path: &str, addr: &str| {
            (host.to_owned(), port, path.to_owned(), addr.to_owned())
        };
        assert_eq!(
            t("http://bitcoind:8332/").unwrap(),
            ok("bitcoind", 8332, "/", "bitcoind:8332")
        );
        assert_eq!(
            t("http://bitcoind:8332").unwrap(),
            ok("bitcoind", 8332, "/", "bitcoind:8332")
        );
        assert_eq!(
            t("HTTP://bitcoind").unwrap(),
            ok("bitcoind", 80, "/", "bitcoind:80")
        );
        assert_eq!(
            t("http://[::1]:8332/rpc/").unwrap(),
            ok("::1", 8332, "/rpc", "[::1]:8332")
        );
        assert_eq!(t("http://[::1]").unwrap(), ok("::1", 80, "/", "[::1]:80"));
        for bad in [
            "bitcoind:8332",
            "ftp://bitcoind/",
            "http://:8332/",
            "http://bitcoind:0/",
            "http://bitcoind:99999/",
            "http://bitcoind:port/",
            "http://[::1/",
            "http://bitcoind:8332/?x=1",
            "http://bitcoind:8332/#x",
            "http://bit coind/",
            "https://bitcoind:8332/",
            "http://rpcuser:hunter2@bitcoind:8332/",
        ] {
            assert!(RpcUrl::parse(bad).is_err(), "{bad}");
        }
        let target = RpcUrl::parse("http://h:1/base/").unwrap();
        assert_eq!(target.path_for(None), "/base");
        assert_eq!(target.path_for(Some("hot")), "/base/wallet/hot");
        let root = RpcUrl::parse("http://h:1/").unwrap();
        assert_eq!(root.path_for(Some("")), "/wallet/");
        assert_eq!(root.path_for(Some("a b/ü~%")), "/wallet/a%20b%2F%C3%BC~%25");
    }

    #[test]
    fn credentials_and_https_are_refused_without_echo() {
        for (url, says) in [
            (
                "http://rpcuser:hunter2@bitcoind:8332/",
                "credentials do not belong",
            ),
            (
                "https://rpcuser:hunter2@bitcoind:8332/",
                "credentials do not belong",
            ),
            ("https://bitcoind:8332/", "no TLS"),
        ] {
            let v = call(url).check();
            assert_eq!(v.len(), 1, "{url}: {v:?}");
            assert_eq!(v[0].field.to_string(), "url");
            assert!(v[0].message.contains(says), "{}", v[0].message);
            assert!(!v[0].message.contains("hunter2"), "{}", v[0].message);
        }
        assert!(call("http://bitcoind:8332/").check().is_empty());
    }

    #[test]
    fn auth_combinations() {
        let mut c = call("http://b:1/");
        c.user = None;
        assert_eq!(c.check()[0].message, "a `password` needs a `user`");
        let mut c = call("http://b:1/");
        c.cookie_file = Some("/c".into());
        assert_eq!(
            c.check()[0].message,
            "give either `password` or `cookie_file`, not both"
        );
        let mut c = call("http://b:1/");
        c.password_etcd = None;
        assert_eq!(
            c.check()[0].message,
            "a `user` needs a `password` (from etcd)"
        );
        let mut c = call("http://b:1/");
        c.timeout = Some("soon".into());
        assert_eq!(c.check()[0].field.to_string(), "timeout");
    }
}
