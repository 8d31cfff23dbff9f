//! The `prober`: readiness of every gateway, probed as a load balancer would.

use std::time::Duration;

use http::Method;

use super::Run;
use crate::trace::{Observation, SharedTrace, record};

/// How long the prober waits for a readiness answer, as a load balancer's probe would; past it
/// the probe is recorded as unanswered.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the prober waits between two probes of one gateway.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// Starts the `prober` host: one prober per gateway ([`probe_readiness`]) until the run ends.
pub(super) fn spawn(sim: &mut turmoil::Sim<'_>, run: &Run) {
    let (gateways, end, trace) = (run.gateways.clone(), run.end, run.trace.clone());
    sim.client("prober", async move {
        // One prober per gateway, so a gateway that does not answer never delays the others'
        // samples.
        let probers: Vec<_> = gateways
            .into_iter()
            .map(|gateway| tokio::spawn(probe_readiness(gateway, end, trace.clone())))
            .collect();
        for prober in probers {
            let _ = prober.await;
        }
        Ok(())
    });
}

/// Probes `/health/ready` of `gateway` until `end`, recording every probe, answered or not.
async fn probe_readiness(gateway: String, end: Duration, trace: SharedTrace) {
    while turmoil::sim_elapsed().unwrap_or_default() < end {
        let sent = turmoil::sim_elapsed().unwrap_or_default();
        let address = format!("{gateway}:8002");
        let probe = crate::client::http(&address, Method::GET, "/health/ready", None, "");
        let bus_healthy = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok((_, report))) => report["dependencies"]["event_bus"]["healthy"].as_bool(),
            Ok(Err(_)) | Err(_) => None,
        };
        let what = Observation::Readiness {
            gateway: gateway.clone(),
            sent,
            bus_healthy,
        };
        record(&trace, "prober", what);
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}
