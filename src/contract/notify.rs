//! Failure notification: what `unitgen-runner notify` is asked to do, as
//! one JSON object on its command line (`--notify JSON`), like a step. Its
//! fields, its rules (one [`Notifiers::check`], run by the generator before
//! it writes a unit and by the runner before it sends anything), the
//! events it answers, and the parsers of its URLs and mail addresses.
//!
//! Three notifiers, as people use them today:
//! - `mail`: the cron `MAILTO=` of the seed, over SMTP (`smtp://`, with
//!   optional STARTTLS, or `smtps://`), optional AUTH PLAIN with the
//!   password from etcd;
//! - `webhook`: a JSON POST (Slack-compatible: it has a `text` field);
//! - `healthchecks`: healthchecks.io's Pinging API (`URL/start` when a run
//!   starts, `URL` on success, `URL/<exit status>` or `URL/fail` on
//!   failure: https://healthchecks.io/docs/http_api/ and
//!   https://healthchecks.io/docs/signaling_failures/).
//!
//! Secrets are only etcd keys here: a webhook or ping URL that carries a
//! token (`url_secret`) and the SMTP password.

use serde::{Deserialize, Serialize};

use super::{SecretKey, Text, Violation, secret::is_etcd_key};
use crate::diag::{KeyPath, shown};

// `unitgen-runner notify` flags, without their leading `--` (the job's
// etcd flags are those of `invocation.rs`).
pub const SUBCOMMAND: &str = "notify";
pub const EVENT: &str = "event";
pub const UNIT: &str = "unit";
pub const HOST: &str = "host";
pub const NOTIFY: &str = "notify";

/// How many of the failed unit's last journal lines a report carries.
pub const LOG_LINES: usize = 30;

/// When the runner is asked to notify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The job's run starts (`ExecStartPre=` of the job's unit): a
    /// healthchecks `/start` ping.
    Start,
    /// The job's run ended, however (`ExecStopPost=`, with systemd's
    /// `$SERVICE_RESULT`, `$EXIT_CODE`, `$EXIT_STATUS`): a healthchecks
    /// success or failure ping.
    Finish,
    /// The job's unit failed (the notify unit, started by `OnFailure=`):
    /// mail and webhook, with the unit's result and last log lines on stdin.
    Failure,
}

impl Event {
    pub const ALL: [Event; 3] = [Event::Start, Event::Finish, Event::Failure];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Finish => "finish",
            Event::Failure => "failure",
        }
    }

    pub fn parse(text: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

/// The notifiers of one job (or the subset one event uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "S: Deserialize<'de>"))]
pub struct Notifiers<S = String> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<Mail<S>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Endpoint<S>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthchecks: Option<Endpoint<S>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "S: Deserialize<'de>"))]
pub struct Mail<S = String> {
    pub to: Vec<S>,
    /// Default: `unitgen@<the host's name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<S>,
    /// `smtp://HOST[:PORT]` (port 25) or `smtps://HOST[:PORT]` (TLS from
    /// the first byte, port 465).
    pub smtp: S,
    /// Upgrade an `smtp://` connection with STARTTLS, and refuse to send
    /// if the server does not offer it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub starttls: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<S>,
    /// The etcd key holding the SMTP password (the spec's `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_etcd: Option<String>,
}

/// An HTTP endpoint: its URL in the unit, or the etcd key of a URL that
/// holds a token (the spec's `url_secret`), read at run time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "S: Deserialize<'de>"))]
pub struct Endpoint<S = String> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_etcd: Option<String>,
}

impl<S: Text> Notifiers<S> {
    /// Every rule broken, with fields named as users write them under
    /// `notify` (`mail.to[0]`, `webhook.url_secret`).
    pub fn check(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        if self.mail.is_none() && self.webhook.is_none() && self.healthchecks.is_none() {
            out.push(Violation::at_key(
                KeyPath::root(),
                "no notifier: give `mail`, `webhook` or `healthchecks`",
            ));
        }
        if let Some(mail) = &self.mail {
            out.extend(mail.check());
        }
        for (name, endpoint) in [
            ("webhook", &self.webhook),
            ("healthchecks", &self.healthchecks),
        ] {
            if let Some(e) = endpoint {
                out.extend(e.check(name, name == "healthchecks"));
            }
        }
        out
    }

