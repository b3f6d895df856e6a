//! A small client of the vdc API.

use std::time::Duration;

use anyhow::Context;
use serde::{de::DeserializeOwned, Serialize};
use vdc_api::ErrorBody;

use crate::exit::{fail, Code};

#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    addr: String,
    /// Given on the command line or in the environment.
    token: Option<String>,
    /// Read on every request when no token was given: a server this command
    /// starts writes its admin token there only once it runs.
    token_files: Vec<std::path::PathBuf>,
}

/// An error answer from the server, with the body it sent.
#[derive(Debug, thiserror::Error)]
#[error("{}", body.error)]
pub struct ApiError {
    pub status: u16,
    pub body: ErrorBody,
}

impl Client {
    pub fn new(
        addr: &str,
        token: Option<String>,
        token_files: Vec<std::path::PathBuf>,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .context("cannot build the HTTP client")?;
        let base = if addr.starts_with("http://") {
            addr.trim_end_matches('/').to_owned()
        } else {
            format!("http://{addr}")
        };
        Ok(Self {
            http,
            base,
            addr: addr.to_owned(),
            token: token
                .filter(|t| !t.trim().is_empty())
                .map(|t| t.trim().to_owned()),
            token_files,
        })
    }

    /// The token requests carry, if any can be found.
    pub fn token(&self) -> Option<String> {
        self.token.clone().or_else(|| {
            self.token_files.iter().find_map(|f| {
                let t = std::fs::read_to_string(f).ok()?;
                let t = t.trim();
                (!t.is_empty()).then(|| t.to_owned())
            })
        })
    }

    pub fn with_token(&self, token: String) -> Client {
        Client {
            token: Some(token),
            ..self.clone()
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// True when a vdc server answers at the address (with or without a
    /// token that it accepts).
    pub async fn is_up(&self) -> bool {
        self.http
            .get(self.url("/v1/health"))
            .timeout(Duration::from_millis(500))
            .send()
            .await
            .is_ok_and(|r| {
                r.status().is_success() || r.status() == reqwest::StatusCode::UNAUTHORIZED
            })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.send(self.http.get(self.url(path))).await?;
        decode(response).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let response = self.send(self.http.post(self.url(path)).json(body)).await?;
        decode(response).await
    }

    /// A POST of `body` whose answer has nothing to read.
    pub async fn post_empty_json<B: Serialize>(&self, path: &str, body: &B) -> anyhow::Result<()> {
        self.send(self.http.post(self.url(path)).json(body))
            .await
            .map(drop)
    }

    pub async fn post_empty(&self, path: &str) -> anyhow::Result<()> {
        self.send(self.http.post(self.url(path))).await.map(drop)
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let response = self.send(self.http.put(self.url(path)).json(body)).await?;
        decode(response).await
    }

    pub async fn post_for<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.send(self.http.post(self.url(path))).await?;
        decode(response).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.send(self.http.delete(self.url(path))).await.map(drop)
    }

    pub async fn delete_for<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.send(self.http.delete(self.url(path))).await?;
        decode(response).await
    }

    /// A POST whose body is a file, streamed.
    pub async fn post_file<T: DeserializeOwned>(
        &self,
        path: &str,
        file: tokio::fs::File,
    ) -> anyhow::Result<T> {
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let response = self
            .send(
                self.http
                    .post(self.url(path))
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(body),
            )
            .await?;
        decode(response).await
    }

    /// A POST answered with a stream (server-sent events).
    pub async fn post_stream<B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<reqwest::Response> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// A streaming GET (logs).
    pub async fn stream(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        self.send(self.http.get(self.url(path))).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let request = match self.token() {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                fail(
                    Code::Unreachable,
                    format!(
                        "no vdc server answers at {} (start one with `vdc server` or `vdc up FILE`, or set --addr/VDC_ADDR)",
                        self.addr
                    ),
                )
            } else {
                anyhow::Error::new(e).context(format!("request to {} failed", self.addr))
            }
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        if status == 401 {
            let why = serde_json::from_str::<ErrorBody>(&text)
                .map(|b| b.error)
                .unwrap_or_default();
            return Err(fail(
                Code::Unauthorized,
                format!("the server at {} refused the token ({why}); log in with `vdc login` or set VDC_TOKEN", self.addr),
            ));
        }
        let body = serde_json::from_str::<ErrorBody>(&text).unwrap_or(ErrorBody {
            error: format!("the server answered {status}: {}", text.trim()),
            diagnostics: vec![],
        });
        Err(anyhow::Error::new(ApiError { status, body }))
    }
}

async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> anyhow::Result<T> {
    let bytes = response
        .bytes()
        .await
        .context("cannot read the server's answer")?;
    serde_json::from_slice(&bytes)
        .context("the server's answer is not what this vdc expects (versions differ?)")
}

pub fn url_path_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
