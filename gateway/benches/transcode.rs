//! Route matching plus JSON-to-protobuf transcoding of a typical request, and the check of the
//! contract's field rules on it: the per-request work the gateway adds before a backend call.
//! A request's JSON encoded two ways in the same run: the streaming encoder the gateway uses
//! (`RequestPlan::from_json`, JSON straight to wire bytes) beside what it did before
//! (prost-reflect: deserialise a `DynamicMessage`, then encode it), for a CreateProject body and a
//! 1 MB document. Then an answer written as JSON two ways in the same run: the streaming writer the gateway uses
//! (`Answer::to_json`, wire bytes straight to JSON) beside what it did before (prost-reflect:
//! decode a `DynamicMessage`, then serialise it), for the profile, a page of 20 projects and a
//! 1 MB list. Run: `cargo bench -p gateway --bench transcode`.

use criterion::{Criterion, criterion_group, criterion_main};
use gateway::{
    app::builtin_descriptors,
    proxy::validate::Validation,
    routing::{RouteLookup, RouteTable},
    transcode,
};
use http::Method;
use prost::Message;

fn route_and_transcode(c: &mut Criterion) {
    let table = RouteTable::from_pool(&builtin_descriptors(), &[]).expect("routes build");
    let body = br#"{"name":"Wind tunnel v2","description":"Turbulence study at Mach 0.8","templateId":"t-cfd"}"#;

    c.bench_function("route: GET /api/projects/{id}", |b| {
        b.iter(|| {
            let lookup = table.lookup(&Method::GET, std::hint::black_box("/api/projects/p-42"));
            assert!(matches!(lookup, RouteLookup::Found(..)));
        })
    });

    c.bench_function(
        "route + transcode: POST /api/projects (JSON body to protobuf bytes)",
        |b| {
            b.iter(|| {
                let RouteLookup::Found(route, captures) =
                    table.lookup(&Method::POST, std::hint::black_box("/api/projects"))
                else {
                    panic!("route must match");
                };
                transcode::build_request(
                    &route.request,
                    &captures,
                    None,
                    std::hint::black_box(body),
                )
                .expect("valid body")
            })
        },
    );

    // The rules of CreateProject: the body required, `name` required, at most 100 characters
    // and matching its pattern, `description` at most 2,000 characters.
    let validation = Validation::compile(&table).expect("enforceable rules");
    let RouteLookup::Found(route, captures) = table.lookup(&Method::POST, "/api/projects") else {
        panic!("route must match");
    };
    let wire = transcode::build_request(&route.request, &captures, None, body).expect("valid body");
    c.bench_function(
        "validate: POST /api/projects (the transcoded body's rules)",
        |b| {
            b.iter(|| {
                validation
                    .check(&route, std::hint::black_box(&wire))
                    .expect("a valid request")
            })
        },
    );

    c.bench_function(
        "route + transcode: GET /api/projects?pageSize=50&pageToken=abc",
        |b| {
            b.iter(|| {
                let RouteLookup::Found(route, captures) =
                    table.lookup(&Method::GET, std::hint::black_box("/api/projects"))
                else {
                    panic!("route must match");
                };
                transcode::build_request(
                    &route.request,
                    &captures,
                    Some("pageSize=50&pageToken=abc"),
                    b"",
                )
                .expect("valid query")
            })
        },
    );
}

/// An encoded answer of `route`'s output type, built from its proto3 JSON.
fn encoded_answer(route: &gateway::routing::Route, json: &serde_json::Value) -> Vec<u8> {
    let options = prost_reflect::DeserializeOptions::new();
    let message = prost_reflect::DynamicMessage::deserialize_with_options(
        route.grpc_method.output(),
        json,
        &options,
    )
    .expect("the answer fits its type");
    message.encode_to_vec()
}

/// A project as the API writes it.
fn project(n: usize) -> serde_json::Value {
    serde_json::json!({
        "id": format!("p-{n}"),
        "name": format!("Wind tunnel {n}"),
        "description": "Turbulence study at Mach 0.8, with the \"fine\" mesh",
        "ownerId": "u-alice",
        "templateId": "t-cfd",
        "createTime": "2026-11-30T10:15:00.250Z",
        "updateTime": "2026-12-01T08:00:00Z",
    })
}

/// A page of `count` projects: 5,000 make about 1 MB of protobuf.
fn page(count: usize) -> serde_json::Value {
    serde_json::json!({
        "projects": (0..count).map(project).collect::<Vec<_>>(),
        "nextPageToken": "20",
    })
}

