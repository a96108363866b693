//! A small SMTP client (RFC 5321): EHLO, optional STARTTLS (RFC 3207) or
//! TLS from the first byte (`smtps://`, RFC 8314), optional AUTH PLAIN
//! (RFC 4616), MAIL, RCPT, DATA with dot-stuffing, QUIT. Enough to hand one
//! notification to a relay; `lettre` would do it too, with far more code
//! than this needs.
//!
//! Every command is built from checked addresses ([`check_address`]: no
//! CR, LF or `<>`), so no value can start a second command. The password
//! is only ever sent over TLS (the contract refuses anything else) and
//! never appears in an error: replies to AUTH are reported by their code.

use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

use super::net::Conn;
use crate::contract::notify::{Mail, SmtpUrl, check_address};
use crate::contract::secret::SecretString;
use crate::diag::flat;

/// How long one whole mail session may take.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// A reply longer than this is not an SMTP server's.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// A server's reply: its code and its text lines.
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        flat(&self.lines.join(" "), 200)
    }
}

struct Session {
    conn: BufReader<Conn>,
}

/// Sends `message` (headers and body, LF or CRLF line ends) to `mail.to`.
pub async fn send(
    mail: &Mail,
    from: &str,
    helo: &str,
    password: Option<&SecretString>,
    message: &str,
) -> Result<(), String> {
    let server = SmtpUrl::parse(&mail.smtp)?;
    for a in mail.to.iter().map(String::as_str).chain([from]) {
        check_address(a)?;
    }
    let addr = server.addr();
    tokio::time::timeout(
        SESSION_TIMEOUT,
        session(&server, mail, from, helo, password, message),
    )
    .await
    .unwrap_or_else(|_| Err(format!("no answer within {}s", SESSION_TIMEOUT.as_secs())))
    .map_err(|e| format!("mail server {addr}: {e}"))
}

async fn session(
    server: &SmtpUrl,
    mail: &Mail,
    from: &str,
    helo: &str,
    password: Option<&SecretString>,
    message: &str,
) -> Result<(), String> {
    let tcp = Conn::connect(&server.host, server.port).await?;
    let conn = if server.tls {
        Conn::tls(tcp, &server.host).await?
    } else {
        Conn::Plain(tcp)
    };
    let mut s = Session {
        conn: BufReader::new(conn),
    };
    s.expect(&[220], "greeting").await?;
    let mut extensions = s.ehlo(helo).await?;
    if mail.starttls {
        if !has(&extensions, "STARTTLS") {
            return Err(
                "does not offer STARTTLS, which `starttls: true` requires; nothing sent".into(),
            );
        }
        s.command("STARTTLS", &[220]).await?;
        // Anything the server sent after its answer would be read as if it
        // came over TLS (the STARTTLS injection of CVE-2011-0411).
        if !s.conn.buffer().is_empty() {
            return Err("sent data after its STARTTLS answer; refusing to go on".into());
        }
        let Conn::Plain(tcp) = s.conn.into_inner() else {
            return Err("STARTTLS on a TLS connection".into());
        };
        s.conn = BufReader::new(Conn::tls(tcp, &server.host).await?);
        // RFC 3207: forget what was learnt before TLS, ask again.
        extensions = s.ehlo(helo).await?;
    }
    if let (Some(user), Some(password)) = (&mail.user, password) {
        if !extensions.iter().any(|e| {
            e.to_ascii_uppercase().starts_with("AUTH")
                && e.to_ascii_uppercase()
                    .split_whitespace()
                    .any(|m| m == "PLAIN")
        }) {
            return Err("does not offer AUTH PLAIN; nothing sent".into());
        }
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{user}\0{}", password.expose()));
        // The command holds the password: on failure only the reply shows.
        s.write(&format!("AUTH PLAIN {token}\r\n")).await?;
        let reply = s.reply().await?;
        if reply.code != 235 {
            return Err(format!(
                "refused the login of user `{}`: {} {}",
                flat(user, 60),
                reply.code,
                reply.text()
            ));
        }
    }
    s.command(&format!("MAIL FROM:<{from}>"), &[250]).await?;
    let mut accepted = 0;
    let mut refused = Vec::new();
    for to in &mail.to {
        s.write(&format!("RCPT TO:<{to}>\r\n")).await?;
        let reply = s.reply().await?;
        if matches!(reply.code, 250 | 251) {
            accepted += 1;
        } else {
            refused.push(format!("<{to}>: {} {}", reply.code, reply.text()));
        }
    }
    if accepted == 0 {
        return Err(format!("refused every recipient: {}", refused.join("; ")));
    }
    s.command("DATA", &[354]).await?;
    s.write(&dot_stuffed(message)).await?;
    s.expect(&[250], "the message").await?;
    // The mail is accepted; a failed goodbye changes nothing.
    let _ = s.command("QUIT", &[221]).await;
    if !refused.is_empty() {
        // Some recipients got it; say who did not.
        return Err(format!(
            "delivered, but refused some recipients: {}",
            refused.join("; ")
        ));
    }
    Ok(())
}

