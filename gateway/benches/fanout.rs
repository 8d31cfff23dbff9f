//! Fanning one event out to 10,000 local subscribers of one channel: the event is serialised once
//! and a reference to it is queued for each connection (audience checked per connection), then
//! each connection's writer takes it off its queue. Run: `cargo bench -p gateway --bench fanout`.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use events::{ChannelName, Event, EventBus, MemoryBus, memory::MemoryBusConfig};
use gateway::realtime::hub::{HistoryRetry, Hub, Member, queue::OutQueue};

const SUBSCRIBERS: u64 = 10_000;

fn fan_out(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bus = MemoryBus::new(MemoryBusConfig::default(), "bench".to_owned());
    let bus: Arc<dyn EventBus> = Arc::new(bus);
    let hub = Hub::new(
        bus,
        gateway::ops::metrics::Metrics::default().event_handoff(),
        HistoryRetry {
            attempts: 1,
            backoff_initial: std::time::Duration::from_millis(1),
        },
    );
    let channel = ChannelName::parse("simulation:s-1").expect("valid channel");
    let queues: Vec<Arc<OutQueue>> = runtime.block_on(async {
        let mut queues = Vec::new();
        for connection_id in 0..SUBSCRIBERS {
            let queue = Arc::new(OutQueue::new(channel.as_str(), 256, true));
            let member = Member {
                connection_id,
                user_id: format!("u-{connection_id}"),
                roles: vec!["user".to_owned()],
                token_id: String::new(),
            };
            hub.join(&channel, member, queue.clone(), None)
                .await
                .expect("join");
            while queue.try_next().is_some() {} // the welcome frame
            queues.push(queue);
        }
        queues
    });
    let mut offset = 0;
    let data = r#"{"type":"progress","simulationId":"s-1","state":"SIMULATION_STATE_RUNNING","progressPercent":42.5,"step":425,"steps":1000}"#;
    c.bench_function(
        "fan out one event to 10,000 subscribers (queue and dequeue)",
        |b| {
            b.iter(|| {
                offset += 1;
                let event = Arc::new(Event {
                    channel: channel.as_str().to_owned(),
                    offset,
                    epoch: "bench".to_owned(),
                    audience: None,
                    data: serde_json::value::RawValue::from_string(data.to_owned()).expect("json"),
                });
                hub.dispatch(&channel, &event);
                for queue in &queues {
                    std::hint::black_box(queue.try_next());
                }
            })
        },
    );
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
