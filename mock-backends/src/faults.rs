//! Fault knobs: added latency, an injected error rate, hang and down, settable at start and at run
//! time.
//!
//! [`Faults`] is the handle; [`FaultLayer`] applies latency, errors and hang to every call of the
//! service it wraps, in one place. `down` acts below HTTP/2, on the connections themselves (see
//! [`crate::connection`]), so clients see real transport failures rather than a gRPC status.

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use rand::{Rng, rngs::SmallRng};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tonic::{Status, body::Body, server::NamedService};
use tower::{Layer, Service, ServiceExt};

use crate::{config_error::ConfigError, control_proto};

/// The message of an error injected by [`FaultSettings::error_rate`].
pub const INJECTED_FAULT_MESSAGE: &str = "injected fault";

/// The fault knobs of one backend. All off by default.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSettings {
    /// Added before every call is handled, in milliseconds.
    pub latency_ms: u64,
    /// Fraction of calls (0.0 to 1.0) answered UNAVAILABLE "injected fault".
    pub error_rate: f64,
    /// Calls wait, unanswered, until this is cleared.
    pub hang: bool,
    /// Every connection is reset and new ones are closed as soon as they are accepted.
    pub down: bool,
}

impl FaultSettings {
    /// Checks the error rate is a probability; `field` names the settings in the error.
    pub fn validate(&self, field: &str) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(ConfigError::new(
                format!("{field}.error_rate"),
                format!("{} is not between 0.0 and 1.0", self.error_rate),
            ));
        }
        Ok(())
    }
}

impl From<control_proto::FaultSettings> for FaultSettings {
    fn from(wire: control_proto::FaultSettings) -> Self {
        Self {
            latency_ms: wire.latency_ms,
            error_rate: wire.error_rate,
            hang: wire.hang,
            down: wire.down,
        }
    }
}

impl From<FaultSettings> for control_proto::FaultSettings {
    fn from(settings: FaultSettings) -> Self {
        Self {
            latency_ms: settings.latency_ms,
            error_rate: settings.error_rate,
            hang: settings.hang,
            down: settings.down,
        }
    }
}

/// A cheap, cloneable handle on one backend's fault settings. Every clone sees and changes the
/// same settings; changes apply to calls that have not yet passed the fault layer, and `hang`
/// and `down` wake whoever waits on them at once.
#[derive(Debug, Clone)]
pub struct Faults {
    inner: Arc<FaultsInner>,
}

#[derive(Debug)]
struct FaultsInner {
    /// A watch channel rather than atomics: hung calls and open connections wait on changes.
    settings: watch::Sender<FaultSettings>,
    /// Draws for `error_rate`. Seeded, so a simulation replays the same failures.
    rng: Mutex<SmallRng>,
    /// Calls held by `hang` right now.
    hung: AtomicUsize,
}

/// Counts one call as hung for as long as it lives (a cancelled call is dropped, and leaves).
struct Hung<'a>(&'a AtomicUsize);

impl<'a> Hung<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Hung<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Faults {
    /// A handle starting from `initial`, drawing injected errors from `rng`.
    pub(crate) fn new(initial: FaultSettings, rng: SmallRng) -> Self {
        Self {
            inner: Arc::new(FaultsInner {
                settings: watch::Sender::new(initial),
                rng: Mutex::new(rng),
                hung: AtomicUsize::new(0),
            }),
        }
    }

    /// A handle for `service` (a `ServiceKind`, named in field paths and the random stream's
    /// name) with its random stream derived from `seed`.
    pub(crate) fn seeded(
        initial: FaultSettings,
        seed: u64,
        service: impl std::fmt::Display,
    ) -> Result<Self, ConfigError> {
        initial.validate(&format!("{service}.faults"))?;
        Ok(Self::new(
            initial,
            crate::rng::stream(seed, &format!("faults/{service}")),
        ))
    }

    /// The current settings.
    pub fn settings(&self) -> FaultSettings {
        *self.inner.settings.borrow()
    }

    /// Replaces every setting at once.
    pub fn set(&self, settings: FaultSettings) -> Result<(), ConfigError> {
        settings.validate("faults")?;
        self.inner.settings.send_replace(settings);
        Ok(())
    }

    /// Turns every fault off.
    pub fn clear(&self) {
        self.inner.settings.send_replace(FaultSettings::default());
    }

    /// Sets the latency added to every call.
    pub fn set_latency_ms(&self, latency_ms: u64) {
        self.inner
            .settings
            .send_modify(|settings| settings.latency_ms = latency_ms);
    }

    /// Sets the fraction of calls answered UNAVAILABLE; fails unless 0.0 to 1.0.
    pub fn set_error_rate(&self, error_rate: f64) -> Result<(), ConfigError> {
        self.set(FaultSettings {
            error_rate,
            ..self.settings()
        })
    }

    /// Makes calls hang (`true`) or releases every hung call (`false`).
    pub fn set_hang(&self, hang: bool) {
        self.inner
            .settings
            .send_modify(|settings| settings.hang = hang);
    }

    /// Takes the backend down (`true`: connections reset, new ones refused) or back up.
    pub fn set_down(&self, down: bool) {
        self.inner
            .settings
            .send_modify(|settings| settings.down = down);
    }

    /// Whether the backend is down.
    pub fn is_down(&self) -> bool {
        self.inner.settings.borrow().down
    }

    /// How many calls `hang` holds right now. A call whose client gave up (its stream was reset)
    /// is dropped by the server and no longer counts: tests use this to see cancellation arrive.
    pub fn hung_calls(&self) -> usize {
        self.inner.hung.load(Ordering::SeqCst)
    }

    /// A receiver that sees every change, for waiting on `hang` or `down`.
    pub(crate) fn subscribe(&self) -> watch::Receiver<FaultSettings> {
        self.inner.settings.subscribe()
    }

    /// Applies latency, hang and the error rate to one call, in that order. `Err` is the status
    /// the call must be answered with instead of being handled. `draining` turning true (server
    /// shutdown) releases a hung call, so shutdown never waits on a hang.
    pub(crate) async fn before_call(
        &self,
        mut draining: watch::Receiver<bool>,
    ) -> Result<(), Status> {
        let latency_ms = self.settings().latency_ms;
        if latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(latency_ms)).await;
        }

        let mut settings = self.subscribe();
        let _hung = settings
            .borrow()
            .hang
            .then(|| Hung::enter(&self.inner.hung));
        tokio::select! {
            // Biased so shutdown wins over a hang cleared at the same moment: the result is the
            // same either way, but a fixed order keeps simulation runs identical.
            biased;
            _ = draining.wait_for(|draining| *draining) => {
                return Err(Status::unavailable("shutting down"));
            }
            _ = settings.wait_for(|settings| !settings.hang) => {}
        }

        let error_rate = self.settings().error_rate;
        if error_rate > 0.0 {
            let fail = self
                .inner
                .rng
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .random_bool(error_rate);
            if fail {
                return Err(Status::unavailable(INJECTED_FAULT_MESSAGE));
            }
        }
        Ok(())
    }
}

