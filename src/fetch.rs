//! The crate's HTTP(S) client, for documents fetched from an identity
//! provider (JWK Sets, OpenID Connect discovery, token introspection): hyper-util's client over rustls (aws-lc-rs), with
//! a connect timeout, a total timeout and a body cap on every fetch.
//! Redirects are not followed.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
#[cfg(feature = "introspection")]
use http::HeaderValue;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_LENGTH, USER_AGENT};
#[cfg(feature = "introspection")]
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use crate::error::ConfigError;

/// Why a fetch failed. Its `Display` goes to logs: it never holds a URL,
/// a header value or a body.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("request timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("unexpected HTTP status {0}")]
    Status(u16),
    #[error("response body over the {0}-byte cap")]
    TooLarge(usize),
    #[error("response body could not be read")]
    Body,
    #[error("{0}")]
    Document(&'static str),
}

/// A successful fetch.
pub(crate) struct Fetched {
    pub(crate) body: Bytes,
    /// `Cache-Control: max-age`, or zero for `no-cache` / `no-store`.
    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(crate) max_age: Option<Duration>,
}

#[derive(Clone)]
pub(crate) struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    total_timeout: Duration,
    max_body: usize,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("total_timeout", &self.total_timeout)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

/// The trust anchors: webpki-roots, the system store with
/// `jwks-native-roots`, and any extra PEM certificates.
fn root_store(extra_pem: &[Vec<u8>]) -> Result<rustls::RootCertStore, ConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    #[cfg(feature = "jwks-native-roots")]
    {
        let native = rustls_native_certs::load_native_certs();
        let _ = roots.add_parsable_certificates(native.certs);
    }
    for pem in extra_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|_| ConfigError::Tls {
                reason: "unreadable PEM certificate".to_owned(),
            })?;
            roots.add(cert).map_err(|e| ConfigError::Tls {
                reason: format!("unusable root certificate: {e}"),
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(ConfigError::Tls {
                reason: "no certificate in the PEM document".to_owned(),
            });
        }
    }
    Ok(roots)
}

impl Fetcher {
    pub(crate) fn new(
        connect_timeout: Duration,
        total_timeout: Duration,
        max_body: usize,
        extra_roots: &[Vec<u8>],
    ) -> Result<Self, ConfigError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::Tls {
                reason: e.to_string(),
            })?
            .with_root_certificates(root_store(extra_roots)?)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(https);
        Ok(Self {
            client,
            total_timeout,
            max_body,
        })
    }

    /// GETs `uri`: status 200, at most `max_body` bytes, within the total
    /// timeout (connecting, headers and body together).
    pub(crate) async fn get(&self, uri: &Uri) -> Result<Fetched, FetchError> {
        let request = Request::get(uri.clone())
            .header(ACCEPT, "application/jwk-set+json, application/json")
            .header(
                USER_AGENT,
                concat!("tower-ws-auth/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::new()))
            .map_err(|_| FetchError::Document("request could not be built"))?;
        self.send(request).await
    }

    /// POSTs the `application/x-www-form-urlencoded` `form` to `uri`, with
    /// `authorization` (HTTP Basic client authentication) if given; the
    /// same rules as [`get`](Self::get). The form and the header may hold
    /// secrets: neither reaches a [`FetchError`].
    #[cfg(feature = "introspection")]
    pub(crate) async fn post_form(
        &self,
        uri: &Uri,
        form: String,
        authorization: Option<HeaderValue>,
    ) -> Result<Fetched, FetchError> {
        let mut request = Request::post(uri.clone())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(
                USER_AGENT,
                concat!("tower-ws-auth/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(form)))
            .map_err(|_| FetchError::Document("request could not be built"))?;
        if let Some(mut value) = authorization {
            value.set_sensitive(true);
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        self.send(request).await
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Result<Fetched, FetchError> {
        let max_body = self.max_body;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                let cause = std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                FetchError::Connect(format!("{e}: {cause}"))
            })?;
            if response.status() != StatusCode::OK {
                return Err(FetchError::Status(response.status().as_u16()));
            }
            let declared = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|len| len > max_body as u64) {
                return Err(FetchError::TooLarge(max_body));
            }
            let max_age = cache_max_age(response.headers());
            let body = Limited::new(response.into_body(), max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<LengthLimitError>() {
                        FetchError::TooLarge(max_body)
                    } else {
                        FetchError::Body
                    }
                })?
                .to_bytes();
            Ok(Fetched { body, max_age })
        };
        tokio::time::timeout(self.total_timeout, exchange)
            .await
            .map_err(|_| FetchError::Timeout)?
    }
}

/// The `max-age` of `Cache-Control` (zero for `no-cache` or `no-store`).
pub(crate) fn cache_max_age(headers: &HeaderMap) -> Option<Duration> {
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            if directive.eq_ignore_ascii_case("no-cache")
                || directive.eq_ignore_ascii_case("no-store")
            {
                return Some(Duration::ZERO);
            }
            if let Some((name, secs)) = directive.split_once('=')
                && name.trim().eq_ignore_ascii_case("max-age")
                && let Ok(secs) = secs.trim().trim_matches('"').parse::<u64>()
            {
                return Some(Duration::from_secs(secs));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn max_age() {
        let mut h = HeaderMap::new();
        assert_eq!(cache_max_age(&h), None);
        h.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600, must-revalidate"),
        );
        assert_eq!(cache_max_age(&h), Some(Duration::from_secs(3600)));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("Max-Age = \"20\""));
        assert_eq!(cache_max_age(&h), Some(Duration::from_secs(20)));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        assert_eq!(cache_max_age(&h), Some(Duration::ZERO));
        h.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("max-age=-5, private"),
        );
        assert_eq!(cache_max_age(&h), None);
    }
}
