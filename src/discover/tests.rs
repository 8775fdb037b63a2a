//! Tests against fake STUN servers on `127.0.0.1` / `::1` only: no test sends
//! a packet or a DNS query anywhere else.

use super::probe::{self, Target};
use super::stun;
use super::*;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The documentation address the fake NATs pretend to map to.
const PUBLIC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 7));
/// A fake server stops by itself after this, even if a test forgets it.
const MAX_LIFE: Duration = Duration::from_secs(30);
/// The slack allowed past a budget: a bound, not a benchmark.
const SLACK: Duration = Duration::from_millis(500);

/// How a fake server answers a Binding request.
#[derive(Clone, Copy)]
enum Reply {
    /// With the real source address: no NAT.
    Echo,
    /// With `PUBLIC` and the source port plus `shift`: a NAT. Servers with
    /// the same shift act as a cone NAT, different shifts as symmetric.
    Nat { shift: u16 },
    /// Never.
    Silent,
    /// With a transaction ID that is not the request's.
    WrongId,
    /// Like `Echo`, but ignores the first request (a lost packet).
    DropFirst,
}

struct FakeServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    fn start(reply: Reply) -> Self {
        Self::start_at("127.0.0.1:0", reply).expect("bind 127.0.0.1")
    }

    fn start_at(bind: &str, reply: Reply) -> Option<Self> {
        let socket = UdpSocket::bind(bind).ok()?;
        let addr = socket.local_addr().ok()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || serve(&socket, reply, &flag));
        Some(FakeServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    fn server(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(socket: &UdpSocket, reply: Reply, stop: &AtomicBool) {
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let born = Instant::now();
    let mut seen = 0;
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) && born.elapsed() < MAX_LIFE {
        let Ok((len, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Some(id) = stun::request_id(&buf[..len]) else {
            continue;
        };
        seen += 1;
        let answer = match reply {
            Reply::Echo => Some((id, from)),
            Reply::DropFirst => (seen > 1).then_some((id, from)),
            Reply::Nat { shift } => Some((id, nat(from, shift))),
            Reply::WrongId => Some(([0x5a; 12], from)),
            Reply::Silent => None,
        };
        if let Some((id, mapped)) = answer {
            let bytes = stun::binding_response(id, mapped).unwrap();
            socket.send_to(&bytes, from).unwrap();
        }
    }
}

fn nat(from: SocketAddr, shift: u16) -> SocketAddr {
    SocketAddr::new(PUBLIC, from.port().wrapping_add(shift))
}

/// A 127.0.0.1 address where nothing listens.
fn dead_server() -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().to_string()
}

fn list(servers: &[&FakeServer]) -> Vec<String> {
    servers.iter().map(|s| s.server()).collect()
}

fn assert_within(started: Instant, budget: Duration) {
    let took = started.elapsed();
    assert!(took <= budget + SLACK, "took {took:?}, budget {budget:?}");
}

/// A resolver that hangs like a dead DNS server, without asking one.
#[allow(
    clippy::unnecessary_wraps,
    reason = "a resolver: the signature the code under test calls"
)]
fn hanging_resolver(_server: &str) -> std::io::Result<Vec<SocketAddr>> {
    thread::sleep(Duration::from_secs(10));
    Ok(Vec::new())
}

// ---- parse_server_list, servers_from ----

#[test]
fn parse_trims_and_drops_empty_entries() {
    let got = parse_server_list(" stun.a.org:3478 , ,stun.b.net:19302,, ");
    assert_eq!(got, ["stun.a.org:3478", "stun.b.net:19302"]);
}

#[test]
fn parse_empty_or_blank_gives_no_servers() {
    assert!(parse_server_list("").is_empty());
    assert!(parse_server_list(" , ,").is_empty());
}

#[test]
fn parse_keeps_ipv6_with_port() {
    assert_eq!(parse_server_list("[::1]:3478"), ["[::1]:3478"]);
    assert_eq!(
        parse_server_list("127.0.0.1:1,[::1]:2"),
        ["127.0.0.1:1", "[::1]:2"]
    );
}

#[test]
fn parse_adds_default_port() {
    let got = parse_server_list("stun.a.org, 192.0.2.1, 2001:db8::1, [2001:db8::2]");
    assert_eq!(
        got,
        [
            "stun.a.org:3478",
            "192.0.2.1:3478",
            "[2001:db8::1]:3478",
            "[2001:db8::2]:3478"
        ]
    );
}

