//! Tenants: who a request is (from its bearer token only), and what a tenant
//! may still send (ingest rate limit and journal quota).

use crate::api::ApiError;
use axum::http::{header, HeaderMap};
use herald_config::{Config, TenantConfig};
use herald_dispatch::pacing::{self as ratelimit, DebtBucket};
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

/// The bearer token of a request.
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token> header"))?;
    value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))
}

/// The tenant of a request.
pub fn tenant_of(config: &Config, headers: &HeaderMap) -> Result<String, ApiError> {
    let token = bearer(headers)?;
    config
        .tenant_for_token(token)
        .map(str::to_string)
        .ok_or_else(|| ApiError::unauthorized("unknown token"))
}

/// Checks that a request carries an admin token.
pub fn require_admin(config: &Config, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = bearer(headers)?;
    if config.is_admin_token(token) {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            "this endpoint needs an admin token (server.admin_tokens)",
        ))
    }
}

/// Per-tenant token buckets (events per second) and stored-event counts.
///
/// Not governor's keyed limiter: it holds one quota for every key, while
/// each tenant has its own rate and burst (and a reload may change them).
#[derive(Default)]
pub struct Limiter {
    buckets: RwLock<HashMap<String, DebtBucket>>,
    stored: Mutex<HashMap<String, u64>>,
}

impl Limiter {
    /// Takes `n` events from the tenant's bucket; on refusal, the seconds to
    /// wait before `n` events fit. A batch larger than the burst passes when
    /// the bucket is full and leaves it in debt, so big batches are slowed,
    /// not refused forever.
    pub fn admit(&self, tenant: &str, cfg: &TenantConfig, n: usize) -> Result<(), u64> {
        let Some(rate) = cfg.max_events_per_second else {
            return Ok(());
        };
        let Some(quota) = ratelimit::quota(rate, cfg.burst.unwrap_or(rate)) else {
            return Ok(());
        };
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        let seconds = |wait: std::time::Duration| wait.as_secs_f64().ceil().max(1.0) as u64;
        {
            let buckets = self.buckets.read().unwrap_or_else(|p| p.into_inner());
            if let Some(b) = buckets.get(tenant).filter(|b| b.quota() == quota) {
                return b.take(n).map_err(seconds);
            }
        }
        // First request of the tenant, or its limit changed on reload.
        let mut buckets = self.buckets.write().unwrap_or_else(|p| p.into_inner());
        let b = buckets
            .entry(tenant.to_string())
            .and_modify(|b| {
                if b.quota() != quota {
                    *b = DebtBucket::new(quota);
                }
            })
            .or_insert_with(|| DebtBucket::new(quota));
        b.take(n).map_err(seconds)
    }

    /// Whether the tenant may store `n` more events under its quota. `count`
    /// reads the journal the first time a tenant is seen.
    pub fn within_quota(
        &self,
        tenant: &str,
        cfg: &TenantConfig,
        n: usize,
        count: impl FnOnce() -> u64,
    ) -> bool {
        let Some(max) = cfg.max_stored_events else {
            return true;
        };
        let mut stored = self.stored.lock().unwrap_or_else(|p| p.into_inner());
        let have = *stored.entry(tenant.to_string()).or_insert_with(count);
        have + n as u64 <= max
    }

    /// Records events stored (or removed, with a negative delta).
    pub fn stored(&self, tenant: &str, delta: i64) {
        let mut stored = self.stored.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = stored.get_mut(tenant) {
            *v = (*v as i64 + delta).max(0) as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(rate: Option<f64>, burst: Option<f64>, quota: Option<u64>) -> TenantConfig {
        TenantConfig {
            tokens: vec![],
            max_events_per_second: rate,
            burst,
            max_stored_events: quota,
        }
    }

    #[test]
    fn bucket_refuses_then_refills() {
        let l = Limiter::default();
        let t = tenant(Some(100.0), Some(100.0), None);
        assert!(l.admit("a", &t, 100).is_ok());
        let wait = l.admit("a", &t, 50).unwrap_err();
        assert_eq!(wait, 1);
        assert!(
            l.admit("b", &t, 10).is_ok(),
            "tenants have their own buckets"
        );
        std::thread::sleep(std::time::Duration::from_millis(600));
        assert!(l.admit("a", &t, 50).is_ok());
        assert!(l.admit("a", &tenant(None, None, None), 1_000_000).is_ok());
    }

    #[test]
    fn quota_counts_stored_events() {
        let l = Limiter::default();
        let t = tenant(None, None, Some(10));
        assert!(l.within_quota("a", &t, 4, || 6));
        l.stored("a", 4);
        assert!(!l.within_quota("a", &t, 1, || unreachable!()));
        l.stored("a", -5);
        assert!(l.within_quota("a", &t, 5, || unreachable!()));
    }
}
