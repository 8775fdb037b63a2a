//! wg(8) as the oracle of the config format: generated configs (comments
//! after values and headers, mixed-case keys, tabs, CRLF, repeated and
//! prefix-less AllowedIPs, blank and comment lines, wg-quick's own keys,
//! a key in two `[Peer]` sections, unknown keys and bad values now and
//! then) go through
//! `wg-quick strip FILE | wg setconf IFACE` on a real wireguard-go
//! interface in a lab namespace, read back with `wg show IFACE dump`, and
//! through `wgp2p status --json` (`WGP2P_SERVICE=none`, a config dir of their
//! own). What wg refuses wgp2p must refuse; for what both accept, the peer
//! sets (keys, allowed IPs, endpoints, preshared key present, keepalive)
//! must be equal.
//!
//! `WGP2P_DIFF_CASES` sets the number of configs (default 2000);
//! `scripts/fuzz.sh` runs far more.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ipnet::IpNet;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use wgp2p_lab::{Lab, WGP2P};

const IFACE: &str = "wgdiff";
/// The interface name of the model's config dirs: nothing by that name
/// runs in the test's namespace, so status reads the config alone.
const MODEL_IFACE: &str = "wgmodel";
const BATCH: usize = 200;

fn lead_ws() -> impl Strategy<Value = &'static str> {
    prop_oneof![6 => Just(""), 1 => Just(" "), 1 => Just("\t"), 1 => Just("  \t")]
}

fn ws() -> impl Strategy<Value = &'static str> {
    prop_oneof![2 => Just(" "), 2 => Just(""), 1 => Just("\t"), 1 => Just(" \t ")]
}

fn comment() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        6 => Just(""),
        1 => Just(" # note"),
        1 => Just("\t#x = y"),
        1 => Just("#"),
        1 => Just(" # [Peer]"),
    ]
}

/// `key` as written: usually as documented, sometimes in another case.
fn spelled(key: &'static str) -> impl Strategy<Value = String> {
    let (head, tail) = key.split_at(key.len() / 2);
    prop_oneof![
        12 => Just(key.to_string()),
        3 => Just(key.to_ascii_lowercase()),
        3 => Just(key.to_ascii_uppercase()),
        // wg(8) deletes every blank, wg-quick only trims: `Public Key`
        // is a key for one and not the other.
        1 => Just(format!("{head} {tail}")),
    ]
}

fn line(key: &'static str, value: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (lead_ws(), spelled(key), ws(), ws(), value, ws(), comment()).prop_map(
        |(lead, key, a, b, value, c, comment)| format!("{lead}{key}{a}={b}{value}{c}{comment}"),
    )
}

fn key_text(bytes: [u8; 32]) -> String {
    BASE64.encode(bytes)
}

fn some_key() -> impl Strategy<Value = String> {
    any::<[u8; 32]>()
        .prop_filter("non-zero", |b| *b != [0; 32])
        .prop_map(key_text)
}

/// One AllowedIPs entry of peer `i`: its own range, with or without a
/// prefix. `long`: prefixes of /16 (IPv4) and /32 (IPv6) or longer, so no
/// network of peer `i` is, masked, one of another peer's.
fn allowed_ip(i: u8, long: bool) -> impl Strategy<Value = String> {
    let (v4, v6) = if long { (16u8, 32u8) } else { (8, 16) };
    prop_oneof![
        200 => (any::<u8>(), 1u8..255, prop::option::of(v4..=32))
            .prop_map(move |(a, b, p)| match p {
                Some(p) => format!("10.{i}.{a}.{b}/{p}"),
                None => format!("10.{i}.{a}.{b}"),
            }),
        80 => (1u16.., prop::option::of(v6..=128))
            .prop_map(move |(a, p)| match p {
                Some(p) => format!("fd00:{i:x}::{a:x}/{p}"),
                None => format!("fd00:{i:x}::{a:x}"),
            }),
        1 => prop_oneof![
            Just("10.0.0.1/33".to_string()),
            Just("10.0.0".to_string()),
            Just("fd00::1/129".to_string()),
            Just("10.0.0.1/".to_string()),
            Just("nope".to_string()),
        ],
    ]
}

fn allowed_ips(i: u8, long: bool) -> impl Strategy<Value = String> {
    prop_oneof![
        60 => (
            prop::collection::vec(allowed_ip(i, long), 1..4),
            prop_oneof![Just(","), Just(", "), Just(" , ")],
        )
            .prop_map(|(ips, sep)| ips.join(sep)),
        // Nothing after `=`: wg refuses the line.
        1 => Just(String::new()),
    ]
}

