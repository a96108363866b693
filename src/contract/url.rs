//! URLs written into units (service endpoints, etcd endpoints): what the
//! runner's HTTP clients accept, and never a password.

use crate::diag::shown;

/// Whether `url` has credentials before its host (`http://user:pw@host`).
/// Such a URL is never echoed in a message: the part before `@` may be a
/// password.
pub fn has_userinfo(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.contains('@')
}

/// An `http://` or `https://` URL with a host and no credentials.
pub fn check_http(url: &str) -> Result<(), String> {
    if has_userinfo(url) {
        return Err(
            "credentials do not belong in a URL that is written into a unit; \
                    keep them in etcd (the step's secret fields)"
                .into(),
        );
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Ok(())
        }
        _ => Err(format!(
            "`{}` is not an http:// or https:// URL",
            shown(url)
        )),
    }
}

/// Whether a URL's host is this machine's loopback, which inside a
/// container on a bridge network is the container itself.
pub fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost") || host.starts_with("127.") || host == "::1"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_http("http://127.0.0.1:2379").is_ok());
        assert!(check_http("https://etcd.example.com").is_ok());
        assert!(check_http("ftp://x").is_err());
        assert!(check_http("http://").is_err());
        let err = check_http("http://u:hunter2@x/").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(is_loopback("http://localhost:2379"));
        assert!(is_loopback("http://[::1]:2379"));
        assert!(!is_loopback("http://172.17.0.1:2379"));
    }
}
