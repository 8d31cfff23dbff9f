//! The bounded record of `x-request-id` values a backend received, so a gateway test can assert
//! the ID it generated reached the backend. [`RequestLogLayer`] records before the fault layer
//! runs, so calls that fail or hang by injection are recorded too.

use std::{
    collections::VecDeque,
    convert::Infallible,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use tonic::{body::Body, server::NamedService};
use tower::{Layer, Service};

use crate::metadata::REQUEST_ID;

/// The last `len_max` request IDs one backend received, oldest first. Cheap to clone; clones
/// share the record.
#[derive(Debug, Clone)]
pub struct RequestLog {
    ids: Arc<Mutex<VecDeque<String>>>,
    len_max: usize,
}

impl RequestLog {
    /// An empty record keeping at most `len_max` IDs (at least one).
    pub fn new(len_max: usize) -> Self {
        let len_max = len_max.max(1);
        Self {
            ids: Arc::new(Mutex::new(VecDeque::with_capacity(len_max.min(1024)))),
            len_max,
        }
    }

    /// Remembers `id`, forgetting the oldest when full.
    pub fn record(&self, id: &str) {
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        if ids.len() == self.len_max {
            ids.pop_front();
        }
        ids.push_back(id.to_owned());
    }

    /// The remembered IDs, oldest first.
    pub fn recent(&self) -> Vec<String> {
        let ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        ids.iter().cloned().collect()
    }

    /// Whether `id` is among the remembered IDs.
    pub fn contains(&self, id: &str) -> bool {
        let ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        ids.iter().any(|recorded| recorded == id)
    }
}

/// Wraps a service so every request's `x-request-id` header is recorded in a [`RequestLog`].
#[derive(Debug, Clone)]
pub struct RequestLogLayer {
    log: RequestLog,
}

impl RequestLogLayer {
    /// A layer recording into `log`.
    pub fn new(log: RequestLog) -> Self {
        Self { log }
    }
}

impl<S> Layer<S> for RequestLogLayer {
    type Service = RequestLogService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLogService {
            inner,
            log: self.log.clone(),
        }
    }
}

/// The service [`RequestLogLayer`] produces; it keeps the wrapped service's gRPC name.
#[derive(Debug, Clone)]
pub struct RequestLogService<S> {
    inner: S,
    log: RequestLog,
}

impl<S: NamedService> NamedService for RequestLogService<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for RequestLogService<S>
where
    S: Service<http::Request<Body>, Error = Infallible>,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let request_id = request
            .headers()
            .get(REQUEST_ID)
            .and_then(|value| value.to_str().ok());
        match request_id {
            Some(request_id) => {
                tracing::debug!(request_id, path = request.uri().path(), "call");
                self.log.record(request_id);
            }
            None => tracing::debug!(path = request.uri().path(), "call without request id"),
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_ids_up_to_the_bound() {
        let log = RequestLog::new(3);
        for id in ["a", "b", "c", "d"] {
            log.record(id);
        }
        assert_eq!(log.recent(), ["b", "c", "d"]);
        assert!(log.contains("d"));
        assert!(!log.contains("a"));
    }
}