fn endpoint() -> impl Strategy<Value = String> {
    prop_oneof![
        60 => (1u8..255, 1u16..).prop_map(|(a, port)| format!("192.0.2.{a}:{port}")),
        30 => (1u16.., 1u16..).prop_map(|(a, port)| format!("[2001:db8::{a:x}]:{port}")),
        // A link-local address with its zone (`lo` exists in the oracle's
        // namespace; wg shows the endpoint without it).
        3 => (1u16.., 1u16..).prop_map(|(a, port)| format!("[fe80::{a:x}%lo]:{port}")),
        // A UDP service name as port (getaddrinfo: `domain` is 53), and
        // one the services database does not know (wg refuses it).
        2 => (1u8..255, prop_oneof![Just("domain"), Just("nosuchsvc")])
            .prop_map(|(a, port)| format!("192.0.2.{a}:{port}")),
        1 => prop_oneof![
            Just("192.0.2.1".to_string()),
            Just("192.0.2.1:".to_string()),
            Just("[2001:db8::1]".to_string()),
        ],
        // IPv4 in inet_aton's other forms (getaddrinfo reads them), and a
        // zone naming no interface (getaddrinfo fails on it).
        2 => prop_oneof![
            Just("3221225986:51820".to_string()),
            Just("192.0.514:51820".to_string()),
            Just("[fe80::1%nosuchif]:51820".to_string()),
            Just("[fe80::1%1]:51820".to_string()),
        ],
    ]
}

fn keepalive() -> impl Strategy<Value = String> {
    prop_oneof![
        40 => (0u16..).prop_map(|k| k.to_string()),
        20 => (1u16..60).prop_map(|k| k.to_string()),
        5 => Just("off".to_string()),
        5 => Just("OFF".to_string()),
        5 => Just("007".to_string()),
        1 => prop_oneof![
            Just("65536".to_string()),
            Just("x".to_string()),
            Just("-1".to_string()),
        ],
    ]
}

fn header(name: &'static str) -> impl Strategy<Value = String> {
    let inner = prop_oneof![
        20 => spelled(name),
        1 => Just(format!(" {name} ")),
    ];
    (lead_ws(), inner, comment(), ws())
        .prop_map(|(lead, name, comment, tail)| format!("{lead}[{name}]{tail}{comment}"))
}

/// The lines of peer `i`: a PublicKey (now and then missing or bad), one
/// to three AllowedIPs lines and the optional keys, in any order.
fn peer(i: u8) -> impl Strategy<Value = Vec<String>> {
    peer_in(i, false)
}

/// Two `[Peer]` sections with one key (a pasted section whose key was not
/// changed): wg(8) holds one peer, the later section setting what it
/// writes and replacing the allowed IPs. Peer 9's range, long prefixes: a
/// network the later section drops is then no other peer's.
fn twins() -> impl Strategy<Value = (Vec<String>, Vec<String>)> {
    (peer_in(9, true), peer_in(9, true)).prop_map(|(first, mut second)| {
        let key = first.iter().find(|l| l.starts_with("PublicKey"));
        if let (Some(key), Some(at)) = (key, second.iter().position(|l| l.starts_with("PublicKey")))
        {
            second[at].clone_from(key);
        }
        (first, second)
    })
}

fn peer_in(i: u8, long: bool) -> impl Strategy<Value = Vec<String>> {
    let public_key = prop_oneof![
        100 => any::<[u8; 31]>().prop_map(move |rest| {
            let mut bytes = [i + 1; 32];
            bytes[1..].copy_from_slice(&rest);
            Some(key_text(bytes))
        }),
        1 => Just(None),
        1 => Just(Some("nope".to_string())),
    ];
    (
        header("Peer"),
        public_key,
        prop::collection::vec(line("AllowedIPs", allowed_ips(i, long)), 0..4),
        prop::option::of(line("Endpoint", endpoint())),
        prop::option::of(line("PersistentKeepalive", keepalive())),
        prop::option::of(line(
            "PresharedKey",
            prop_oneof![60 => some_key(), 1 => Just("abc".to_string())],
        )),
        prop::option::weighted(0.3, Just(format!("# Name = peer{i}"))),
        prop::option::weighted(0.01, line("Foo", Just("bar".to_string()))),
        prop::collection::vec(filler(), 0..3),
        ws(),
    )
        .prop_flat_map(
            |(header, key, allowed, endpoint, keepalive, psk, name, unknown, filler, kws)| {
                let mut lines: Vec<String> = Vec::new();
                if let Some(key) = key {
                    lines.push(format!("PublicKey{kws}={kws}{key}"));
                }
                lines.extend(allowed);
                lines.extend(endpoint);
                lines.extend(keepalive);
                lines.extend(psk);
                lines.extend(name);
                lines.extend(unknown);
                lines.extend(filler);
                (Just(header), Just(lines).prop_shuffle())
            },
        )
        .prop_map(|(header, body)| {
            let mut all = vec![header];
            all.extend(body);
            all
        })
}