    pub fn secrets(&self) -> Vec<SecretKey> {
        let root = KeyPath::root();
        let mut out = Vec::new();
        if let Some(key) = self.mail.as_ref().and_then(|m| m.password_etcd.clone()) {
            out.push(SecretKey {
                key,
                field: root.key("mail").key("password"),
            });
        }
        for (name, endpoint) in [
            ("webhook", &self.webhook),
            ("healthchecks", &self.healthchecks),
        ] {
            if let Some(key) = endpoint.as_ref().and_then(|e| e.url_etcd.clone()) {
                out.push(SecretKey {
                    key,
                    field: root.key(name).key("url_secret"),
                });
            }
        }
        out
    }

    /// The notifiers `event` uses: healthchecks for a run's start and
    /// finish, mail and webhook for a failure.
    pub fn for_event(&self, event: Event) -> Notifiers<S>
    where
        S: Clone,
    {
        match event {
            Event::Start | Event::Finish => Notifiers {
                healthchecks: self.healthchecks.clone(),
                ..Notifiers::default()
            },
            Event::Failure => Notifiers {
                mail: self.mail.clone(),
                webhook: self.webhook.clone(),
                healthchecks: None,
            },
        }
    }

    pub fn is_empty(&self) -> bool {
        self.mail.is_none() && self.webhook.is_none() && self.healthchecks.is_none()
    }
}

impl<S> Default for Notifiers<S> {
    fn default() -> Self {
        Notifiers {
            mail: None,
            webhook: None,
            healthchecks: None,
        }
    }
}

impl<S: Text> Mail<S> {
    fn check(&self) -> Vec<Violation> {
        let mail = KeyPath::root().key("mail");
        let mut out = Vec::new();
        if self.to.is_empty() {
            out.push(Violation::at_path(
                mail.key("to"),
                "no recipient: give at least one address, e.g. `[ops@example.com]`",
            ));
        }
        for (i, to) in self.to.iter().enumerate() {
            if let Some(a) = to.known()
                && let Err(e) = check_address(a)
            {
                out.push(Violation::at_path(mail.key("to").index(i), e));
            }
        }
        if let Some(a) = self.from.as_ref().and_then(Text::known)
            && let Err(e) = check_address(a)
        {
            out.push(Violation::at_path(mail.key("from"), e));
        }
        let server = self.smtp.known().map(SmtpUrl::parse);
        if let Some(Err(e)) = &server {
            out.push(Violation::at_path(mail.key("smtp"), e.clone()));
        }
        let implicit_tls = matches!(&server, Some(Ok(s)) if s.tls);
        if self.starttls && implicit_tls {
            out.push(Violation::at_path(
                mail.key("starttls"),
                "`smtps://` is TLS from the first byte; `starttls` is for `smtp://` only",
            ));
        }
        match (&self.user, &self.password_etcd) {
            (Some(_), None) => out.push(Violation::at_path(
                mail.key("user"),
                "a `user` needs a `password` (from etcd)",
            )),
            (None, Some(_)) => out.push(Violation::at_path(
                mail.key("password"),
                "a `password` needs a `user`",
            )),
            _ => {}
        }
        if let Some(u) = self.user.as_ref().and_then(Text::known)
            && (u.is_empty() || u.chars().any(char::is_control))
        {
            out.push(Violation::at_path(
                mail.key("user"),
                "the SMTP user is empty or holds a control character",
            ));
        }
        if let Some(key) = &self.password_etcd {
            if !is_etcd_key(key) {
                out.push(Violation::at_path(
                    mail.key("password"),
                    format!("`{}` is not an etcd key; keys start with `/`", shown(key)),
                ));
            }
            // Known only when the URL is: an unknown one is judged later.
            if matches!(&server, Some(Ok(s)) if !s.tls) && !self.starttls {
                out.push(Violation::at_path(
                    mail.key("password"),
                    "the password would cross the network in clear text; use `smtps://` or \
                     `starttls: true`",
                ));
            }
        }
        out
    }
}

