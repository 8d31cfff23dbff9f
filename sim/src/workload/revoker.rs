//! The `revoker`: a notification subscriber whose token Auth revokes mid-run. It records when Auth
//! acknowledges the revocation and when the revocation shows on `auth:revocations`, which is when
//! the invariants hold every gateway to it.

use std::time::Duration;

use events::{BusMessage, ChannelName, EventBus, RedisBus, Subscription};
use mock_backends::control_proto::{
    RevokeTokenRequest, control_service_client::ControlServiceClient,
};
use tonic::transport::Channel;

use super::{
    Run, Workload, login_retrying,
    subscribers::{SubscriberPlan, subscribe},
};
use crate::{
    TurmoilNet,
    topology::redis_bus_config,
    trace::{Observation, SharedTrace, record},
};

/// How often the revoker looks for the revocation in `auth:revocations`' history.
const HISTORY_POLL: Duration = Duration::from_millis(100);

/// Starts the `revoker` host when the scenario revokes a token (see [`revoker`]); returns its name.
pub(super) fn spawn(sim: &mut turmoil::Sim<'_>, run: &Run, workload: &Workload) -> Option<String> {
    let revoke_at = workload.revoke_at?;
    // The revoker is the last subscriber number.
    let subscriber = workload.subscribers + workload.collaborators;
    sim.client("revoker", revoker(run.clone(), subscriber, revoke_at));
    Some("revoker".to_owned())
}

/// Logs in through the gateway its number picks and subscribes to `user:u-1` with its own token;
/// at `revoke_at` asks Auth (through the control plane) to revoke that token, then records
/// [`Observation::Revoked`] once it sees the revocation on `auth:revocations` (live, or in
/// history). Runs until its subscription ends with the run.
async fn revoker(run: Run, subscriber: usize, revoke_at: Duration) -> turmoil::Result {
    let Run {
        seed,
        end,
        gateways,
        trace,
        ..
    } = run;
    let gateway = &gateways[subscriber % gateways.len()];
    let Some(token) = login_retrying(gateway, end, &trace, "revoker").await else {
        return Ok(());
    };
    let token_id = crate::client::token_id(&token).ok_or("a token without jti")?;
    let subscription = tokio::spawn(subscribe(SubscriberPlan {
        subscriber,
        host: "revoker".to_owned(),
        address: format!("{gateway}:8001"),
        path: format!("/ws/notifications?access_token={token}"),
        end,
        trace: trace.clone(),
        drop_event: None,
        reconnect_on_gap: false,
    }));
    // The revocation is seen live (as the gateways see it) or in history (if it was published
    // while this client's subscription was down); Redis may also lose it in a crash after
    // delivering it, so history alone is not enough. The subscription starts long before the
    // revocation: one opened with it could miss it live, and a Redis crash right after would then
    // take it from history too (seed 500158).
    let revocations = RedisBus::new(TurmoilNet, redis_bus_config(seed ^ 0x7e0))?;
    let mut live = EventBus::subscribe(&revocations, &ChannelName::revocations());
    let wait = revoke_at.saturating_sub(turmoil::sim_elapsed().unwrap_or_default());
    tokio::time::sleep(wait).await;
    let mut control = crate::client::control("auth:9000")?;
    let watch = Watch {
        subscriber,
        token_id: &token_id,
        end,
        trace: &trace,
    };
    if watch
        .revoke_until_seen(&mut control, &revocations, &mut live)
        .await
    {
        let what = Observation::Revoked {
            subscriber,
            token_id,
        };
        record(&trace, "revoker", what);
    }
    // The bus, its subscription and the control client are dropped only after the subscription
    // ends (with the run): each drop closes connections, which must not happen earlier.
    let _ = subscription.await;
    Ok(())
}

/// The revocation of one token, as the revoker asks for it and watches for it.
struct Watch<'a> {
    /// The revoker's subscriber number.
    subscriber: usize,
    /// The token's `jti`, which the revocation event carries.
    token_id: &'a str,
    /// When the run ends: the revoker stops watching there.
    end: Duration,
    /// Where it records.
    trace: &'a SharedTrace,
}

impl Watch<'_> {
    /// Asks Auth to revoke the token until it acknowledges, and watches `auth:revocations` until
    /// the revocation shows or the run ends. Returns whether it showed.
    async fn revoke_until_seen(
        &self,
        control: &mut ControlServiceClient<Channel>,
        revocations: &RedisBus<TurmoilNet>,
        live: &mut Subscription,
    ) -> bool {
        let mut revoked = false;
        let mut seen = false;
        while !seen && turmoil::sim_elapsed().unwrap_or_default() < self.end {
            if !revoked {
                revoked = self.revoke(control).await;
            }
            seen = self.shows(revocations, live, revoked).await;
        }
        seen
    }

    /// Asks Auth once to revoke the token; records [`Observation::RevocationAcknowledged`] and
    /// returns `true` when it acknowledges.
    async fn revoke(&self, control: &mut ControlServiceClient<Channel>) -> bool {
        let request = RevokeTokenRequest {
            token_id: self.token_id.to_owned(),
        };
        let revoked = control.revoke_token(request).await.is_ok();
        if revoked {
            let what = Observation::RevocationAcknowledged {
                subscriber: self.subscriber,
            };
            record(self.trace, "revoker", what);
        }
        revoked
    }

    /// Whether the revocation shows within one [`HISTORY_POLL`]: as the next live event on
    /// `auth:revocations` or, when none comes first and Auth has `revoked`, in its history.
    async fn shows(
        &self,
        revocations: &RedisBus<TurmoilNet>,
        live: &mut Subscription,
        revoked: bool,
    ) -> bool {
        let poll = tokio::time::sleep(HISTORY_POLL);
        tokio::select! {
            biased;
            message = live.next() => {
                matches!(message, Some(BusMessage::Event { event, .. })
                    if event.data.get().contains(self.token_id))
            }
            () = poll => {
                // Nothing live: look in history, once the revocation has been asked for.
                if !revoked {
                    return false;
                }
                let history =
                    EventBus::history(revocations, &ChannelName::revocations(), 0).await;
                history.is_ok_and(|history| {
                    history
                        .events
                        .iter()
                        .any(|event| event.data.get().contains(self.token_id))
                })
            }
        }
    }
}