#[test]
fn servers_from_unset_gives_defaults_and_empty_gives_none() {
    assert_eq!(servers_from(None), DEFAULT_STUN_SERVERS);
    assert!(servers_from(Some("")).is_empty());
    assert_eq!(servers_from(Some("a:1")), ["a:1"]);
}

// ---- classification, without network ----

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn classify_rules() {
    let local = [IpAddr::from([192, 168, 1, 10])];
    let open = [sa("192.168.1.10:51820"), sa("192.168.1.10:51820")];
    assert_eq!(classify(&open, &local, 51820), NatType::Open);
    assert_eq!(classify(&open[..1], &local, 51820), NatType::Open);
    let cone = [sa("203.0.113.7:51820"), sa("203.0.113.7:51820")];
    assert_eq!(classify(&cone, &local, 51820), NatType::Cone);
    let symmetric = [sa("203.0.113.7:40001"), sa("203.0.113.7:40002")];
    assert_eq!(classify(&symmetric, &local, 51820), NatType::Symmetric);
    let two_ips = [sa("203.0.113.7:51820"), sa("203.0.113.8:51820")];
    assert_eq!(classify(&two_ips, &local, 51820), NatType::Symmetric);
    assert_eq!(classify(&cone[..1], &local, 51820), NatType::Unknown);
    assert_eq!(classify(&[], &local, 51820), NatType::Unknown);
}

#[test]
fn own_ip_on_another_port_is_not_open() {
    let local = [IpAddr::from([192, 168, 1, 10])];
    let moved = [sa("192.168.1.10:40000"), sa("192.168.1.10:40000")];
    assert_eq!(classify(&moved, &local, 51820), NatType::Cone);
}

#[test]
fn targets_prefer_ipv4_and_skip_duplicates() {
    let servers: Vec<String> = ["a:1", "b:1", "c:1", "d:1"].map(String::from).into();
    let found = [
        Some(vec![sa("[2001:db8::1]:1"), sa("192.0.2.1:1")]),
        Some(vec![sa("[2001:db8::2]:1")]),
        None,
        Some(vec![sa("192.0.2.1:1")]),
    ];
    let targets = probe::pick_targets(&servers, &found);
    assert_eq!(
        targets,
        [Target {
            server: "a:1".into(),
            addr: sa("192.0.2.1:1")
        }]
    );
}

// ---- nat_check against fake servers ----

#[test]
fn no_nat_is_open_and_works() {
    let (a, b) = (
        FakeServer::start(Reply::Echo),
        FakeServer::start(Reply::Echo),
    );
    let report = nat_check(&list(&[&a, &b]), None, BUDGET);
    assert_eq!(report.nat_type, NatType::Open, "{report:?}");
    assert_eq!(report.verdict, Verdict::Works);
    assert_eq!(report.preserves_port, Some(true));
    assert_eq!(report.public_ip, Some(IpAddr::from([127, 0, 0, 1])));
    assert_eq!(report.mappings.len(), 2);
    let local = report.local_addr.unwrap();
    assert_eq!(local.ip(), IpAddr::from([127, 0, 0, 1]));
    assert_eq!(report.mappings[0].mapped, local);
}

#[test]
fn same_mapping_keeping_the_port_is_cone_and_works() {
    let (a, b) = (
        FakeServer::start(Reply::Nat { shift: 0 }),
        FakeServer::start(Reply::Nat { shift: 0 }),
    );
    let port = free_port();
    let report = nat_check(&list(&[&a, &b]), Some(port), BUDGET);
    assert_eq!(report.nat_type, NatType::Cone, "{report:?}");
    assert_eq!(report.verdict, Verdict::Works);
    assert_eq!(report.preserves_port, Some(true));
    assert_eq!(report.public_ip, Some(PUBLIC));
    assert_eq!(report.local_addr.map(|a| a.port()), Some(port));
    assert!(report.advice.contains(&format!("203.0.113.7:{port}")));
}