/// Blank and comment lines.
fn filler() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("   ".to_string()),
        Just("# a comment".to_string()),
        Just("\t# indented = comment".to_string()),
        Just("### begin x ###".to_string()),
    ]
}

fn interface() -> impl Strategy<Value = Vec<String>> {
    (
        header("Interface"),
        prop::option::weighted(0.9, line("PrivateKey", some_key())),
        prop::option::weighted(
            0.7,
            line(
                "ListenPort",
                prop_oneof![
                    100 => (1024u16..).prop_map(|p| p.to_string()),
                    1 => Just("x".to_string()),
                    // A UDP service name: getaddrinfo reads it as its port.
                    1 => Just("domain".to_string()),
                    1 => Just("70000".to_string()),
                    1 => Just(String::new()),
                ],
            ),
        ),
        prop::option::weighted(
            0.2,
            line(
                "FwMark",
                prop_oneof![
                    Just("0x10".to_string()),
                    Just("off".to_string()),
                    Just("123".to_string())
                ],
            ),
        ),
        prop::option::weighted(0.6, line("Address", Just("10.99.0.1/24".to_string()))),
        prop::option::weighted(0.2, line("DNS", Just("10.99.0.1, lan".to_string()))),
        prop::option::weighted(0.2, line("MTU", Just("1420".to_string()))),
        prop::option::weighted(0.2, line("Table", Just("off".to_string()))),
        prop::option::weighted(0.2, Just("PostUp = echo up # with a comment".to_string())),
        prop::option::weighted(
            0.2,
            line(
                "SaveConfig",
                prop_oneof![
                    40 => Just("true".to_string()),
                    40 => Just("false".to_string()),
                    1 => Just("maybe".to_string()),
                ],
            ),
        ),
        prop::option::weighted(0.01, line("Foo", Just("bar".to_string()))),
        prop::collection::vec(filler(), 0..3),
    )
        .prop_flat_map(
            |(
                header,
                key,
                port,
                mark,
                address,
                dns,
                mtu,
                table,
                post_up,
                save,
                unknown,
                filler,
            )| {
                let lines: Vec<String> = [
                    key, port, mark, address, dns, mtu, table, post_up, save, unknown,
                ]
                .into_iter()
                .flatten()
                .chain(filler)
                .collect();
                (Just(header), Just(lines).prop_shuffle())
            },
        )
        .prop_map(|(header, body)| {
            let mut all = vec![header];
            all.extend(body);
            all
        })
}

fn config() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(filler(), 0..3),
        prop::option::weighted(0.9, interface()),
        (0u8..5).prop_flat_map(|n| (0..n).map(peer).collect::<Vec<_>>()),
        prop::option::weighted(0.1, (twins(), any::<prop::sample::Index>())),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(preamble, interface, mut peers, twins, crlf, final_newline)| {
                if let Some(((first, second), at)) = twins {
                    peers.insert(at.index(peers.len() + 1), first);
                    peers.push(second);
                }
                let mut lines = preamble;
                lines.extend(interface.into_iter().flatten());
                lines.extend(peers.into_iter().flatten());
                let eol = if crlf { "\r\n" } else { "\n" };
                let mut text = lines.join(eol);
                if final_newline {
                    text.push_str(eol);
                }
                text
            },
        )
}

/// A peer as wg(8) holds it.
#[derive(Debug, PartialEq, Eq)]
struct WgPeer {
    allowed_ips: BTreeSet<IpNet>,
    endpoint: Option<SocketAddr>,
    preshared_key: bool,
    keepalive: Option<u16>,
}

/// `wg show IFACE dump`: the peers by key.
fn parse_dump(dump: &str) -> BTreeMap<String, WgPeer> {
    dump.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert!(f.len() >= 8, "unexpected dump line {l:?}");
            let allowed_ips = match f[3] {
                "(none)" => BTreeSet::new(),
                list => list
                    .split(',')
                    .map(|n| n.parse().expect("dump net"))
                    .collect(),
            };
            let peer = WgPeer {
                allowed_ips,
                endpoint: (f[2] != "(none)").then(|| f[2].parse().expect("dump endpoint")),
                preshared_key: f[1] != "(none)",
                keepalive: (f[7] != "off").then(|| f[7].parse().expect("dump keepalive")),
            };
            (f[0].to_string(), peer)
        })
        .collect()
}

