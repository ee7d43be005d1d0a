//! An HTTP proxy in front of the test S3 server that sees every request mongolake's S3 client sends: it can
//! answer or drop one instead of forwarding it (`tests/upload.rs` injects faults), and it records each request
//! line with its kind (`tests/s3_requests.rs` counts them). One request per connection (`Connection: close`
//! both ways), so each request is seen once, whole.
use super::s3_endpoint;
use std::sync::{Arc, Mutex};

/// A request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path and query, as sent (`/bucket/key?partNumber=1&uploadId=...`).
    pub target: String,
    pub headers: Vec<String>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find_map(|h| h.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v.trim())
    }

    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }

    /// The object's path without the bucket (`lake/db/coll/...`); for a listing, the prefix listed.
    pub fn key(&self, bucket: &str) -> String {
        if self.kind() == "LIST" {
            let prefix = self.query().split('&').find_map(|kv| kv.strip_prefix("prefix=")).unwrap_or("");
            return percent_decoded(prefix);
        }
        let path = self.target.split('?').next().unwrap_or("");
        let path = path.trim_start_matches('/');
        path.strip_prefix(bucket).unwrap_or(path).trim_start_matches('/').to_string()
    }

    /// What S3 operation this is: `GET`, `HEAD`, `LIST`, `PUT`, `COPY`, `DELETE`, `MULTIPART` (create, part,
    /// complete or abort), or the method.
    pub fn kind(&self) -> &'static str {
        let q = self.query();
        let multipart = q.contains("uploads") || q.contains("uploadId=");
        match self.method.as_str() {
            _ if multipart => "MULTIPART",
            "GET"
                if q.contains("list-type") || self.target.split('?').next().unwrap_or("").matches('/').count() < 2 =>
            {
                "LIST"
            }
            "GET" => "GET",
            "HEAD" => "HEAD",
            "PUT" if self.header("x-amz-copy-source").is_some() => "COPY",
            "PUT" => "PUT",
            "DELETE" => "DELETE",
            "POST" => "POST",
            _ => "OTHER",
        }
    }
}

/// What the proxy does with a request.
pub enum Action {
    Forward,
    /// Answers with this whole HTTP response instead.
    Answer(String),
    /// Reads the request and closes the connection without an answer.
    Drop,
}

pub type Hook = Arc<dyn Fn(&Request) -> Action + Send + Sync>;

/// A running proxy: its endpoint, and every request it saw, in order.
pub struct Proxy {
    pub endpoint: String,
    pub seen: Arc<Mutex<Vec<Request>>>,
}

impl Proxy {
    /// Starts a proxy that forwards everything.
    pub async fn counting() -> Proxy {
        Self::start(Arc::new(|_| Action::Forward)).await
    }

    /// Starts a proxy that asks `hook` about each request.
    pub async fn start(hook: Hook) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let upstream = s3_endpoint().trim_start_matches("http://").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else { return };
                tokio::spawn(proxy_one(conn, upstream.clone(), hook.clone(), log.clone()));
            }
        });
        Proxy { endpoint, seen }
    }

    /// The requests seen so far, and forgets them.
    pub fn take(&self) -> Vec<Request> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

async fn proxy_one(mut client: tokio::net::TcpStream, upstream: String, hook: Hook, seen: Arc<Mutex<Vec<Request>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut headers: Vec<String> = lines.filter(|l| !l.is_empty()).map(str::to_string).collect();
    let mut parts = request_line.split(' ');
    let request = Request {
        method: parts.next().unwrap_or_default().to_string(),
        target: parts.next().unwrap_or_default().to_string(),
        headers: headers.clone(),
    };
    let length: usize = request.header("content-length").map(|v| v.parse().unwrap()).unwrap_or(0);
    while buf.len() < head_end + length {
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let action = hook(&request);
    seen.lock().unwrap().push(request);
    match action {
        Action::Answer(answer) => {
            let _ = client.write_all(answer.as_bytes()).await;
            let _ = client.shutdown().await;
        }
        Action::Drop => drop(client),
        Action::Forward => {
            let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else { return };
            headers.retain(|h| !h.to_ascii_lowercase().starts_with("connection:"));
            headers.push("Connection: close".into());
            let head = format!("{request_line}\r\n{}\r\n\r\n", headers.join("\r\n"));
            if server.write_all(head.as_bytes()).await.is_err()
                || server.write_all(&buf[head_end..head_end + length]).await.is_err()
            {
                return;
            }
            let _ = tokio::io::copy(&mut server, &mut client).await;
            let _ = client.shutdown().await;
        }
    }
}

/// `%2F` and the like decoded (a listing's prefix is sent encoded).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()),
        ) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
