//! Properties of the code that reads untrusted input, over generated input (proptest): route
//! lookup, JSON and query transcoding, and the WebSocket client frame. None may panic; each
//! answers with a value or its own error. The same entry points are fuzzed by `ci/fuzz.sh`.

use std::sync::OnceLock;

use gateway::{
    app::builtin_descriptors,
    realtime::hub::protocol::ClientFrame,
    routing::{RouteLookup, RouteTable},
    transcode,
};
use http::Method;
use proptest::prelude::*;

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| RouteTable::from_pool(&builtin_descriptors(), &[]).unwrap())
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::POST),
        Just(Method::PATCH),
        Just(Method::DELETE),
        Just(Method::PUT),
        Just(Method::OPTIONS),
    ]
}

/// Paths near the real ones: API prefixes, ids with escapes, dots, colons and slashes.
fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just("api".to_owned()),
        Just("projects".to_owned()),
        Just("simulations".to_owned()),
        Just("templates".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just(String::new()),
        "[a-zA-Z0-9%:._~-]{1,12}",
        "\\PC{0,8}",
    ];
    proptest::collection::vec(segment, 0..6).prop_map(|segments| format!("/{}", segments.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn route_lookup_answers_every_path(method in method(), path in path()) {
        match table().lookup(&method, &path) {
            RouteLookup::Found(route, captures) => {
                prop_assert_eq!(&route.method, &method);
                // A found route's variables are all bound, each to a value with no dot segment.
                prop_assert_eq!(captures.len(), route.template.variable_paths().count());
                prop_assert!(!gateway::routing::path_template::has_dot_segment(&path));
            }
            RouteLookup::MethodNotAllowed(allowed) => {
                prop_assert!(!allowed.contains(&method));
                // `Allow` is exactly the methods that would work on this path.
                for other in [Method::GET, Method::POST, Method::PATCH, Method::DELETE, Method::PUT] {
                    let works = matches!(table().lookup(&other, &path), RouteLookup::Found(..));
                    prop_assert_eq!(works, allowed.contains(&other), "{} {}", other, path);
                }
            }
            RouteLookup::NotFound | RouteLookup::BadPath(_) => {}
        }
    }

    #[test]
    fn transcoding_takes_any_body_and_query_without_panicking(
        route_index in 0usize..64,
        body in prop_oneof![
            "\\PC{0,64}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..64),
            Just(br#"{"name":"n","templateId":"t","steps":"9223372036854775808"}"#.to_vec()),
            Just(br#"{"project":{"name":1},"extra":[[[]]]}"#.to_vec()),
        ],
        query in proptest::option::of("[a-zA-Z_.=&%0-9-]{0,40}"),
    ) {
        let routes = table().routes();
        let route = &routes[route_index % routes.len()];
        // Whatever comes in, the answer is a message or a TranscodeError (a 400), never a panic.
        let _ = transcode::build_request(&route.request, &[], query.as_deref(), &body);
    }

    #[test]
    fn client_frames_parse_or_say_why(text in prop_oneof![
        "\\PC{0,80}",
        Just(r#"{"type":"ping","id":"1"}"#.to_owned()),
        Just(r#"{"type":"publish","data":{"x":[1,2,{"y":null}]}}"#.to_owned()),
        "\\{\"type\":\"[a-z]{0,10}\"(,\"id\":\"[a-z0-9]{0,5}\")?(,\"data\":[0-9]{1,3})?\\}",
    ]) {
        match ClientFrame::parse(&text) {
            Ok(ClientFrame::Ping { .. } | ClientFrame::Publish { .. }) => {
                prop_assert!(text.contains("ping") || text.contains("publish"));
            }
            Err(error) => prop_assert!(!error.code().is_empty()),
        }
    }
}
