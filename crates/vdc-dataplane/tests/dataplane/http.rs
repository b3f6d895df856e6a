//! The HTTP proxy: per-request balancing, streaming, errors, passive health,
//! live reconfiguration, least-outstanding, latency-aware balancing,
//! draining.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use vdc_dataplane::{Backends, DataPlane, DataPlaneConfig, Endpoint, Protocol};

use crate::support::{
    any_port, dead_addr, dies_on_second_request, endpoints, eventually, get, held_body,
    held_http_backend, http_backend, listening, scripted, spec, streamed, Backend, Client,
};

async fn three_backends(delay_of_last: Duration) -> [Backend; 3] {
    [
        http_backend("shop/web/0", Duration::ZERO).await,
        http_backend("shop/web/1", Duration::ZERO).await,
        http_backend("shop/web/2", delay_of_last).await,
    ]
}

/// Sends `n` GETs one after another on `client`; counts answers by body.
async fn tally(client: &mut Client, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for i in 0..n {
        let (status, body) = client
            .get("/")
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(status, StatusCode::OK, "request {i}: {body}");
        *counts.entry(body).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_keepalive_connection_spreads_over_all_replicas() {
    let webs = three_backends(Duration::ZERO).await;
    let (data_plane, backends, addr) = listening(Protocol::Http, &webs).await;

    let mut client = Client::connect(addr).await;
    let counts = tally(&mut client, 300).await;
    // Every replica is used. Not evenly: the balancer prefers whichever has
    // answered fastest lately, and between identical replicas on loopback
    // that is noise.
    assert_eq!(counts.len(), 3, "{counts:?}");

    let served: u64 = backends
        .endpoint_stats()
        .iter()
        .map(|(_, s)| s.served)
        .sum();
    assert_eq!(served, 300);
    let listeners = data_plane.listeners();
    assert!(
        eventually(|| data_plane.listeners()[0].stats.responses_2xx == 300).await,
        "{listeners:?}"
    );
    let stats = data_plane.listeners()[0].stats;
    assert_eq!(stats.connections_total, 1);
    assert_eq!(stats.requests, 300);
    assert!(stats.bytes_in > 0 && stats.bytes_out > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_bodies_stream_through() {
    let webs = [http_backend("shop/web/0", Duration::ZERO).await];
    let (_data_plane, _backends, addr) = listening(Protocol::Http, &webs).await;
    let mut client = Client::connect(addr).await;

    let (chunks, body) = streamed();
    let request = Request::post("/echo")
        .header("host", "shop.example")
        .body(body)
        .expect("a valid request");
    chunks
        .send(Bytes::from_static(b"hello "))
        .await
        .expect("first chunk");
    let response = client.send(request).await.expect("response head");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();

    // The first chunk comes back before the second is sent: nothing on the
    // way waits for the whole body.
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("first chunk echoed while the request is still open")
        .expect("a frame")
        .expect("no error");
    assert_eq!(first.into_data().ok(), Some(Bytes::from_static(b"hello ")));

    chunks
        .send(Bytes::from_static(b"world"))
        .await
        .expect("second chunk");
    drop(chunks);
    let rest = body.collect().await.expect("rest of the body").to_bytes();
    assert_eq!(rest, Bytes::from_static(b"world"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_set_answers_503_naming_the_target() {
    let (data_plane, _backends, addr) = listening(Protocol::Http, &[]).await;
    let mut client = Client::connect(addr).await;
    let (status, body) = client.get("/").await.expect("an answer");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "no ready instance for shop/web.in\n");
    // The connection stays usable.
    let (status, _) = client.get("/").await.expect("a second answer");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let stats = data_plane.listeners()[0].stats;
    assert_eq!((stats.responses_5xx, stats.errors_no_backend), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_tries_failing_answers_502_naming_the_cause() {
    let (_data_plane, backends, addr) = listening(Protocol::Http, &[]).await;
    backends.set(vec![Endpoint {
        instance: "shop/web/0".into(),
        addr: dead_addr().await,
    }]);
    let mut client = Client::connect(addr).await;
    let (status, body) = client.get("/").await.expect("an answer");
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        body.starts_with("cannot connect to shop/web/0 at 127.0.0.1:"),
        "{body}"
    );
    assert!(body.contains("refused"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_times_out_with_504() {
    let slow = [http_backend("shop/web/0", Duration::from_secs(2)).await];
    let set = Backends::new("shop/web.in");
    set.set(endpoints(&slow));
    let data_plane = DataPlane::with_config(DataPlaneConfig {
        response_timeout: Duration::from_millis(200),
        ..DataPlaneConfig::default()
    })
    .expect("the data plane starts");
    let addr = data_plane
        .bind(
            "shop/lb.out",
            any_port(),
            spec("shop/lb.out", Protocol::Http, &set),
        )
        .await
        .expect("bind");
    let mut client = Client::connect(addr).await;
    let (status, body) = client.get("/").await.expect("an answer");
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(body.contains("did not answer within 200ms"), "{body}");
    assert_eq!(data_plane.listeners()[0].stats.errors_timeout, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_loses_no_requests() {
    // The one to be killed is the fastest, so the balancer keeps choosing
    // it until it dies, and has to notice.
    let web0 = http_backend("shop/web/0", Duration::from_millis(2)).await;
    let web1 = http_backend("shop/web/1", Duration::from_millis(2)).await;
    let web2 = http_backend("shop/web/2", Duration::ZERO).await;
    let killed = web2.endpoint();
    let webs = [web0, web1];
    let set = Backends::new("shop/web.in");
    let mut all = endpoints(&webs);
    all.push(killed.clone());
    set.set(all);
    let data_plane = DataPlane::new().expect("the data plane starts");
    let addr = data_plane
        .bind(
            "shop/lb.out",
            any_port(),
            spec("shop/lb.out", Protocol::Http, &set),
        )
        .await
        .expect("bind");

    // Warm up so every endpoint has pooled connections, then kill one the
    // hard way: its listener and open connections vanish, and the agent
    // has not noticed yet (the set still lists it).
    let mut client = Client::connect(addr).await;
    let warm = tally(&mut client, 30).await;
    assert!(warm.contains_key(&killed.instance), "{warm:?}");
    web2.kill().await;

    let mut failures = 0;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..200 {
        match client.get("/").await {
            Ok((StatusCode::OK, body)) => *counts.entry(body).or_default() += 1,
            _ => failures += 1,
        }
    }
    assert_eq!(failures, 0, "{counts:?}");
    assert!(!counts.contains_key(&killed.instance), "{counts:?}");
    let stats = set.endpoint_stats();
    let dead = stats.iter().find(|(e, _)| *e == killed).map(|(_, s)| *s);
    assert!(
        dead.is_some_and(|s| s.ejected && s.failures >= 1),
        "{stats:?}"
    );
    let listener = data_plane.listeners()[0].stats;
    assert!(listener.retries >= 1, "{listener:?}");
    assert_eq!(listener.responses_5xx, 0, "{listener:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safe_request_lost_on_a_reused_connection_is_sent_again() {
    let flaky = [dies_on_second_request("shop/web/0").await];
    let (data_plane, _set, addr) = listening(Protocol::Http, &flaky).await;
    let mut client = Client::connect(addr).await;
    // The first GET leaves a pooled connection; the second goes out on it,
    // is swallowed, and is sent again on a new connection.
    for i in 0..2 {
        let (status, body) = client.get("/").await.expect("an answer");
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "ok"),
            "request {i}"
        );
    }
    // A request with a body is not sent twice: the client hears of it.
    let request = Request::post("/")
        .header("host", "shop.example")
        .body(crate::support::full("order #1"))
        .expect("a valid request");
    let response = client.send(request).await.expect("an answer");
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let stats = data_plane.listeners()[0].stats;
    assert_eq!((stats.requests, stats.errors_reset), (3, 1), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_swaps_backends_live_without_rebinding() {
    let [web0, web1, web2] = three_backends(Duration::ZERO).await;
    let (data_plane, set, addr) = listening(Protocol::Http, std::slice::from_ref(&web0)).await;
    let mut client = Client::connect(addr).await;
    assert_eq!(tally(&mut client, 10).await.get("shop/web/0"), Some(&10));

    set.set(vec![web1.endpoint(), web2.endpoint()]);
    let counts = tally(&mut client, 40).await;
    assert!(!counts.contains_key("shop/web/0"), "{counts:?}");
    assert_eq!(counts.len(), 2, "{counts:?}");

    let listeners = data_plane.listeners();
    assert_eq!(listeners.len(), 1);
    assert_eq!(
        (listeners[0].addr, listeners[0].stats.connections_total),
        (addr, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_the_same_key_again_replaces_the_spec_in_place() {
    let [web0, web1, _web2] = three_backends(Duration::ZERO).await;
    let (data_plane, _set, addr) = listening(Protocol::Http, std::slice::from_ref(&web0)).await;
    let mut client = Client::connect(addr).await;
    assert_eq!(client.get("/").await.expect("answer").1, "shop/web/0");

    let other = Backends::new("shop/api.in");
    other.set(vec![web1.endpoint()]);
    let again = data_plane
        .bind(
            "shop/lb.out",
            addr,
            spec("shop/lb.out", Protocol::Http, &other),
        )
        .await
        .expect("rebind");
    assert_eq!(again, addr);
    // Same client connection, new target.
    assert_eq!(client.get("/").await.expect("answer").1, "shop/web/1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_rewritten_for_the_upstream_hop() {
    let webs = [http_backend("shop/web/0", Duration::ZERO).await];
    let (_data_plane, _set, addr) = listening(Protocol::Http, &webs).await;
    let mut client = Client::connect(addr).await;
    let request = Request::get("/headers")
        .header("host", "shop.example")
        .header("connection", "x-hop")
        .header("x-hop", "1")
        .header("x-end", "2")
        .body(crate::support::empty())
        .expect("a valid request");
    let response = client.send(request).await.expect("response");
    assert_eq!(response.headers()["x-backend"], "shop/web/0");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let seen = String::from_utf8_lossy(&body);
    assert!(seen.contains("host: shop.example\n"), "{seen}");
    assert!(seen.contains("x-end: 2\n"), "{seen}");
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\n"), "{seen}");
    assert!(
        !seen.contains("x-hop") && !seen.contains("connection"),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_gets_markedly_fewer_concurrent_requests() {
    let webs = three_backends(Duration::from_millis(200)).await;
    let (_data_plane, _set, addr) = listening(Protocol::Http, &webs).await;

    // 100 requests arriving over about as long as the slow backend takes to
    // answer one, so they overlap: a balancer that looks at outstanding
    // requests sees the slow one's pile up and sends elsewhere. (A burst in
    // which all arrive before any is answered cannot be told apart by load.)
    let mut requests = Vec::new();
    for _ in 0..100 {
        requests.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await;
            client.get("/").await.expect("an answer")
        }));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for request in requests {
        let (status, body) = request.await.expect("request task");
        assert_eq!(status, StatusCode::OK);
        *counts.entry(body).or_default() += 1;
    }
    let slow = counts.get("shop/web/2").copied().unwrap_or(0);
    let fast = counts
        .get("shop/web/0")
        .copied()
        .unwrap_or(0)
        .min(counts.get("shop/web/1").copied().unwrap_or(0));
    assert!(
        slow * 2 < fast,
        "slow got {slow}, the faster {fast} at least: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_slow_to_answer_gets_few_requests_once_measured() {
    let webs = three_backends(Duration::from_millis(40)).await;
    let (data_plane, _set, addr) = listening(Protocol::Http, &webs).await;

    // Waves of four concurrent requests, each wave once the last is
    // answered. At the start of a wave nothing is outstanding, so a
    // balancer that looked only at load would send the slow backend about
    // a quarter of them; one that measures latency, hardly any.
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(Client::connect(addr).await);
    }
    let mut answered = 0;
    for wave in 0..150 {
        let answers = futures_util::future::join_all(clients.iter_mut().map(|c| c.get("/"))).await;
        for answer in answers {
            let (status, body) = answer.unwrap_or_else(|e| panic!("wave {wave}: {e}"));
            assert_eq!(status, StatusCode::OK, "wave {wave}: {body}");
            answered += 1;
        }
    }
    assert_eq!(answered, 600);

    let served: Vec<usize> = webs.iter().map(Backend::requests).collect();
    assert_eq!(served.iter().sum::<usize>(), 600, "{served:?}");
    assert!(served[2] < 60, "the slow backend served {served:?}");
    let stats = data_plane.listeners()[0].stats;
    assert_eq!(stats.responses_5xx, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_backend_finishes_its_request_and_then_its_connections_close() {
    let (held, mut hold) = held_http_backend("shop/web/0").await;
    let web1 = http_backend("shop/web/1", Duration::ZERO).await;
    let (_data_plane, set, addr) = listening(Protocol::Http, std::slice::from_ref(&held)).await;

    // One request held mid-flight on a first upstream connection...
    let pending = tokio::spawn(async move {
        let mut client = Client::connect(addr).await;
        client.get("/hold").await
    });
    tokio::time::timeout(Duration::from_secs(5), hold.arrived.recv())
        .await
        .expect("the held request reaches the backend")
        .expect("the backend is up");
    // ...and one answered on a second, now idle in the pool.
    let mut client = Client::connect(addr).await;
    assert_eq!(client.get("/").await.expect("an answer").1, "shop/web/0");
    assert_eq!(held.open_connections(), 2);

    // The agent takes the instance out of the set.
    set.set(vec![web1.endpoint()]);
    assert_eq!(set.in_flight("shop/web/0"), 1);
    // The idle connection is closed at once, the busy one stays.
    assert!(
        eventually(|| held.open_connections() == 1).await,
        "{} connections open",
        held.open_connections()
    );
    // New requests go to the endpoint that remains.
    let counts = tally(&mut client, 20).await;
    assert_eq!(counts.get("shop/web/1"), Some(&20), "{counts:?}");
    assert_eq!(held.requests(), 2);
    assert!(!pending.is_finished());
    assert_eq!(set.in_flight("shop/web/0"), 1);

    // Answered: the client gets all of it, and the connection it came on
    // is closed rather than pooled for an endpoint that is gone.
    hold.release.send_replace(true);
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the held request is answered")
        .expect("request task")
        .expect("an answer");
    assert_eq!(status, StatusCode::OK);
    assert!(body == held_body(), "body differs ({} bytes)", body.len());
    assert!(
        eventually(|| held.open_connections() == 0).await,
        "{} connections open",
        held.open_connections()
    );
    assert!(eventually(|| set.in_flight("shop/web/0") == 0).await);
    assert_eq!(set.in_flight("shop/web/1"), 0);
}

/// What the hand-written endpoint of the framing tests answers.
fn framed_answers(head: &str) -> (Vec<u8>, bool) {
    let path = head.split(' ').nth(1).unwrap_or("/");
    let answer: &[u8] = match path {
        "/chunked" => {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-from: chunked\r\n\r\n\
              6;ext=1\r\nhello \r\n5\r\nworld\r\n0\r\nx-trailer: t\r\n\r\n"
        }
        "/interim" => {
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n\
              HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\ninterim"
        }
        "/close" => return (b"HTTP/1.0 200 OK\r\n\r\nuntil the end".to_vec(), true),
        "/garbage" => b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        "/huge-head" => {
            let mut head = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
            head.extend(std::iter::repeat_n(b'a', 70 * 1024));
            head.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
            return (head, true);
        }
        "/upload" => {
            return (
                b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo much".to_vec(),
                true,
            )
        }
        _ if head.starts_with("HEAD ") => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
        _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    };
    (answer.to_vec(), false)
}

/// The framing tests' endpoint behind a gateway, and a client of it.
async fn scripted_gateway() -> ([Backend; 1], DataPlane, Client) {
    let web = [scripted("shop/web/0", framed_answers).await];
    let (data_plane, _set, addr) = listening(Protocol::Http, &web).await;
    let client = Client::connect(addr).await;
    (web, data_plane, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_framing_reaches_the_client_whole() {
    let (_web, _data_plane, mut client) = scripted_gateway().await;

    let response = client.send(get("/chunked")).await.expect("an answer");
    assert_eq!(response.headers()["x-from"], "chunked");
    let body = response.into_body().collect().await.expect("the body");
    assert_eq!(body.to_bytes(), "hello world");

    // Interim answers stay on the upstream hop.
    let (status, body) = client.get("/interim").await.expect("an answer");
    assert_eq!((status, body.as_str()), (StatusCode::OK, "interim"));

    // HTTP/1.0 without a length: the body runs until the endpoint closes,
    // and that connection is not used again.
    let (status, body) = client.get("/close").await.expect("an answer");
    assert_eq!((status, body.as_str()), (StatusCode::OK, "until the end"));
    let (status, body) = client.get("/").await.expect("an answer");
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));

    // A HEAD answer has a length and no body; the connection carries on.
    let head = Request::head("/")
        .header("host", "shop.example")
        .body(crate::support::empty())
        .expect("a valid request");
    let response = client.send(head).await.expect("an answer");
    assert_eq!(response.headers()["content-length"], "5");
    let body = response.into_body().collect().await.expect("no body");
    assert!(body.to_bytes().is_empty());
    let (status, _) = client.get("/").await.expect("an answer");
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_not_http_from_an_endpoint_is_a_502() {
    let (_web, data_plane, mut client) = scripted_gateway().await;
    for path in ["/garbage", "/huge-head"] {
        let (status, body) = client.get(path).await.expect("an answer");
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{path}");
        assert!(body.contains("invalid response"), "{path}: {body}");
    }
    let stats = data_plane.listeners()[0].stats;
    assert_eq!(stats.errors_other, 2, "{stats:?}");
    // The endpoint is not to blame for the client's next request.
    let (status, _) = client.get("/").await.expect("an answer");
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_sent_before_the_request_body_ends_reaches_the_client() {
    let (_web, _data_plane, mut client) = scripted_gateway().await;
    let (chunks, body) = streamed();
    let request = Request::post("/upload")
        .header("host", "shop.example")
        .body(body)
        .expect("a valid request");
    chunks
        .send(Bytes::from(vec![b'x'; 16 * 1024]))
        .await
        .expect("first chunk");
    // The body is still open: the answer comes anyway.
    let response = tokio::time::timeout(Duration::from_secs(5), client.send(request))
        .await
        .expect("an answer before the body ends")
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    drop(chunks);
    let body = response.into_body().collect().await.expect("the body");
    assert_eq!(body.to_bytes(), "too much");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_dealt_to_every_worker_thread() {
    let webs = [http_backend("shop/web/0", Duration::ZERO).await];
    let set = Backends::new("shop/web.in");
    set.set(endpoints(&webs));
    let data_plane = DataPlane::with_config(DataPlaneConfig {
        threads: 3,
        ..DataPlaneConfig::default()
    })
    .expect("the data plane starts");
    assert_eq!(data_plane.threads(), 3);
    let addr = data_plane
        .bind(
            "shop/lb.out",
            any_port(),
            spec("shop/lb.out", Protocol::Http, &set),
        )
        .await
        .expect("bind");
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(Client::connect(addr).await);
    }
    for round in 0..3 {
        for (i, client) in clients.iter_mut().enumerate() {
            let (status, body) = client.get("/").await.expect("an answer");
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::OK, "shop/web/0"),
                "client {i}, round {round}"
            );
        }
    }
    let stats = data_plane.listeners()[0].stats;
    assert_eq!(
        (stats.connections_total, stats.requests),
        (6, 18),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_unframe_its_body_or_open_a_tunnel() {
    let webs = [http_backend("shop/web/0", Duration::ZERO).await];
    let (data_plane, _set, addr) = listening(Protocol::Http, &webs).await;
    let mut client = Client::connect(addr).await;
    // Were `content-length` dropped because `Connection` names it, the
    // endpoint would read the body as the start of the next request.
    let request = Request::post("/echo")
        .header("host", "shop.example")
        .header("connection", "content-length, host")
        .body(crate::support::full("order #1"))
        .expect("a valid request");
    let response = client.send(request).await.expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.expect("the body");
    assert_eq!(body.to_bytes(), "order #1");
    let (status, body) = client.get("/").await.expect("the next answer");
    assert_eq!((status, body.as_str()), (StatusCode::OK, "shop/web/0"));

    let connect = Request::connect("db.internal:5432")
        .body(crate::support::empty())
        .expect("a valid request");
    let mut tunneller = Client::connect(addr).await;
    let response = tunneller.send(connect).await.expect("an answer");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(webs[0].requests(), 2, "CONNECT never reached the endpoint");
    let stats = data_plane.listeners()[0].stats;
    assert_eq!(stats.responses_4xx, 1, "{stats:?}");
}

/// Sends `request` as raw bytes on a new connection; the answer's status
/// line, or what happened instead.
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the listener accepts");
    conn.write_all(request.as_bytes()).await.expect("sent");
    let mut answer = vec![0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut answer)).await;
    match read {
        Ok(Ok(n)) => String::from_utf8_lossy(&answer[..n])
            .lines()
            .next()
            .unwrap_or("(closed without an answer)")
            .to_owned(),
        Ok(Err(e)) => format!("(error: {e})"),
        Err(_) => "(no answer within 5 s)".to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_answered_400_not_502() {
    let webs = [http_backend("shop/web/0", Duration::ZERO).await];
    let (_data_plane, _set, addr) = listening(Protocol::Http, &webs).await;
    for (what, request) in [
        ("no Host on HTTP/1.1", "GET / HTTP/1.1\r\n\r\n"),
        (
            "two Hosts",
            "GET / HTTP/1.1\r\nHost: shop.example\r\nHost: evil.example\r\n\r\n",
        ),
        (
            "two Hosts on HTTP/1.0",
            "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        ),
        (
            "a Host that is not host[:port]",
            "GET / HTTP/1.1\r\nHost: shop.example:http\r\n\r\n",
        ),
    ] {
        let status = raw(addr, request).await;
        assert!(status.contains(" 400 "), "{what}: {status}");
    }
    assert_eq!(
        webs[0].requests(),
        0,
        "a malformed request reached the endpoint"
    );
    // HTTP/1.0 needs no Host.
    let status = raw(addr, "GET / HTTP/1.0\r\n\r\n").await;
    assert!(
        status.starts_with("HTTP/1.0 200") || status.starts_with("HTTP/1.1 200"),
        "{status}"
    );
    // A chunk size that is not hexadecimal is the client's fault.
    let status = raw(
        addr,
        "POST /echo HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(
        status.starts_with("HTTP/1.1 400"),
        "invalid chunk size: {status}"
    );
}