impl<S: Text> Endpoint<S> {
    fn check(&self, name: &str, healthchecks: bool) -> Vec<Violation> {
        let at = KeyPath::root().key(name);
        let mut out = Vec::new();
        match (&self.url, &self.url_etcd) {
            (Some(_), Some(_)) => out.push(Violation::at_key(
                at.key("url_secret"),
                "give either `url` or `url_secret`, not both",
            )),
            (None, None) => out.push(Violation::at_key(
                at.clone(),
                "no URL: give `url` or `url_secret: { etcd: KEY }`",
            )),
            _ => {}
        }
        if let Some(url) = self.url.as_ref().and_then(Text::known)
            && let Err(e) = HttpUrl::parse(url, healthchecks)
        {
            out.push(Violation::at_path(at.key("url"), e));
        }
        if let Some(key) = &self.url_etcd
            && !is_etcd_key(key)
        {
            out.push(Violation::at_path(
                at.key("url_secret"),
                format!("`{}` is not an etcd key; keys start with `/`", shown(key)),
            ));
        }
        out
    }
}

impl Notifiers<super::Maybe> {
    /// The notifiers with every value known, ready for the unit.
    pub fn into_known(self) -> Option<Notifiers> {
        let endpoint = |e: Option<Endpoint<super::Maybe>>| -> Option<Option<Endpoint>> {
            match e {
                None => Some(None),
                Some(e) => Some(Some(Endpoint {
                    url: opt(e.url)?,
                    url_etcd: e.url_etcd,
                })),
            }
        };
        let mail = match self.mail {
            None => None,
            Some(m) => Some(Mail {
                to: m
                    .to
                    .into_iter()
                    .map(super::Maybe::into_known)
                    .collect::<Option<_>>()?,
                from: opt(m.from)?,
                smtp: m.smtp.into_known()?,
                starttls: m.starttls,
                user: opt(m.user)?,
                password_etcd: m.password_etcd,
            }),
        };
        Some(Notifiers {
            mail,
            webhook: endpoint(self.webhook)?,
            healthchecks: endpoint(self.healthchecks)?,
        })
    }
}

fn opt(v: Option<super::Maybe>) -> Option<Option<String>> {
    match v {
        None => Some(None),
        Some(m) => m.into_known().map(Some),
    }
}

/// A whole `unitgen-runner notify` command line but the host's name
/// (which the generator passes as systemd's `%H` specifier, resolved on
/// the host: inside a container the host name is the container's).
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyInvocation {
    pub event: Event,
    pub job: String,
    /// The job's unit, e.g. `backup.service`.
    pub unit: String,
    /// Present when a notifier reads a secret.
    pub etcd: Option<super::invocation::RunnerEtcd>,
    pub notifiers: Notifiers,
}

impl NotifyInvocation {
    /// The arguments after the runner's path, grouped as
    /// [`Invocation::arg_groups`](super::invocation::Invocation::arg_groups)
    /// groups them.
    pub fn arg_groups(&self) -> Vec<Vec<String>> {
        let flag = |f: &str| format!("--{f}");
        let mut groups = vec![vec![
            SUBCOMMAND.to_owned(),
            flag(EVENT),
            self.event.as_str().to_owned(),
            flag(super::invocation::JOB),
            self.job.clone(),
            flag(UNIT),
            self.unit.clone(),
        ]];
        if let Some(etcd) = &self.etcd {
            for (f, v) in etcd.args() {
                groups.push(vec![flag(f), v]);
            }
        }
        let json = serde_json::to_string(&self.notifiers).expect("notifiers serialize");
        groups.push(vec![flag(NOTIFY), json]);
        groups
    }
}

