//! The response cache of configured GET routes, end to end against the mock backends: hits
//! without a backend call, `Cache-Control: no-cache`, answers kept per user, and a stale answer
//! (marked) while the backend is down.

mod support;

use std::time::Duration;

use gateway::proxy::cache::CacheRouteConfig;
use mock_backends::ServiceKind;
use support::{Answer, Stack, json_request};

/// The `x-cache` header (empty when absent).
fn served(answer: &Answer) -> &str {
    answer
        .headers
        .get("x-cache")
        .map_or("", |value| value.to_str().unwrap())
}

async fn get(stack: &Stack, path: &str, token: &str, id: &str, no_cache: bool) -> Answer {
    let mut request = json_request("GET", path, Some(token), "");
    request
        .headers_mut()
        .insert("x-request-id", id.parse().unwrap());
    if no_cache {
        request
            .headers_mut()
            .insert("cache-control", "no-cache".parse().unwrap());
    }
    stack.send(request).await
}

fn reached_project(stack: &Stack, id: &str) -> bool {
    stack
        .backends
        .recent_request_ids(ServiceKind::Project)
        .contains(&id.to_owned())
}

async fn cached_stack() -> Stack {
    Stack::start_with(
        |_| {},
        |config| {
            let routes = &mut config.cache.routes;
            let shared = CacheRouteConfig {
                ttl_ms: 60_000,
                stale_ms: 0,
                per_user: false,
            };
            routes.insert("project.v1.ProjectService/ListTemplates".into(), shared);
            let per_user = CacheRouteConfig {
                ttl_ms: 200,
                stale_ms: 60_000,
                per_user: true,
            };
            routes.insert("project.v1.ProjectService/ListProjects".into(), per_user);
            let project = config.backends.get_mut("project").unwrap();
            project.breaker.enabled = false;
            project.retry.max_attempts = 1;
        },
    )
    .await
}

#[tokio::test]
async fn a_fresh_answer_is_served_without_a_backend_call_unless_the_client_says_no_cache() {
    let stack = cached_stack().await;
    let token = stack.login("alice").await;
    let first = get(&stack, "/api/projects/templates", &token, "t-1", false).await;
    assert_eq!((first.status.as_u16(), served(&first)), (200, "miss"));
    assert!(reached_project(&stack, "t-1"));

    let second = get(&stack, "/api/projects/templates", &token, "t-2", false).await;
    assert_eq!((second.status.as_u16(), served(&second)), (200, "hit"));
    assert_eq!(second.json, first.json);
    assert!(
        !reached_project(&stack, "t-2"),
        "a hit makes no backend call"
    );
    assert!(second.headers.contains_key("age"));

    let forced = get(&stack, "/api/projects/templates", &token, "t-3", true).await;
    assert_eq!(forced.headers["x-cache"], "miss");
    assert!(
        reached_project(&stack, "t-3"),
        "no-cache goes to the backend"
    );

    // Uncached routes carry no cache header.
    let other = get(&stack, "/api/simulations", &token, "s-1", false).await;
    assert_eq!(other.status, 200);
    assert!(!other.headers.contains_key("x-cache"));
}

#[tokio::test]
async fn per_user_answers_stay_with_their_user_and_a_stale_one_covers_an_outage() {
    let stack = cached_stack().await;
    let (alice, bob) = (stack.login("alice").await, stack.login("bob").await);
    let alices = get(&stack, "/api/projects", &alice, "a-1", false).await;
    let bobs = get(&stack, "/api/projects", &bob, "b-1", false).await;
    assert_eq!(
        (
            alices.headers["x-cache"].to_str().unwrap(),
            bobs.headers["x-cache"].to_str().unwrap()
        ),
        ("miss", "miss")
    );
    assert_ne!(alices.json, bobs.json, "each user sees their own projects");
    let again = get(&stack, "/api/projects", &alice, "a-2", false).await;
    assert_eq!((served(&again), &again.json), ("hit", &alices.json));

    // Past its 200 ms freshness, with Project down: alice's answer is served, marked stale.
    tokio::time::sleep(Duration::from_millis(250)).await;
    stack.backends.faults(ServiceKind::Project).set_down(true);
    let stale = get(&stack, "/api/projects", &alice, "a-3", false).await;
    assert_eq!(stale.status, 200, "{}", stale.json);
    assert_eq!(stale.headers["x-cache"], "stale");
    assert_eq!(stale.headers["warning"], "110 - \"Response is Stale\"");
    assert_eq!(stale.json, alices.json);
    // A request with nothing cached (another query is another key) gets the outage.
    get(&stack, "/api/projects?pageSize=1", &bob, "b-2", false)
        .await
        .assert_error(503, "unavailable");
}

#[tokio::test]
async fn cached_groups_must_hold_a_get_route() {
    use std::sync::Arc;

    use gateway::{App, Seams};
    use seams::{SystemClock, TokioNet};

    let seams = Seams {
        net: TokioNet,
        clock: Arc::new(SystemClock),
        seed: 1,
    };
    let build = |group: &str| {
        let mut config = gateway::Config::default();
        let rule = CacheRouteConfig {
            ttl_ms: 1_000,
            stale_ms: 0,
            per_user: true,
        };
        config.cache.routes.insert(group.to_owned(), rule);
        App::from_config(config, &seams, gateway::app::embedded_bus(1)).map(|_| ())
    };
    assert!(build("project.v1.ProjectService").is_ok());
    // CreateProject is routed, but as a POST: nothing of the group could be cached.
    let post = build("project.v1.ProjectService/CreateProject").unwrap_err();
    assert!(post.to_string().starts_with("cache.routes."), "{post}");
}