fn has(extensions: &[String], name: &str) -> bool {
    extensions.iter().any(|e| {
        e.split_whitespace()
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case(name))
    })
}

/// The DATA payload: CRLF line ends, a `.` doubled at the start of a line
/// (RFC 5321 4.5.2), and the final `.` line.
pub fn dot_stuffed(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 64);
    for line in message.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    // `split` yields an empty last piece after a final line end.
    if message.ends_with('\n') {
        out.truncate(out.len() - 2);
    }
    out.push_str(".\r\n");
    out
}

impl Session {
    async fn write(&mut self, text: &str) -> Result<(), String> {
        let conn = self.conn.get_mut();
        conn.write_all(text.as_bytes())
            .await
            .map_err(|e| format!("connection lost: {e}"))?;
        conn.flush()
            .await
            .map_err(|e| format!("connection lost: {e}"))
    }

    /// One reply, its lines `CODE-text` up to the last `CODE text`.
    async fn reply(&mut self) -> Result<Reply, String> {
        let mut lines = Vec::new();
        let mut total = 0;
        loop {
            let mut raw = Vec::new();
            let n = (&mut self.conn)
                .take((MAX_REPLY_BYTES - total) as u64 + 1)
                .read_until(b'\n', &mut raw)
                .await
                .map_err(|e| format!("connection lost: {e}"))?;
            if n == 0 {
                return Err("closed the connection".into());
            }
            total += n;
            if total > MAX_REPLY_BYTES {
                return Err("sent an overlong reply".into());
            }
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\r', '\n']);
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (200..600).contains(c))
                .ok_or_else(|| format!("is not an SMTP server (it said `{}`)", flat(line, 80)))?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_owned());
            if !more {
                return Ok(Reply { code, lines });
            }
        }
    }

    async fn expect(&mut self, codes: &[u16], what: &str) -> Result<Reply, String> {
        let reply = self.reply().await?;
        if codes.contains(&reply.code) {
            Ok(reply)
        } else {
            Err(format!("refused {what}: {} {}", reply.code, reply.text()))
        }
    }

    async fn command(&mut self, command: &str, codes: &[u16]) -> Result<Reply, String> {
        self.write(&format!("{command}\r\n")).await?;
        self.expect(codes, &format!("`{command}`")).await
    }

    /// EHLO, or HELO for a server that knows no extensions; the
    /// extensions the server offers.
    async fn ehlo(&mut self, helo: &str) -> Result<Vec<String>, String> {
        self.write(&format!("EHLO {helo}\r\n")).await?;
        let reply = self.reply().await?;
        if reply.code == 250 {
            return Ok(reply.lines.into_iter().skip(1).collect());
        }
        self.command(&format!("HELO {helo}"), &[250]).await?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_are_stuffed_and_lines_end_in_crlf() {
        assert_eq!(dot_stuffed("a\n.b\n..\nc"), "a\r\n..b\r\n...\r\nc\r\n.\r\n");
        assert_eq!(dot_stuffed("a\r\n.\r\n"), "a\r\n..\r\n.\r\n");
        assert_eq!(dot_stuffed(""), "\r\n.\r\n");
    }
}
