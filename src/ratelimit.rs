//! Request rate limits per client address (token buckets, in memory per
//! instance) and the client address itself, believing `X-Forwarded-For`
//! only from `TRUSTED_PROXIES`.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderMap;
use ipnet::IpNet;
use moka::future::Cache;

use crate::error::ApiError;

/// What is being limited; each has its own buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Login attempts.
    Login,
    /// Registrations.
    Register,
    /// Refresh-token exchanges.
    Refresh,
    /// Introspection calls with a wrong service key.
    BadServiceKey,
    /// Verification e-mail requests.
    VerifyEmailRequest,
    /// Password reset requests.
    PasswordResetRequest,
}

/// Buckets idle this long are forgotten (they would be full again anyway).
const IDLE: Duration = Duration::from_secs(10 * 60);
const MAX_TRACKED: u64 = 200_000;

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets per (limit, client address).
pub struct RateLimiter {
    buckets: Cache<(Limit, IpAddr), Arc<Mutex<Bucket>>>,
    login: u32,
    register: u32,
    refresh: u32,
    bad_key: u32,
    mail_request: u32,
}

impl RateLimiter {
    /// Limits per minute and per address (`mail_request` for each of the
    /// verification and reset requests).
    pub fn new(
        login: u32,
        register: u32,
        refresh: u32,
        bad_key: u32,
        mail_request: u32,
    ) -> RateLimiter {
        RateLimiter {
            buckets: Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_idle(IDLE)
                .build(),
            login,
            register,
            refresh,
            bad_key,
            mail_request,
        }
    }

    fn per_minute(&self, limit: Limit) -> u32 {
        match limit {
            Limit::Login => self.login,
            Limit::Register => self.register,
            Limit::Refresh => self.refresh,
            Limit::BadServiceKey => self.bad_key,
            Limit::VerifyEmailRequest | Limit::PasswordResetRequest => self.mail_request,
        }
    }

    /// Takes one token for `client`, or says how long to wait (429).
    pub async fn check(&self, limit: Limit, client: IpAddr) -> Result<(), ApiError> {
        let rate = f64::from(self.per_minute(limit).max(1));
        let bucket = self
            .buckets
            .get_with((limit, client), async move {
                Arc::new(Mutex::new(Bucket {
                    tokens: rate,
                    updated: Instant::now(),
                }))
            })
            .await;
        let mut bucket = bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(bucket.updated).as_secs_f64() * rate / 60.0;
        bucket.tokens = (bucket.tokens + refill).min(rate);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) * 60.0 / rate;
            Err(ApiError::RateLimited(Duration::from_secs_f64(
                wait.ceil().max(1.0),
            )))
        }
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy,
/// the nearest address in `X-Forwarded-For` that is not one.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if !trusted.iter().any(|net| net.contains(&peer)) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| part.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !trusted.iter().any(|net| net.contains(ip)))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bucket_allows_its_burst_then_refuses_with_a_wait() {
        let limiter = RateLimiter::new(3, 1, 1, 1, 1);
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        for _ in 0..3 {
            assert!(limiter.check(Limit::Login, ip).await.is_ok());
        }
        match limiter.check(Limit::Login, ip).await {
            Err(ApiError::RateLimited(wait)) => assert!(wait >= Duration::from_secs(1)),
            other => panic!("expected 429, got {other:?}"),
        }
        // Other addresses and other limits have their own buckets.
        assert!(limiter
            .check(Limit::Login, "10.0.0.2".parse().expect("ip"))
            .await
            .is_ok());
        assert!(limiter.check(Limit::Register, ip).await.is_ok());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "1.2.3.4, 10.1.1.1".parse().expect("header"),
        );
        let proxy: IpAddr = "10.9.9.9".parse().expect("ip");
        assert_eq!(
            client_ip(proxy, &headers, &trusted),
            "1.2.3.4".parse::<IpAddr>().expect("ip")
        );
        let stranger: IpAddr = "8.8.8.8".parse().expect("ip");
        assert_eq!(
            client_ip(stranger, &headers, &trusted),
            stranger,
            "spoofed header ignored"
        );
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
    }
}
