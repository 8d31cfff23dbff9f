//! Route matching plus JSON-to-protobuf transcoding of a typical request, and the check of the
//! contract's field rules on it: the per-request work the gateway adds before a backend call.
//! Run: `cargo bench -p gateway --bench transcode`.

use criterion::{Criterion, criterion_group, criterion_main};
use gateway::{
    app::builtin_descriptors,
    routing::{RouteLookup, RouteTable},
    transcode,
    validate::Validation,
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
                let message =
                    transcode::build_request(&route, &captures, None, std::hint::black_box(body))
                        .expect("valid body");
                message.encode_to_vec()
            })
        },
    );

    // The rules of CreateProject: the body required, `name` required, at most 100 characters
    // and matching its pattern, `description` at most 2,000 characters.
    let validation = Validation::compile(&table).expect("enforceable rules");
    let RouteLookup::Found(route, captures) = table.lookup(&Method::POST, "/api/projects") else {
        panic!("route must match");
    };
    let message = transcode::build_request(&route, &captures, None, body).expect("valid body");
    c.bench_function(
        "validate: POST /api/projects (the transcoded body's rules)",
        |b| {
            b.iter(|| {
                validation
                    .check(&route, std::hint::black_box(&message))
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
                let message = transcode::build_request(
                    &route,
                    &captures,
                    Some("pageSize=50&pageToken=abc"),
                    b"",
                )
                .expect("valid query");
                message.encode_to_vec()
            })
        },
    );
}

criterion_group!(benches, route_and_transcode);
criterion_main!(benches);
