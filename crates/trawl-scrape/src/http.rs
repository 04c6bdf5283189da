//! The HTTP side: one pooled client per scrape config and the request Prometheus sends.

use std::sync::Once;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use trawl_config::{EscapingScheme, HttpClientConfig, ScrapeConfig, ScrapeProtocol};
use trawl_exposition::Format;

use crate::ScrapeError;

static PROVIDER: Once = Once::new();

/// Installs the `ring` rustls provider once per process; a later install by someone else
/// (another crate did it first) is fine.
pub fn install_crypto_provider() {
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The `Accept` header Prometheus sends for `protocols`: descending `q` weights starting
/// at 0.6, escaping on the 1.0.0 text formats, and `*/*` last.
pub fn accept_header(protocols: &[ScrapeProtocol], escaping: EscapingScheme) -> String {
    let mut vals = Vec::with_capacity(protocols.len() + 1);
    let mut weight = ScrapeProtocol::ALL.len() + 1;
    for p in protocols {
        let mut v = p.media_type().to_string();
        if matches!(
            p,
            ScrapeProtocol::PrometheusText1_0_0 | ScrapeProtocol::OpenMetricsText1_0_0
        ) {
            v.push_str(";escaping=");
            v.push_str(escaping_str(escaping));
        }
        v.push_str(&format!(";q=0.{weight}"));
        vals.push(v);
        weight = weight.saturating_sub(1);
    }
    vals.push(format!("*/*;q=0.{weight}"));
    vals.join(",")
}

fn escaping_str(e: EscapingScheme) -> &'static str {
    match e {
        EscapingScheme::AllowUtf8 => "allow-utf-8",
        EscapingScheme::Underscores => "underscores",
        EscapingScheme::Dots => "dots",
        EscapingScheme::Values => "values",
    }
}

/// The body format from the response `Content-Type`, falling back as configured, with
/// Prometheus's error texts.
pub fn body_format(
    content_type: Option<&str>,
    fallback: Option<ScrapeProtocol>,
) -> Result<Format, ScrapeError> {
    let ct = content_type.unwrap_or("").trim();
    if let Some(f) = Format::from_content_type(ct) {
        return Ok(f);
    }
    match fallback {
        Some(p) => protocol_format(p).ok_or_else(|| {
            ScrapeError::Unsupported(format!("scrape protocol {p} is not supported"))
        }),
        None if ct.is_empty() => Err(ScrapeError::Http(
            "non-compliant scrape target sending blank Content-Type and no fallback_scrape_protocol specified for target".into(),
        )),
        None => Err(ScrapeError::Http(format!(
            "received unsupported Content-Type {ct:?} and no fallback_scrape_protocol specified for target"
        ))),
    }
}

fn protocol_format(p: ScrapeProtocol) -> Option<Format> {
    match p {
        ScrapeProtocol::PrometheusText0_0_4 | ScrapeProtocol::PrometheusText1_0_0 => {
            Some(Format::PrometheusText)
        }
        ScrapeProtocol::OpenMetricsText0_0_1 | ScrapeProtocol::OpenMetricsText1_0_0 => {
            Some(Format::OpenMetrics)
        }
        ScrapeProtocol::PrometheusProto => None,
    }
}

/// A pooled client for one scrape config, and the headers every request carries.
#[derive(Debug, Clone)]
pub struct ScrapeClient {
    client: reqwest::Client,
    headers: HeaderMap,
    http: HttpClientConfig,
}