#[test]
fn same_mapping_on_another_port_works_if_this_host_initiates() {
    let (a, b) = (
        FakeServer::start(Reply::Nat { shift: 1000 }),
        FakeServer::start(Reply::Nat { shift: 1000 }),
    );
    let report = nat_check(&list(&[&a, &b]), None, BUDGET);
    assert_eq!(report.nat_type, NatType::Cone, "{report:?}");
    assert_eq!(report.verdict, Verdict::WorksIfThisHostInitiates);
    assert_eq!(report.preserves_port, Some(false));
    // No port was asked for: the ephemeral one is not what to forward.
    assert!(
        report.advice.contains("forward the WireGuard UDP port"),
        "{}",
        report.advice
    );
}

#[test]
fn a_port_per_server_is_symmetric_and_needs_a_static_port() {
    let (a, b) = (
        FakeServer::start(Reply::Nat { shift: 0 }),
        FakeServer::start(Reply::Nat { shift: 7 }),
    );
    let port = free_port();
    let report = nat_check(&list(&[&a, &b]), Some(port), BUDGET);
    assert_eq!(report.nat_type, NatType::Symmetric, "{report:?}");
    assert_eq!(report.verdict, Verdict::NeedsStaticPort);
    assert_eq!(report.preserves_port, Some(false));
    assert!(report.advice.contains("Static Port"), "{}", report.advice);
    assert!(
        report.advice.contains(&format!("UDP {port}")),
        "{}",
        report.advice
    );
}

#[test]
fn one_answer_is_unknown_but_reports_the_public_ip() {
    let a = FakeServer::start(Reply::Nat { shift: 0 });
    let servers = vec![a.server(), dead_server()];
    let budget = Duration::from_millis(1200);
    let started = Instant::now();
    let report = nat_check(&servers, None, budget);
    assert_within(started, budget);
    assert_eq!(report.nat_type, NatType::Unknown, "{report:?}");
    assert_eq!(report.verdict, Verdict::Unknown);
    assert_eq!(report.public_ip, Some(PUBLIC));
    assert_eq!(report.mappings.len(), 1);
}

#[test]
fn dead_and_silent_servers_do_not_exceed_the_budget() {
    let silent = FakeServer::start(Reply::Silent);
    let servers = vec![dead_server(), silent.server()];
    let started = Instant::now();
    let report = nat_check(&servers, None, BUDGET);
    assert_within(started, BUDGET);
    assert_eq!(report.nat_type, NatType::Unknown);
    assert_eq!(report.public_ip, None);
    assert!(report.advice.contains("No STUN server answered"));
}

#[test]
fn dead_and_silent_servers_do_not_delay_good_ones() {
    let silent = FakeServer::start(Reply::Silent);
    let (a, b) = (
        FakeServer::start(Reply::Echo),
        FakeServer::start(Reply::Echo),
    );
    let servers = vec![dead_server(), silent.server(), a.server(), b.server()];
    let started = Instant::now();
    let report = nat_check(&servers, None, BUDGET);
    // Two answers plus the grace for the others, far below the budget.
    assert_within(started, NAT_GRACE);
    assert_eq!(report.nat_type, NatType::Open, "{report:?}");
}

#[test]
fn a_lost_request_is_retransmitted() {
    let (a, b) = (
        FakeServer::start(Reply::DropFirst),
        FakeServer::start(Reply::Echo),
    );
    let report = nat_check(&list(&[&a, &b]), None, BUDGET);
    assert_eq!(report.mappings.len(), 2, "{report:?}");
}

#[test]
fn a_busy_port_falls_back_to_an_ephemeral_one_and_says_so() {
    let holder = UdpSocket::bind("0.0.0.0:0").unwrap();
    let busy = holder.local_addr().unwrap().port();
    let (a, b) = (
        FakeServer::start(Reply::Echo),
        FakeServer::start(Reply::Echo),
    );
    let report = nat_check(&list(&[&a, &b]), Some(busy), BUDGET);
    let used = report.local_addr.unwrap().port();
    assert_ne!(used, busy);
    assert!(
        report.advice.contains(&format!("Port {busy} was in use")),
        "{}",
        report.advice
    );
}

#[test]
fn no_servers_means_unknown_at_once() {
    let started = Instant::now();
    let report = nat_check(&[], Some(51820), BUDGET);
    assert!(started.elapsed() < SLACK);
    assert_eq!(report.verdict, Verdict::Unknown);
    assert!(report.advice.contains("WGP2P_STUN_SERVERS"));
    assert_eq!(public_ip(&[], BUDGET), None);
}

