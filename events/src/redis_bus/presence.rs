//! Presence on Redis: the `presence.lua` operations behind [`Presence`] for the bus.

use super::*;

/// One presence operation (`presence.lua`): `args` follow the operation name and the TTL.
pub(super) fn presence_call<N: Net>(
    shared: &Arc<BusState<N>>,
    channel: &ChannelName,
    operation: &'static str,
    ttl: Duration,
    args: Vec<String>,
) -> BoxFuture<'static, Result<PresenceState, BusError>> {
    let shared = shared.clone();
    let channel = channel.clone();
    Box::pin(async move {
        let mut invocation = shared.presence_script.prepare_invoke();
        invocation
            .key(epoch_key(&channel))
            .key(offset_key(&channel))
            .key(history_key(&channel))
            .key(presence_key(&channel))
            .key(presence_members_key(&channel))
            .arg(channel.as_str())
            .arg(shared.new_epoch())
            .arg(shared.config.history_len_max)
            .arg(operation)
            .arg(ttl.as_millis().max(1) as u64);
        for arg in &args {
            invocation.arg(arg.as_str());
        }
        let reply: Vec<String> = shared.run_script(invocation).await?;
        let bad = |what: &str| BusError::Invalid(format!("presence returned {what}"));
        let mut fields = reply.into_iter();
        let epoch = fields.next().ok_or_else(|| bad("no epoch"))?;
        let offset = fields
            .next()
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| bad("no offset"))?;
        let mut members = fields
            .map(|member| {
                serde_json::from_str::<PresenceMember>(&member)
                    .map_err(|error| bad(&format!("a bad member: {error}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        members.sort_by(|a, b| a.connection.cmp(&b.connection));
        Ok(PresenceState {
            epoch,
            offset,
            members,
        })
    })
}

pub(super) fn member_json(member: &PresenceMember) -> Result<String, BusError> {
    serde_json::to_string(member).map_err(|error| BusError::Invalid(error.to_string()))
}

impl<N: Net> Presence for RedisBus<N> {
    fn presence_join(
        &self,
        channel: &ChannelName,
        member: PresenceMember,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<PresenceState, BusError>> {
        match member_json(&member) {
            Ok(json) => presence_call(
                &self.shared,
                channel,
                "join",
                ttl,
                vec![member.connection, json],
            ),
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }

    fn presence_leave(
        &self,
        channel: &ChannelName,
        connection: &str,
    ) -> BoxFuture<'static, Result<(), BusError>> {
        // The TTL is unused by `leave`; any positive value passes the script's check.
        let call = presence_call(
            &self.shared,
            channel,
            "leave",
            Duration::from_millis(1),
            vec![connection.to_owned()],
        );
        Box::pin(async move { call.await.map(drop) })
    }

    fn presence_heartbeat(
        &self,
        channel: &ChannelName,
        members: Vec<PresenceMember>,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), BusError>> {
        let mut args = Vec::with_capacity(members.len() * 2);
        for member in members {
            match member_json(&member) {
                Ok(json) => args.extend([member.connection, json]),
                Err(error) => return Box::pin(async move { Err(error) }),
            }
        }
        let call = presence_call(&self.shared, channel, "heartbeat", ttl, args);
        Box::pin(async move { call.await.map(drop) })
    }

    fn presence_state(
        &self,
        channel: &ChannelName,
    ) -> BoxFuture<'static, Result<PresenceState, BusError>> {
        presence_call(
            &self.shared,
            channel,
            "state",
            Duration::from_millis(1),
            Vec::new(),
        )
    }
}
