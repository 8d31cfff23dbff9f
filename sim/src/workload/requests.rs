//! The HTTP clients: `http`, rounds of profile and Project calls over the gateways with a valid
//! token and a forged one, and `limited`, which runs into the limit the gateways share through
//! Redis. Every request carries its own `x-request-id` (`h-...` for `http`, `l-...` for
//! `limited`) and is recorded as an [`Observation::Http`].

use std::{collections::BTreeMap, time::Duration};

use http::Method;

use super::{Run, login_retrying};
use crate::{
    hosts::RequestLogs,
    topology::{HTTP_PATHS, LIMITED_PATH},
    trace::{Observation, SharedTrace, record},
};

/// A token signed with a key nobody has: every gateway must answer it 401.
const FORGED: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1LTEifQ.bm90LWEtc2lnbmF0dXJl";

/// Starts the `http` host (see [`http_client`]).
pub(super) fn spawn(sim: &mut turmoil::Sim<'_>, run: &Run, interval: Duration) {
    let (gateways, end, trace) = (run.gateways.clone(), run.end, run.trace.clone());
    sim.client("http", http_client(gateways, end, interval, trace));
}

/// Logs in through the first gateway, then until `end` asks one round every `interval`, each
/// round on the next gateway: every path of [`HTTP_PATHS`] with the valid token, then the first
/// with [`FORGED`].
async fn http_client(
    gateways: Vec<String>,
    end: Duration,
    interval: Duration,
    trace: SharedTrace,
) -> turmoil::Result {
    let Some(token) = login_retrying(&gateways[0], end, &trace, "http").await else {
        return Ok(());
    };
    let mut round = 0usize;
    while turmoil::sim_elapsed().unwrap_or_default() < end {
        let gateway = &gateways[round % gateways.len()];
        round += 1;
        let asks = HTTP_PATHS
            .into_iter()
            .map(|path| ("valid", token.as_str(), path))
            .chain([("invalid", FORGED, HTTP_PATHS[0])]);
        for (number, (kind, token, path)) in asks.enumerate() {
            let request_id = format!("h-{round}-{number}");
            ask(&trace, "http", gateway, (kind, token), path, request_id).await;
        }
        tokio::time::sleep(interval).await;
    }
    Ok(())
}

/// Starts the `limited` host when the scenario has one (see [`limited_client`]); returns its name.
pub(super) fn spawn_limited(
    sim: &mut turmoil::Sim<'_>,
    run: &Run,
    interval: Option<Duration>,
) -> Option<String> {
    let interval = interval?;
    let (gateways, end, trace) = (run.gateways.clone(), run.end, run.trace.clone());
    sim.client("limited", limited_client(gateways, end, interval, trace));
    Some("limited".to_owned())
}

/// The `limited` client: GET [`LIMITED_PATH`] one request at a time, waiting `interval` after
/// each, round robin over the gateways, until a second before `end`. Recorded as
/// [`Observation::Http`], so it is held to every HTTP invariant too.
async fn limited_client(
    gateways: Vec<String>,
    end: Duration,
    interval: Duration,
    trace: SharedTrace,
) -> turmoil::Result {
    let Some(token) = login_retrying(&gateways[0], end, &trace, "limited").await else {
        return Ok(());
    };
    let mut round = 0usize;
    while turmoil::sim_elapsed().unwrap_or_default() + Duration::from_secs(1) < end {
        let gateway = &gateways[round % gateways.len()];
        round += 1;
        let request_id = format!("l-{round}");
        let token = ("valid", token.as_str());
        ask(&trace, "limited", gateway, token, LIMITED_PATH, request_id).await;
        tokio::time::sleep(interval).await;
    }
    Ok(())
}

/// GETs `path` from `gateway` with `token` (`kind` says whether it is `valid` or `invalid`) and
/// `request_id`, and records the request and its answer as `host`.
async fn ask(
    trace: &SharedTrace,
    host: &str,
    gateway: &str,
    (kind, token): (&'static str, &str),
    path: &'static str,
    request_id: String,
) {
    let sent = turmoil::sim_elapsed().unwrap_or_default();
    let answer = crate::client::http_with_id(
        &format!("{gateway}:8000"),
        Method::GET,
        path,
        Some(token),
        "",
        Some(&request_id),
    )
    .await
    .ok();
    let what = http_observation(kind, path, request_id, gateway, sent, answer);
    record(trace, host, what);
}

/// What the trace keeps of a workload request sent at `sent` and its answer (`None`: none came).
fn http_observation(
    token: &'static str,
    path: &'static str,
    request_id: String,
    gateway: &str,
    sent: Duration,
    answer: Option<crate::client::Answer>,
) -> Observation {
    Observation::Http {
        token,
        path,
        request_id,
        gateway: gateway.to_owned(),
        sent,
        status: answer.as_ref().map(|answer| answer.status.as_u16()),
        code: answer
            .as_ref()
            .and_then(|answer| answer.body["error"]["code"].as_str().map(str::to_owned)),
        cache: answer.and_then(|answer| answer.x_cache),
    }
}

/// How many calls `backend` received with each of the `http` client's request IDs (`h-...`),
/// over every start of the backend.
pub(crate) fn workload_attempts(logs: &RequestLogs, backend: &str) -> BTreeMap<String, u32> {
    let logs = logs.lock().unwrap_or_else(|p| p.into_inner());
    let mut attempts = BTreeMap::new();
    for log in logs.get(backend).into_iter().flatten() {
        for id in log.recent() {
            if id.starts_with("h-") {
                *attempts.entry(id).or_insert(0) += 1;
            }
        }
    }
    attempts
}