/// A mail address as unitgen writes it into `MAIL FROM:<..>`, `RCPT
/// TO:<..>` and the `From:`/`To:` headers: `local@domain`, printable ASCII
/// without the characters that would need quoting (RFC 5321's dot-atom),
/// so that no value can end a header or an SMTP command early.
pub fn check_address(address: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "`{}` is not a mail address such as `ops@example.com`",
            shown(address)
        )
    };
    let (local, domain) = address.rsplit_once('@').ok_or_else(bad)?;
    let atom = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && !s.starts_with('.')
            && !s.ends_with('.')
            && !s.contains("..")
            && s.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || b".!#$%&'*+/=?^_`{|}~-".contains(&b)
                    || extra.contains(&b)
            })
    };
    let domain_ok = !domain.is_empty()
        && domain
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if address.len() > 254
        || local.len() > 64
        || !atom(local, b"")
        || !domain_ok
        || local.starts_with('-')
    {
        return Err(bad());
    }
    Ok(())
}

/// An SMTP server: `smtp://HOST[:PORT]` or `smtps://HOST[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    pub host: String,
    pub port: u16,
    /// `smtps://`: TLS from the first byte.
    pub tls: bool,
}

impl SmtpUrl {
    pub fn parse(url: &str) -> Result<SmtpUrl, String> {
        if super::url::has_userinfo(url) {
            return Err(
                "credentials do not belong in the URL (it is not shown here); use `user` and \
                 `password: { etcd: KEY }`"
                    .into(),
            );
        }
        let usage = || {
            format!(
                "`{}` is not an SMTP server; write `smtp://HOST[:PORT]` (STARTTLS with \
                 `starttls: true`) or `smtps://HOST[:PORT]`",
                shown(url)
            )
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(usage)?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "smtp" => false,
            "smtps" => true,
            _ => return Err(usage()),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = split_host_port(authority).ok_or_else(usage)?;
        let port = match port {
            None if tls => 465,
            None => 25,
            Some(p) => p,
        };
        Ok(SmtpUrl { host, port, tls })
    }

    /// `host:port`, for messages and connecting.
    pub fn addr(&self) -> String {
        addr(&self.host, self.port)
    }
}

/// An `http://` or `https://` URL the runner can POST to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Origin-form: path and query, starting with `/`.
    pub target: String,
}

impl HttpUrl {
    /// `ping` (healthchecks): suffixes are appended to the path, so the
    /// URL may have no query or fragment.
    pub fn parse(url: &str, ping: bool) -> Result<HttpUrl, String> {
        super::url::check_http(url)?;
        let (scheme, rest) = url.split_once("://").ok_or("not an http(s) URL")?;
        let tls = scheme.eq_ignore_ascii_case("https");
        let (authority, target) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let target = target.split('#').next().unwrap_or("");
        if ping && target.contains('?') {
            return Err(format!(
                "`{}` has a query; a ping URL gets `/start` or `/fail` appended, so give it \
                 without one",
                shown(url)
            ));
        }
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| format!("`{}` has no usable host and port", shown(url)))?;
        let target = match target {
            "" => "/".to_owned(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_owned(),
        };
        if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!(
                "`{}` holds spaces or control characters",
                shown(url)
            ));
        }
        Ok(HttpUrl {
            tls,
            host,
            port: port.unwrap_or(if tls { 443 } else { 80 }),
            target,
        })
    }

    /// `scheme://host:port`, the only part of a URL shown in messages: the
    /// path of a webhook or a ping URL is often its secret.
    pub fn origin(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            addr(&self.host, self.port)
        )
    }

    /// The target with `suffix` (`start`, `fail`, `1`) appended as a path
    /// segment, as healthchecks.io's Pinging API defines.
    pub fn with_suffix(&self, suffix: &str) -> String {
        format!("{}/{suffix}", self.target.trim_end_matches('/'))
    }

    pub fn addr(&self) -> String {
        addr(&self.host, self.port)
    }
}