/// wgp2p's `status --json` rows turned into what the device would hold:
/// allowed IPs masked to their network, a network given to a later peer
/// taken from an earlier one (the kernel's routing table keeps one owner).
fn model_peers(json: &str) -> BTreeMap<String, WgPeer> {
    let report: serde_json::Value = serde_json::from_str(json).expect("status JSON");
    let rows = report["peers"].as_array().expect("peers").clone();
    let rows: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["in_config"] == true && r["via"].is_null())
        .collect();
    let mut owner: HashMap<IpNet, usize> = HashMap::new();
    let nets: Vec<Vec<IpNet>> = rows
        .iter()
        .map(|r| {
            r["allowed_ips"]
                .as_array()
                .expect("allowed_ips")
                .iter()
                .map(|n| {
                    n.as_str()
                        .expect("net")
                        .parse::<IpNet>()
                        .expect("net")
                        .trunc()
                })
                .collect()
        })
        .collect();
    for (i, list) in nets.iter().enumerate() {
        for net in list {
            owner.insert(*net, i);
        }
    }
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let endpoint = r["endpoint"].as_str().map(|e| {
                // wg shows an endpoint without its zone.
                let unzoned = |mut a: SocketAddr| {
                    if let SocketAddr::V6(v6) = &mut a {
                        v6.set_scope_id(0);
                    }
                    a
                };
                e.parse::<SocketAddr>().map(unzoned).unwrap_or_else(|_| {
                    // inet_aton's forms (3221225986:51820): what wg's
                    // getaddrinfo makes of them.
                    if !e.contains('%')
                        && let Some(addr) = std::net::ToSocketAddrs::to_socket_addrs(e)
                            .ok()
                            .and_then(|mut a| a.next())
                    {
                        return addr;
                    }
                    let (host, port) = e.rsplit_once(':').expect("host:port");
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    let host = host.split('%').next().expect("an address");
                    let ip: IpAddr = host.parse().expect("endpoint address");
                    let port = match port {
                        "domain" => 53,
                        digits => digits.parse().expect("port"),
                    };
                    SocketAddr::new(ip, port)
                })
            });
            let peer = WgPeer {
                allowed_ips: nets[i].iter().filter(|n| owner[*n] == i).copied().collect(),
                endpoint,
                preshared_key: r["preshared_key"] == true,
                keepalive: r["keepalive"]
                    .as_u64()
                    .and_then(|k| u16::try_from(k).ok())
                    .filter(|k| *k > 0),
            };
            (r["public_key"].as_str().expect("key").to_string(), peer)
        })
        .collect()
}