fn requests(c: &mut Criterion) {
    let table = RouteTable::from_pool(&builtin_descriptors(), &[]).expect("routes build");
    let RouteLookup::Found(create, _) = table.lookup(&Method::POST, "/api/projects") else {
        panic!("route must match");
    };
    let RouteLookup::Found(list, _) = table.lookup(&Method::GET, "/api/projects") else {
        panic!("route must match");
    };
    // The list's answer type stands for a large request: no request of the API is that big,
    // and the encoder does not care which side of the call a type is on.
    let plans = std::sync::Arc::new(transcode::Plans::compile(&builtin_descriptors()));
    let large = transcode::RequestPlan::new(
        &plans,
        &list.grpc_method.output(),
        transcode::BodyMapping::Whole,
        Vec::new(),
    );
    let cases = [
        (
            "POST /api/projects",
            create.request.clone(),
            create.input(),
            br#"{"project":{"name":"Wind tunnel v2","description":"Turbulence study at Mach 0.8","templateId":"t-cfd"}}"#.to_vec(),
        ),
        (
            "a 1 MB ListProjectsResponse",
            large,
            list.grpc_method.output(),
            page(5_000).to_string().into_bytes(),
        ),
    ];
    let options = prost_reflect::DeserializeOptions::new().deny_unknown_fields(true);
    for (name, plan, descriptor, json) in cases {
        let mut group = c.benchmark_group(format!(
            "request to protobuf: {name} ({} bytes of JSON)",
            json.len()
        ));
        group.throughput(criterion::Throughput::Bytes(json.len() as u64));
        group.bench_function("streaming encoder", |b| {
            b.iter(|| plan.from_json(std::hint::black_box(&json)).expect("valid"))
        });
        group.bench_function("prost-reflect (deserialise, encode)", |b| {
            b.iter(|| {
                let mut deserializer =
                    serde_json::Deserializer::from_slice(std::hint::black_box(&json));
                let message = prost_reflect::DynamicMessage::deserialize_with_options(
                    descriptor.clone(),
                    &mut deserializer,
                    &options,
                )
                .expect("valid");
                message.encode_to_vec()
            })
        });
        group.finish();
    }
}

fn answers(c: &mut Criterion) {
    let table = RouteTable::from_pool(&builtin_descriptors(), &[]).expect("routes build");
    let route = |method: Method, path: &str| match table.lookup(&method, path) {
        RouteLookup::Found(route, _) => route,
        _ => panic!("{path} must match"),
    };
    let profile = route(Method::GET, "/api/auth/profile");
    let projects = route(Method::GET, "/api/projects");
    let cases = [
        (
            "GET /api/auth/profile",
            profile.clone(),
            encoded_answer(
                &profile,
                &serde_json::json!({
                    "userId": "u-alice", "username": "alice", "displayName": "Alice Liddell",
                    "email": "alice@example.com", "roles": ["admin", "user"],
                }),
            ),
        ),
        (
            "GET /api/projects (20 projects)",
            projects.clone(),
            encoded_answer(&projects, &page(20)),
        ),
        (
            "a 1 MB ListProjectsResponse",
            projects.clone(),
            encoded_answer(&projects, &page(5_000)),
        ),
    ];
    let old_options = prost_reflect::SerializeOptions::new().skip_default_fields(false);
    for (name, route, wire) in cases {
        let mut group = c.benchmark_group(format!("answer to JSON: {name} ({} bytes)", wire.len()));
        group.throughput(criterion::Throughput::Bytes(wire.len() as u64));
        group.bench_function("streaming writer", |b| {
            b.iter(|| {
                route
                    .answer
                    .to_json(std::hint::black_box(&wire))
                    .expect("valid")
            })
        });
        group.bench_function("prost-reflect (decode, serialise)", |b| {
            b.iter(|| {
                let message = prost_reflect::DynamicMessage::decode(
                    route.grpc_method.output(),
                    std::hint::black_box(wire.as_slice()),
                )
                .expect("valid");
                let mut out = Vec::with_capacity(256);
                message
                    .serialize_with_options(
                        &mut serde_json::Serializer::new(&mut out),
                        &old_options,
                    )
                    .expect("serialisable");
                out
            })
        });
        group.finish();
    }
}

criterion_group!(benches, route_and_transcode, requests, answers);
criterion_main!(benches);
