//! A fake SMTP server for the tests: speaks just enough SMTP for a real
//! client (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) and hands every
//! message it accepts to the test through a channel.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The envelope sender.
    pub from: String,
    /// The envelope recipients.
    pub to: Vec<String>,
    /// Headers and body, dot-unstuffed; the body still transfer-encoded.
    pub data: String,
}

impl Mail {
    /// The `Subject:` header.
    pub fn subject(&self) -> String {
        self.data
            .lines()
            .take_while(|line| !line.is_empty())
            .find_map(|line| line.strip_prefix("Subject: "))
            .unwrap_or_default()
            .to_owned()
    }

    /// The body, decoded from quoted-printable when it is that.
    pub fn body(&self) -> String {
        let (head, body) = self.data.split_once("\r\n\r\n").unwrap_or(("", &self.data));
        if head
            .to_ascii_lowercase()
            .contains("content-transfer-encoding: quoted-printable")
        {
            decode_quoted_printable(body)
        } else {
            body.to_owned()
        }
    }

    /// The token of the first `?token=` link in the body.
    pub fn token(&self) -> Option<String> {
        let body = self.body();
        let at = body.find("?token=")? + "?token=".len();
        let token: String = body[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        (!token.is_empty()).then_some(token)
    }
}

fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if let Some(byte) = joined
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A running fake server.
pub struct SmtpServer {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    mails: mpsc::UnboundedReceiver<Mail>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpServer {
    /// Starts on a free port.
    pub async fn start() -> SmtpServer {
        SmtpServer::start_on(0).await
    }

    /// Starts on `port` (0: any free one).
    pub async fn start_on(port: u16) -> SmtpServer {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the fake SMTP server");
        let port = listener.local_addr().expect("addr").port();
        let (tx, mails) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, tx.clone()));
            }
        });
        SmtpServer { port, mails, task }
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The next message, waiting at most `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Mail> {
        tokio::time::timeout(wait, self.mails.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next message, or a panic naming what was expected.
    pub async fn expect(&mut self, what: &str) -> Mail {
        self.next(Duration::from_secs(15))
            .await
            .unwrap_or_else(|| panic!("no mail arrived: {what}"))
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session(stream: TcpStream, mails: mpsc::UnboundedSender<Mail>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    if write
        .write_all(b"220 fake.test ESMTP ready\r\n")
        .await
        .is_err()
    {
        return;
    }
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        let answer: &[u8] = if upper.starts_with("EHLO") {
            b"250-fake.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        } else if upper.starts_with("HELO") {
            b"250 fake.test\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = address(&command["MAIL FROM:".len()..]);
            to.clear();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&command["RCPT TO:".len()..]));
            b"250 OK\r\n"
        } else if upper == "DATA" {
            if write
                .write_all(b"354 end with <CRLF>.<CRLF>\r\n")
                .await
                .is_err()
            {
                return;
            }
            let mut data = String::new();
            loop {
                line.clear();
                match lines.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                data.push_str(unstuffed);
            }
            let _ = mails.send(Mail {
                from: from.clone(),
                to: std::mem::take(&mut to),
                data,
            });
            b"250 OK queued\r\n"
        } else if upper == "RSET" || upper == "NOOP" {
            b"250 OK\r\n"
        } else if upper == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"502 command not implemented\r\n"
        };
        if write.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// `<a@b> SIZE=..` → `a@b`.
fn address(arg: &str) -> String {
    let arg = arg.trim();
    let inner = arg
        .strip_prefix('<')
        .and_then(|rest| rest.split_once('>'))
        .map(|(inner, _)| inner)
        .unwrap_or(arg);
    inner.to_owned()
}