/// Wraps a generated tonic service so every call first waits out the added latency and any hang,
/// then may fail by the error rate.
#[derive(Debug, Clone)]
pub struct FaultLayer {
    faults: Faults,
    draining: watch::Receiver<bool>,
}

impl FaultLayer {
    /// A layer applying `faults`; `draining` turns true when the server starts shutting down.
    pub fn new(faults: Faults, draining: watch::Receiver<bool>) -> Self {
        Self { faults, draining }
    }
}

impl<S> Layer<S> for FaultLayer {
    type Service = FaultService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FaultService {
            inner,
            faults: self.faults.clone(),
            draining: self.draining.clone(),
        }
    }
}

/// The service [`FaultLayer`] produces. It keeps the wrapped service's gRPC name so the router
/// still routes to it.
#[derive(Debug, Clone)]
pub struct FaultService<S> {
    inner: S,
    faults: Faults,
    draining: watch::Receiver<bool>,
}

impl<S: NamedService> NamedService for FaultService<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for FaultService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness of the inner service is awaited inside the call, after the faults.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        let faults = self.faults.clone();
        let draining = self.draining.clone();
        Box::pin(async move {
            if let Err(status) = faults.before_call(draining).await {
                return Ok(status.into_http());
            }
            inner.oneshot(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(settings: FaultSettings) -> Faults {
        Faults::seeded(settings, 1, crate::ServiceKind::Auth).unwrap()
    }

    #[tokio::test]
    async fn no_faults_lets_calls_through() {
        let (_tx, draining) = watch::channel(false);
        faults(FaultSettings::default())
            .before_call(draining)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn error_rate_one_always_fails_and_zero_never() {
        let (_tx, draining) = watch::channel(false);
        let faults = faults(FaultSettings {
            error_rate: 1.0,
            ..FaultSettings::default()
        });
        for _ in 0..20 {
            let status = faults.before_call(draining.clone()).await.unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unavailable);
            assert_eq!(status.message(), INJECTED_FAULT_MESSAGE);
        }
        faults.set_error_rate(0.0).unwrap();
        faults.before_call(draining).await.unwrap();
    }

    #[tokio::test]
    async fn same_seed_fails_the_same_calls() {
        let (_tx, draining) = watch::channel(false);
        let half = FaultSettings {
            error_rate: 0.5,
            ..FaultSettings::default()
        };
        let mut runs = Vec::new();
        for _ in 0..2 {
            let faults = faults(half);
            let mut outcomes = Vec::new();
            for _ in 0..64 {
                outcomes.push(faults.before_call(draining.clone()).await.is_ok());
            }
            runs.push(outcomes);
        }
        assert_eq!(runs[0], runs[1]);
        assert!(runs[0].iter().any(|ok| *ok) && runs[0].iter().any(|ok| !*ok));
    }

    #[tokio::test(start_paused = true)]
    async fn hang_holds_calls_until_cleared() {
        let (_tx, draining) = watch::channel(false);
        let faults = faults(FaultSettings {
            hang: true,
            ..FaultSettings::default()
        });
        let call = tokio::spawn({
            let faults = faults.clone();
            async move { faults.before_call(draining).await }
        });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!call.is_finished());
        faults.set_hang(false);
        call.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_releases_hung_calls() {
        let (drain, draining) = watch::channel(false);
        let faults = faults(FaultSettings {
            hang: true,
            ..FaultSettings::default()
        });
        let call = tokio::spawn({
            let faults = faults.clone();
            async move { faults.before_call(draining).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drain.send_replace(true);
        let status = call.await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }

    #[test]
    fn invalid_error_rate_is_rejected_and_leaves_settings_alone() {
        let faults = faults(FaultSettings::default());
        assert!(faults.set_error_rate(-0.1).is_err());
        assert!(faults.set_error_rate(f64::NAN).is_err());
        assert_eq!(faults.settings(), FaultSettings::default());
    }
}