impl ScrapeClient {
    /// Builds the client: TLS, proxy, redirects, compression, static headers.
    pub fn new(cfg: &ScrapeConfig) -> Result<Self, ScrapeError> {
        install_crypto_provider();
        let h = &cfg.http;
        if h.oauth2.is_some() {
            return Err(ScrapeError::Unsupported(
                "oauth2 is not supported yet".into(),
            ));
        }
        let mut b = reqwest::Client::builder()
            .gzip(cfg.enable_compression)
            .pool_max_idle_per_host(4)
            .redirect(if h.follow_redirects {
                reqwest::redirect::Policy::limited(10)
            } else {
                reqwest::redirect::Policy::none()
            })
            .tls_danger_accept_invalid_certs(h.tls.insecure_skip_verify);
        let ca = match (&h.tls.ca, &h.tls.ca_file) {
            (Some(s), _) => Some(s.clone().into_bytes()),
            (None, Some(p)) => Some(std::fs::read(p).map_err(|e| {
                ScrapeError::Client(format!(
                    "unable to load specified CA cert {}: {e}",
                    p.display()
                ))
            })?),
            _ => None,
        };
        if let Some(pem) = ca {
            for c in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ScrapeError::Client(format!("invalid CA: {e}")))?
            {
                b = b.add_root_certificate(c);
            }
        }
        let cert = read_inline_or_file(&h.tls.cert, &h.tls.cert_file)?;
        let key = read_inline_or_file(&h.tls.key, &h.tls.key_file)?;
        if let (Some(c), Some(k)) = (cert, key) {
            let mut pem = c;
            pem.push(b'\n');
            pem.extend_from_slice(&k);
            b = b.identity(
                reqwest::Identity::from_pem(&pem)
                    .map_err(|e| ScrapeError::Client(format!("invalid client cert: {e}")))?,
            );
        }
        if let Some(p) = &h.proxy_url {
            b = b.proxy(
                reqwest::Proxy::all(p)
                    .map_err(|e| ScrapeError::Client(format!("invalid proxy_url: {e}")))?,
            );
        } else if !h.proxy_from_environment {
            b = b.no_proxy();
        }
        let client = b.build().map_err(|e| ScrapeError::Client(e.to_string()))?;
        let mut headers = HeaderMap::new();
        let accept = accept_header(&cfg.scrape_protocols, cfg.metric_name_escaping_scheme);
        headers.insert(ACCEPT, hv(&accept)?);
        headers.insert(
            reqwest::header::USER_AGENT,
            HeaderValue::from_static(concat!("Trawl/", env!("CARGO_PKG_VERSION"))),
        );
        if !cfg.enable_compression {
            headers.insert(
                reqwest::header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
        }
        for (name, v) in &h.http_headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ScrapeError::Client(format!("invalid header {name}: {e}")))?;
            for val in v.values.iter().flatten().chain(v.secrets.iter().flatten()) {
                headers.append(n.clone(), hv(val)?);
            }
        }
        Ok(ScrapeClient {
            client,
            headers,
            http: h.clone(),
        })
    }

    /// Fetches `url` within `timeout`, reading at most `body_limit` bytes (0 = no limit);
    /// `size_hint` is the expected body size (the target's last one) when the response
    /// does not give its length. Returns the body and its format.
    pub async fn fetch(
        &self,
        url: &reqwest::Url,
        timeout: Duration,
        body_limit: u64,
        fallback: Option<ScrapeProtocol>,
        size_hint: usize,
    ) -> Result<(Vec<u8>, Format), ScrapeError> {
        let fut = self.fetch_inner(url, timeout, body_limit, fallback, size_hint);
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            // Prometheus's wording for a scrape that ran out of time.
            Err(_) => Err(ScrapeError::Http(format!(
                "Get \"{url}\": context deadline exceeded"
            ))),
        }
    }

    async fn fetch_inner(
        &self,
        url: &reqwest::Url,
        timeout: Duration,
        body_limit: u64,
        fallback: Option<ScrapeProtocol>,
        size_hint: usize,
    ) -> Result<(Vec<u8>, Format), ScrapeError> {
        // A parsed URL: parsing the text again per request (IDNA included) was measurable.
        let mut req = self
            .client
            .get(url.clone())
            .headers(self.headers.clone())
            .header(
                HeaderName::from_static("x-prometheus-scrape-timeout-seconds"),
                hv(&format!("{}", timeout.as_secs_f64()))?,
            );
        if let Some(a) = auth_header(&self.http)? {
            req = req.header(AUTHORIZATION, a);
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| ScrapeError::Http(format!("Get \"{url}\": {}", error_chain(&e))))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ScrapeError::Http(format!(
                "server returned HTTP status {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )));
        }
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // Sized from the response when it says, else from the target's last body, so a
        // 50 kB body is not grown by doubling (copying) a dozen times per scrape.
        let hint = resp.content_length().unwrap_or(size_hint as u64);
        let cap = if body_limit > 0 {
            hint.min(body_limit)
        } else {
            hint
        };
        let mut body = Vec::with_capacity(usize::try_from(cap).unwrap_or(0).min(64 << 20));
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ScrapeError::Http(format!("Get \"{url}\": {}", error_chain(&e))))?
        {
            body.extend_from_slice(&chunk);
            if body_limit > 0 && body.len() as u64 > body_limit {
                return Err(ScrapeError::BodySizeLimit);
            }
        }
        let format = body_format(ct.as_deref(), fallback)?;
        Ok((body, format))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

fn hv(s: &str) -> Result<HeaderValue, ScrapeError> {
    HeaderValue::from_str(s).map_err(|e| ScrapeError::Client(format!("invalid header value: {e}")))
}

fn read_inline_or_file(
    inline: &Option<String>,
    file: &Option<std::path::PathBuf>,
) -> Result<Option<Vec<u8>>, ScrapeError> {
    match (inline, file) {
        (Some(s), _) => Ok(Some(s.clone().into_bytes())),
        (None, Some(p)) => std::fs::read(p)
            .map(Some)
            .map_err(|e| ScrapeError::Client(format!("unable to read {}: {e}", p.display()))),
        _ => Ok(None),
    }
}

fn read_secret(
    inline: &Option<String>,
    file: &Option<std::path::PathBuf>,
) -> Result<String, ScrapeError> {
    // Files are read per request so rotated credentials apply without a reload.
    Ok(read_inline_or_file(inline, file)?
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default())
}

/// The `Authorization` header value for basic auth or `authorization`, if configured.
pub fn auth_header(h: &HttpClientConfig) -> Result<Option<HeaderValue>, ScrapeError> {
    if let Some(b) = &h.basic_auth {
        let user = match &b.username_file {
            Some(f) if b.username.is_empty() => read_secret(&None, &Some(f.clone()))?,
            _ => b.username.clone(),
        };
        let pass = read_secret(&b.password, &b.password_file)?;
        let enc = base64(format!("{user}:{pass}").as_bytes());
        let mut v = hv(&format!("Basic {enc}"))?;
        v.set_sensitive(true);
        return Ok(Some(v));
    }
    if let Some(a) = &h.authorization {
        let cred = read_secret(&a.credentials, &a.credentials_file)?;
        let kind = if a.kind.is_empty() { "Bearer" } else { &a.kind };
        let mut v = hv(&format!("{kind} {cred}"))?;
        v.set_sensitive(true);
        return Ok(Some(v));
    }
    Ok(None)
}

/// Standard base64 with padding (only used for basic auth, not worth a dependency).
pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for c in input.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_header_matches_prometheus_default() {
        assert_eq!(
            accept_header(&ScrapeProtocol::DEFAULT, EscapingScheme::AllowUtf8),
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
             application/openmetrics-text;version=0.0.1;q=0.5,\
             text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,\
             text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        );
        assert_eq!(
            accept_header(
                &[ScrapeProtocol::PrometheusText0_0_4],
                EscapingScheme::Underscores
            ),
            "text/plain;version=0.0.4;q=0.6,*/*;q=0.5"
        );
    }

    #[test]
    fn body_format_from_content_type_and_fallback() {
        assert_eq!(
            body_format(Some("text/plain; version=0.0.4"), None).ok(),
            Some(Format::PrometheusText)
        );
        assert_eq!(
            body_format(Some("application/openmetrics-text; version=1.0.0"), None).ok(),
            Some(Format::OpenMetrics)
        );
        assert_eq!(
            body_format(
                Some("application/json"),
                Some(ScrapeProtocol::PrometheusText0_0_4)
            )
            .ok(),
            Some(Format::PrometheusText)
        );
        assert_eq!(
            body_format(Some("application/json"), None).map_err(|e| e.to_string()),
            Err("received unsupported Content-Type \"application/json\" and no fallback_scrape_protocol specified for target".to_string())
        );
        assert!(
            body_format(None, None)
                .map_err(|e| e.to_string())
                .is_err_and(
                    |e| e.starts_with("non-compliant scrape target sending blank Content-Type")
                )
        );
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn auth_headers() {
        let mut h = HttpClientConfig {
            basic_auth: Some(trawl_config::BasicAuth {
                username: "user".into(),
                password: Some("pass".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = auth_header(&h).expect("ok").expect("set");
        assert_eq!(v.to_str().ok(), Some("Basic dXNlcjpwYXNz"));
        h.basic_auth = None;
        h.authorization = Some(trawl_config::Authorization {
            kind: "Bearer".into(),
            credentials: Some("tok".into()),
            credentials_file: None,
        });
        let v = auth_header(&h).expect("ok").expect("set");
        assert_eq!(v.to_str().ok(), Some("Bearer tok"));
        h.authorization = None;
        assert!(auth_header(&h).expect("ok").is_none());
    }
}