/// What wgp2p says of a config: `Ok(peers)` or `Err(message)`.
fn model(dir: &Path, index: usize, text: &str) -> Result<BTreeMap<String, WgPeer>, String> {
    use std::os::unix::fs::PermissionsExt;
    let conf_dir = dir.join(format!("m{index}"));
    std::fs::create_dir_all(&conf_dir).expect("model dir");
    std::fs::set_permissions(&conf_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let conf = conf_dir.join(format!("{MODEL_IFACE}.conf"));
    std::fs::write(&conf, text).expect("model conf");
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = Command::new(WGP2P.as_str())
        .args(["--json", "--interface", MODEL_IFACE, "--config-dir"])
        .arg(&conf_dir)
        .arg("status")
        .env("WGP2P_SERVICE", "none")
        .env("WGP2P_STUN_SERVERS", "")
        .output()
        .expect("run wgp2p");
    if out.status.success() {
        Ok(model_peers(&String::from_utf8_lossy(&out.stdout)))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn wgp2p_reads_every_config_as_wg_does() {
    // The generator's strategy types are deep: build them on a big stack.
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(differential)
        .expect("spawn the test thread")
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

#[allow(
    clippy::too_many_lines,
    reason = "one differential run, read top to bottom"
)]
fn differential() {
    let cases: usize = std::env::var("WGP2P_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let lab = Lab::new();
    let host = lab.public_host("oracle");
    let (private, _) = wgp2p_lab::wg_keypair();
    host.write_file(
        &format!("/etc/wireguard/{IFACE}.conf"),
        &format!("[Interface]\nPrivateKey = {private}\n"),
    );
    host.run(&["wg-quick", "up", IFACE])
        .expect_ok("wg-quick up the oracle interface");

    let work = tempfile::Builder::new()
        .prefix("wgp2p-diff")
        .tempdir()
        .expect("temp dir");
    let mut runner = TestRunner::default();
    let strategy = config();
    let mut disagreements: Vec<String> = Vec::new();
    let (mut accepted, mut refused) = (0usize, 0usize);
    let mut done = 0usize;
    while done < cases {
        let batch_len = BATCH.min(cases - done);
        let batch = work.path().join(format!("b{done}"));
        std::fs::create_dir_all(&batch).expect("batch dir");
        let configs: Vec<String> = (0..batch_len)
            .map(|_| strategy.new_tree(&mut runner).expect("a config").current())
            .collect();
        for (i, text) in configs.iter().enumerate() {
            std::fs::write(batch.join(format!("c{i}.conf")), text).expect("write config");
        }
        // wg-quick strip is a shell script: run several at once, then feed
        // each result to the one interface in turn (setconf replaces every
        // peer, so one interface serves every config). wg retries a lookup
        // that failed in a way it deems transient (an unknown service name
        // as port is one) 15 times over about a minute: its verdict is the
        // same at the first try, so it gets one.
        let script = format!(
            "cd \"$1\" && chmod 600 c*.conf && \
             ls c*.conf | xargs -P 8 -I{{}} sh -c 'wg-quick strip ./{{}} > {{}}.s 2>/dev/null; echo $? > {{}}.src' && \
             for f in c*.conf; do \
               if [ \"$(cat $f.src)\" = 0 ] && WG_ENDPOINT_RESOLUTION_RETRIES=0 wg setconf {IFACE} $f.s 2>/dev/null; then \
                 wg show {IFACE} dump > $f.dump; \
               else echo refused > $f.dump; fi; \
             done"
        );
        let status = host
            .command(&[
                "sh",
                "-c",
                &script,
                "sh",
                batch.to_str().expect("utf-8 path"),
            ])
            .status()
            .expect("run the oracle");
        assert!(status.success(), "the oracle script failed");
        let outcomes: Vec<Result<BTreeMap<String, WgPeer>, ()>> = (0..batch_len)
            .map(|i| {
                let dump = std::fs::read_to_string(batch.join(format!("c{i}.conf.dump")))
                    .expect("oracle output");
                if dump.trim() == "refused" {
                    Err(())
                } else {
                    Ok(parse_dump(&dump))
                }
            })
            .collect();
        // The model, four processes at a time.
        let models: Vec<Result<BTreeMap<String, WgPeer>, String>> = std::thread::scope(|scope| {
            let chunks: Vec<_> = (0..batch_len)
                .collect::<Vec<_>>()
                .chunks(batch_len.div_ceil(4).max(1))
                .map(<[usize]>::to_vec)
                .map(|indexes| {
                    let configs = &configs;
                    let batch = &batch;
                    scope.spawn(move || {
                        indexes
                            .into_iter()
                            .map(|i| (i, model(batch, i, &configs[i])))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut all: Vec<_> = chunks
                .into_iter()
                .flat_map(|h| h.join().expect("model thread"))
                .collect();
            all.sort_by_key(|(i, _)| *i);
            all.into_iter().map(|(_, m)| m).collect()
        });
        for (i, (oracle, model)) in outcomes.iter().zip(&models).enumerate() {
            let verdict = match (oracle, model) {
                (Err(()), Err(_)) => {
                    refused += 1;
                    None
                }
                (Ok(wg), Ok(ours)) if wg == ours => {
                    accepted += 1;
                    None
                }
                (Ok(wg), Ok(ours)) => {
                    Some(format!("peer sets differ:\nwg:    {wg:?}\nwgp2p: {ours:?}"))
                }
                (Ok(_), Err(e)) => Some(format!("wg accepts, wgp2p refuses: {e}")),
                (Err(()), Ok(_)) => Some("wg refuses, wgp2p accepts".to_string()),
            };
            if let Some(v) = verdict {
                let mut report = String::new();
                let _ = write!(report, "{v}\nconfig: {:?}", configs[i]);
                disagreements.push(report);
            }
        }
        done += batch_len;
        std::fs::remove_dir_all(&batch).expect("clean the batch");
    }
    host.run(&["wg-quick", "down", IFACE])
        .expect_ok("wg-quick down the oracle interface");
    println!(
        "differential: {done} configs, {accepted} accepted by both with equal peer sets, {refused} refused by both, {} disagreements",
        disagreements.len()
    );
    assert!(
        disagreements.is_empty(),
        "{} of {done} configs disagree; the first:\n{}",
        disagreements.len(),
        disagreements
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    assert!(
        accepted > done / 4 && refused > 0,
        "the generator must make both kinds"
    );
}