fn addr(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `host[:port]` or `[v6][:port]`; `None` when malformed.
fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
    if !host_ok {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p != 0 => Some(p),
            _ => return None,
        },
    };
    Some((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(to: &[&str], smtp: &str) -> Notifiers {
        Notifiers {
            mail: Some(Mail {
                to: to.iter().map(|s| s.to_string()).collect(),
                from: None,
                smtp: smtp.into(),
                starttls: false,
                user: None,
                password_etcd: None,
            }),
            ..Notifiers::default()
        }
    }

    fn messages(n: &Notifiers) -> Vec<String> {
        n.check().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn addresses() {
        for ok in ["me@me.biz", "a.b+c@x-y.example", "o'brien@example.com"] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        for bad in [
            "me",
            "@x",
            "me@",
            "a b@x",
            "a@b c",
            "<a@b>",
            "a@b\r\nBcc: x@y",
            "a\"b@x",
            "-f@x",
            "a..b@x",
            "a@b..c",
            "a@b,c@d",
            "ü@x",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn smtp_urls() {
        assert_eq!(
            SmtpUrl::parse("smtp://mail.example.com").unwrap(),
            SmtpUrl {
                host: "mail.example.com".into(),
                port: 25,
                tls: false
            }
        );
        assert_eq!(
            SmtpUrl::parse("smtps://[::1]/").unwrap().addr(),
            "[::1]:465"
        );
        assert_eq!(SmtpUrl::parse("SMTP://h:2525").unwrap().port, 2525);
        for bad in [
            "mail.example.com",
            "http://h",
            "smtp://",
            "smtp://h:0",
            "smtp://h/path",
            "smtp://h h",
        ] {
            assert!(SmtpUrl::parse(bad).is_err(), "{bad}");
        }
        let e = SmtpUrl::parse("smtp://u:hunter2@h").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn http_urls() {
        let u = HttpUrl::parse("https://hc-ping.com/0b3e-9a/", true).unwrap();
        assert_eq!(u.origin(), "https://hc-ping.com:443");
        assert_eq!(u.with_suffix("start"), "/0b3e-9a/start");
        let u = HttpUrl::parse("http://127.0.0.1:8080?x=1", false).unwrap();
        assert_eq!((u.port, u.target.as_str()), (8080, "/?x=1"));
        assert!(HttpUrl::parse("https://hc-ping.com/x?create=1", true).is_err());
        assert!(HttpUrl::parse("ftp://x/", false).is_err());
        let e = HttpUrl::parse("https://u:tok@h/", false).unwrap_err();
        assert!(!e.contains("tok"), "{e}");
    }

    #[test]
    fn rules() {
        assert_eq!(
            messages(&Notifiers::default()),
            ["no notifier: give `mail`, `webhook` or `healthchecks`"]
        );
        assert_eq!(
            messages(&mail(&[], "smtp://h")),
            ["`mail.to`: no recipient: give at least one address, e.g. `[ops@example.com]`"]
        );
        let mut n = mail(&["a@b"], "smtp://h");
        n.mail.as_mut().unwrap().password_etcd = Some("/smtp/pw".into());
        n.mail.as_mut().unwrap().user = Some("u".into());
        assert_eq!(
            messages(&n),
            [
                "`mail.password`: the password would cross the network in clear text; use `smtps://` or `starttls: true`"
            ]
        );
        n.mail.as_mut().unwrap().starttls = true;
        assert!(n.check().is_empty());
        assert_eq!(n.secrets()[0].field.to_string(), "mail.password");
        let both = Notifiers::<String> {
            webhook: Some(Endpoint {
                url: Some("https://h/".into()),
                url_etcd: Some("/k".into()),
            }),
            ..Notifiers::default()
        };
        assert_eq!(
            messages(&both),
            ["`webhook.url_secret`: give either `url` or `url_secret`, not both"]
        );
    }

    #[test]
    fn events_pick_their_notifiers() {
        let mut n = mail(&["a@b"], "smtp://h");
        n.healthchecks = Some(Endpoint {
            url: Some("https://hc/x".into()),
            url_etcd: None,
        });
        assert!(n.for_event(Event::Start).mail.is_none());
        assert!(n.for_event(Event::Finish).healthchecks.is_some());
        assert!(n.for_event(Event::Failure).healthchecks.is_none());
        assert!(n.for_event(Event::Failure).mail.is_some());
        assert_eq!(Event::parse("finish"), Some(Event::Finish));
    }
}