#[test]
fn a_hanging_name_lookup_does_not_exceed_the_budget() {
    let budget = Duration::from_secs(1);
    let servers = vec!["hangs.invalid:3478".to_owned()];
    let started = Instant::now();
    let report = nat_check_with(&servers, None, budget, hanging_resolver);
    assert_within(started, budget);
    assert!(report.advice.contains("resolved"), "{}", report.advice);
}

#[test]
fn a_hanging_name_lookup_does_not_hide_a_literal_server() {
    let echo = FakeServer::start(Reply::Echo);
    let servers = vec!["hangs.invalid:3478".to_owned(), echo.server()];
    let budget = Duration::from_secs(1);
    let started = Instant::now();
    let ip = public_ip_with(&servers, budget, hanging_resolver);
    assert_within(started, budget);
    assert_eq!(ip, Some(IpAddr::from([127, 0, 0, 1])));
}

#[test]
fn report_serializes_with_machine_words() {
    let (a, b) = (
        FakeServer::start(Reply::Nat { shift: 0 }),
        FakeServer::start(Reply::Nat { shift: 9 }),
    );
    let report = nat_check(&list(&[&a, &b]), None, BUDGET);
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["nat_type"], "symmetric");
    assert_eq!(json["verdict"], "needs-static-port");
    assert_eq!(json["public_ip"], "203.0.113.7");
    assert_eq!(json["preserves_port"], false);
    assert!(json["mappings"][0]["mapped"].is_string());
    assert!(json["mappings"][0]["server_addr"].is_string());
}

// ---- public_ip ----

#[test]
fn public_ip_is_the_first_answer_despite_dead_and_silent_servers() {
    let silent = FakeServer::start(Reply::Silent);
    let nat = FakeServer::start(Reply::Nat { shift: 3 });
    let servers = vec![dead_server(), silent.server(), nat.server()];
    let started = Instant::now();
    assert_eq!(public_ip(&servers, BUDGET), Some(PUBLIC));
    assert!(started.elapsed() < SLACK);
}

#[test]
fn public_ip_is_none_within_budget_when_nothing_answers() {
    let silent = FakeServer::start(Reply::Silent);
    let servers = vec![dead_server(), silent.server()];
    let budget = Duration::from_millis(800);
    let started = Instant::now();
    assert_eq!(public_ip(&servers, budget), None);
    assert_within(started, budget);
}

#[test]
fn answers_to_other_transactions_are_ignored() {
    let liar = FakeServer::start(Reply::WrongId);
    let budget = Duration::from_millis(600);
    let started = Instant::now();
    assert_eq!(public_ip(&[liar.server()], budget), None);
    assert_within(started, budget);
}

#[test]
fn public_ip_over_ipv6_loopback() {
    // Fails rather than skips on a host without ::1 (IPv6 disabled on lo).
    let echo = FakeServer::start_at("[::1]:0", Reply::Echo)
        .expect("this test needs the IPv6 loopback address ::1");
    let servers = parse_server_list(&echo.server());
    assert_eq!(public_ip(&servers, BUDGET), Some("::1".parse().unwrap()));
}

#[test]
fn zero_budget_returns_at_once() {
    let echo = FakeServer::start(Reply::Echo);
    let started = Instant::now();
    let _ = public_ip(&[echo.server()], Duration::ZERO);
    let report = nat_check(&[echo.server()], None, Duration::ZERO);
    assert!(started.elapsed() < SLACK);
    assert_eq!(report.verdict, Verdict::Unknown);
}

// ---- the wire format ----

#[test]
fn request_round_trips_and_ids_differ() {
    let id = stun::new_transaction_id().unwrap();
    assert_ne!(id, stun::new_transaction_id().unwrap());
    let request = stun::binding_request(id).unwrap();
    assert_eq!(request.len(), 20, "a bare header");
    assert_eq!(stun::request_id(&request), Some(id));
    let mapped = sa("203.0.113.7:51820");
    let response = stun::binding_response(id, mapped).unwrap();
    assert_eq!(stun::mapped_address(&response, id), Some(mapped));
    assert_eq!(stun::mapped_address(&response, [0; 12]), None);
    assert_eq!(stun::mapped_address(&request, id), None, "not a response");
    assert_eq!(stun::mapped_address(b"garbage", id), None);
}

fn free_port() -> u16 {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket.local_addr().unwrap().port()
}
