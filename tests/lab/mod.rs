//! A network-namespace lab for end-to-end tests of `wgp2p`.
//!
//! A [`Lab`] is a small "internet": one bridge namespace plays the public
//! network (203.0.113.0/24 and `fd00:203::/64`), [`Lab::public_host`] plugs a
//! host straight into it and [`Lab::host_behind_nat`] puts a host on a private
//! LAN behind its own NAT router. A router drops unsolicited input on its
//! public side, as home routers do (see `Lab::add_router` for why that
//! matters to hole punching). Every host gets its own network, mount and
//! UTS namespaces, so each one has a private `/run` (wireguard-go's sockets),
//! `/etc/wireguard`, `/etc/hosts` and hostname.
//!
//! Nothing in a lab is connected to the root namespace, so test traffic can
//! never leave the namespaces the lab created. Dropping the `Lab` (also while
//! unwinding from a panic) kills every process in its namespaces by PID and
//! deletes the namespaces.
//!
//! ```ignore
//! #[test]
//! #[ignore = "lab: needs root, network namespaces and the lab packages"]
//! fn two_hosts() {
//!     let lab = Lab::new(); // panics with the reason when the machine cannot
//!     let defiant = lab.public_host("defiant");
//!     let voyager = lab.host_behind_nat("voyager", NatKind::Cone);
//!     let line = defiant.install("10.15.0.1/24", &defiant.endpoint(51820));
//!     voyager.add_peer(&line);
//!     assert!(voyager.ping("10.15.0.1", Duration::from_secs(5)));
//! }
//! ```
//!
//! Every lab test carries that exact `#[ignore]`: a plain `cargo test` counts
//! it as ignored instead of passing it untested, and `scripts/test.sh` runs
//! the ignored tests (`cargo test -- --ignored`) when the machine can (root,
//! the tools of [`REQUIRED_TOOLS`]), else says how many did not run. A lab
//! test that is run where the lab cannot work fails with the reason; none
//! prints "skipped" and passes.
//!
//! This module is the reference lab. `bench/lib.sh` builds the same kind of
//! hosts in bash for the benchmarks (see its header for why); a change to
//! the host setup here belongs there too.
//!
//! It is a crate of its own (`wgp2p-lab`, a dev-dependency): every test
//! binary uses a different part of it, and as a library its public items
//! are its interface while dead private code still warns. A test binary
//! starts with `use wgp2p_lab as lab;`.

pub mod attacker;
mod cleanup;
mod container;
mod host;
mod stun;
mod wgp2p;

pub use cleanup::{Census, census, exclusive};
pub use container::Container;
pub use host::{CmdOutput, Host};
pub use stun::StunServer;
pub use wgp2p::{AddPeerLine, WGP2P, add_peer_lines, build_mesh, exchange, shell_words};

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The tools the lab (and wg-quick inside it) needs on the machine.
const REQUIRED_TOOLS: &[&str] = &[
    "ip",
    "wg",
    "wg-quick",
    "wireguard-go",
    "ping",
    "iptables",
    "nsenter",
    "unshare",
    "sysctl",
    "turnserver",
    "turnutils_stunclient",
];

/// The PATH given to every command run in the lab, so results do not depend
/// on the environment the tests were started from.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Numbers the labs of this process, so parallel test threads never share a
/// namespace name.
static NEXT_LAB: AtomicUsize = AtomicUsize::new(0);

/// How a NAT router maps the private hosts' source ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatKind {
    /// Plain MASQUERADE: keeps the source port when it is free, so one
    /// mapping serves every destination (endpoint-independent).
    Cone,
    /// MASQUERADE --random-fully: a new random port per mapping, so the port a
    /// peer sees is useless to any other peer (endpoint-dependent).
    Symmetric,
}

/// One lab: a public segment plus the hosts and routers created on it.
pub struct Lab {
    /// Prefix of every namespace of this lab: `wgl<pid>x<lab number>`.
    prefix: String,
    bridge_ns: String,
    state: RefCell<State>,
    /// Keeps [`exclusive`] from counting while this lab is alive.
    _gate: cleanup::GatePass,
}

/// What the lab created, in creation order, for cleanup.
#[derive(Default)]
struct State {
    namespaces: Vec<String>,
    holders: Vec<Child>,
    /// Last host octet used on the public segment.
    public_octets: u8,
    /// Number of NAT routers, used for their LAN subnets.
    routers: u8,
}

impl Lab {
    /// Creates an empty lab. Panics with the reason when the machine cannot
    /// run one (not root, no /dev/net/tun, a missing tool): a lab test never
    /// passes without having run.
    ///
    /// # Panics
    ///
    /// When the lab cannot run here (not root, a tool missing), with the reason.
    #[allow(
        clippy::new_without_default,
        reason = "creating a lab makes namespaces and processes: not a default value"
    )]
    pub fn new() -> Lab {
        if let Err(reason) = check_requirements() {
            panic!(
                "the lab cannot run here: {reason} (lab tests need root, network namespaces and \
                 the packages that scripts/test.sh installs)"
            );
        }
        cleanup::reap_stale_labs();
        let gate = cleanup::enter_gate();
        let number = NEXT_LAB.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("wgl{}x{number}", std::process::id());
        let lab = Lab {
            bridge_ns: format!("{prefix}br"),
            prefix,
            state: RefCell::default(),
            _gate: gate,
        };
        lab.add_namespace(&lab.bridge_ns);
        in_ns(&lab.bridge_ns, "ip link add br0 type bridge");
        in_ns(&lab.bridge_ns, "ip link set br0 up");
        lab
    }

    /// The namespace name prefix shared by everything in this lab.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Names of the namespaces this lab created so far.
    pub fn namespaces(&self) -> Vec<String> {
        self.state.borrow().namespaces.clone()
    }

    /// A host on the public segment with 203.0.113.N/24 and `fd00:203::N/64`
    /// and no default route: it reaches only the public segment.
    pub fn public_host(&self, name: &str) -> Host {
        let (ns, v4) = self.public_netns();
        let v6 = public_v6(v4.octets()[3]);
        let holder = self.start_holder(&ns, name);
        Host::new(name, &ns, holder, IpAddr::V4(v4), IpAddr::V4(v4), Some(v6))
    }

    /// A namespace on the public segment with 203.0.113.N/24 and
    /// `fd00:203::N/64` on `eth0`: its name and IPv4 address.
    fn public_netns(&self) -> (String, Ipv4Addr) {
        let octet = self.next_public_octet();
        let v4 = Ipv4Addr::new(203, 0, 113, octet);
        let v6 = public_v6(octet);
        let ns = format!("{}h{octet}", self.prefix);
        self.add_namespace(&ns);
        self.plug_into_bridge(&ns, "eth0", octet);
        in_ns(&ns, &format!("ip addr add {v4}/24 dev eth0"));
        // nodad: the address is usable at once instead of after DAD (~1 s).
        in_ns(&ns, &format!("ip addr add {v6}/64 dev eth0 nodad"));
        in_ns(&ns, "ip link set eth0 up");
        (ns, v4)
    }

    /// A host on its own LAN 10.200.K.0/24 (the host is .2) behind a router
    /// whose public side is on the public segment. The host's default route
    /// goes through the router, which masquerades the LAN as `kind` says.
    /// The host's [`Host::public_ip`] is the router's public address.
    pub fn host_behind_nat(&self, name: &str, kind: NatKind) -> Host {
        let k = self.next_router();
        let octet = self.next_public_octet();
        let router_ip = Ipv4Addr::new(203, 0, 113, octet);
        let router = format!("{}r{k}", self.prefix);
        self.add_router(&router, router_ip, octet, kind);
        let ns = format!("{}h{octet}", self.prefix);
        self.add_namespace(&ns);
        let host_ip = self.attach_to_lan(&router, &ns, k);
        let holder = self.start_holder(&ns, name);
        let (public, local) = (IpAddr::V4(router_ip), IpAddr::V4(host_ip));
        Host::new(name, &ns, holder, public, local, None)
    }

    /// A NAT router: `wan0` on the public segment, forwarding on, the
    /// MASQUERADE rule that makes it a cone or a symmetric NAT, and the
    /// input filter of a home router.
    ///
    /// The filter (unsolicited input on `wan0` dropped, replies accepted:
    /// OpenWrt's default wan zone, and what every home router does) is
    /// not decoration. Without it, a peer's unsolicited handshake to this
    /// router's public port goes to the router's own INPUT, where conntrack
    /// confirms an entry for it before the UDP socket lookup fails. When
    /// the host behind the router then sends to that peer, MASQUERADE finds
    /// its reply tuple taken by that entry and picks another source port,
    /// so the peer's own NAT never sees a reply that matches: two cone-NAT
    /// hosts with correct endpoints never meet when one starts first (seen
    /// in the lab: `cat /proc/net/nf_conntrack` on the router shows the
    /// confirmed entry and the remapped port). Dropped in the filter table,
    /// the packet is gone before conntrack confirms, nothing is left
    /// behind, and hole punching works in either order, as on real routers.
    fn add_router(&self, router: &str, ip: Ipv4Addr, octet: u8, kind: NatKind) {
        self.add_namespace(router);
        self.plug_into_bridge(router, "wan0", octet);
        in_ns(router, &format!("ip addr add {ip}/24 dev wan0"));
        in_ns(router, "ip link set wan0 up");
        in_ns(router, "sysctl -qw net.ipv4.ip_forward=1");
        let masquerade = "iptables -t nat -A POSTROUTING -o wan0 -j MASQUERADE";
        match kind {
            NatKind::Cone => in_ns(router, masquerade),
            NatKind::Symmetric => in_ns(router, &format!("{masquerade} --random-fully")),
        }
        in_ns(
            router,
            "iptables -A INPUT -i wan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        );
        in_ns(router, "iptables -A INPUT -i wan0 -j DROP");
    }

    /// Links host namespace `ns` to the router's LAN K: the router is
    /// 10.200.K.1 and the host's default gateway, the host 10.200.K.2.
    #[allow(
        clippy::unused_self,
        reason = "a step of building this lab, called on it like the others"
    )]
    fn attach_to_lan(&self, router: &str, ns: &str, k: u8) -> Ipv4Addr {
        let (gateway, host_ip) = (Ipv4Addr::new(10, 200, k, 1), Ipv4Addr::new(10, 200, k, 2));
        in_ns(
            router,
            &format!("ip link add lan0 type veth peer name eth0 netns {ns}"),
        );
        in_ns(router, &format!("ip addr add {gateway}/24 dev lan0"));
        in_ns(router, "ip link set lan0 up");
        in_ns(ns, &format!("ip addr add {host_ip}/24 dev eth0"));
        in_ns(ns, "ip link set eth0 up");
        in_ns(ns, &format!("ip route add default via {gateway}"));
        host_ip
    }

    /// A host that is no member: it sits on a LAN `10.88.K.0/24` (it is
    /// .10) that `gateway` routes (the gateway is .1 there, forwarding on),
    /// as a laptop on a site's LAN behind a site-to-site member. Its
    /// default route goes through the gateway, so once the gateway's peers
    /// route `10.88.K.0/24` to it (`add-peer … --allowed-ips`), its packets
    /// reach them through the gateway's tunnel. Returns the host and the
    /// LAN's network.
    pub fn host_behind(&self, name: &str, gateway: &Host) -> (Host, String) {
        let k = self.next_router();
        let octet = self.next_public_octet();
        let ns = format!("{}h{octet}", self.prefix);
        self.add_namespace(&ns);
        let (gw_ip, host_ip) = (Ipv4Addr::new(10, 88, k, 1), Ipv4Addr::new(10, 88, k, 10));
        let gw = gateway.netns();
        in_ns(
            gw,
            &format!("ip link add lan{k} type veth peer name eth0 netns {ns}"),
        );
        in_ns(gw, &format!("ip addr add {gw_ip}/24 dev lan{k}"));
        in_ns(gw, &format!("ip link set lan{k} up"));
        in_ns(gw, "sysctl -qw net.ipv4.ip_forward=1");
        in_ns(&ns, &format!("ip addr add {host_ip}/24 dev eth0"));
        in_ns(&ns, "ip link set eth0 up");
        in_ns(&ns, &format!("ip route add default via {gw_ip}"));
        let holder = self.start_holder(&ns, name);
        let host_ip = IpAddr::V4(host_ip);
        (
            Host::new(name, &ns, holder, host_ip, host_ip, None),
            format!("10.88.{k}.0/24"),
        )
    }

    /// Creates a namespace with `lo` up and IPv6 DAD off (so v6 addresses,
    /// including those wg-quick adds later, work immediately), and records
    /// it for cleanup before anything else can fail.
    fn add_namespace(&self, ns: &str) {
        run_ok(&["ip", "netns", "add", ns]);
        self.state.borrow_mut().namespaces.push(ns.to_string());
        cleanup::register_netns(ns);
        in_ns(ns, "ip link set lo up");
        in_ns(ns, "sysctl -qw net.ipv6.conf.all.accept_dad=0");
        in_ns(ns, "sysctl -qw net.ipv6.conf.default.accept_dad=0");
    }

    /// A veth pair with `ifname` in `ns` and `p<octet>` on the bridge. Both
    /// ends are created directly in lab namespaces, so nothing ever appears
    /// in the root namespace (where parallel labs could clash on names).
    fn plug_into_bridge(&self, ns: &str, ifname: &str, octet: u8) {
        let br = &self.bridge_ns;
        in_ns(
            br,
            &format!("ip link add p{octet} type veth peer name {ifname} netns {ns}"),
        );
        in_ns(br, &format!("ip link set p{octet} master br0 up"));
    }

    /// Starts the process that owns the host's mount and UTS namespaces:
    /// private tmpfs on /run and /etc/wireguard, its own /etc/hosts and
    /// hostname. Commands later enter these namespaces through its PID.
    fn start_holder(&self, ns: &str, hostname: &str) -> u32 {
        // The script prints "ready" once set up; reading that line is the
        // synchronisation (EOF instead means the script failed).
        const SCRIPT: &str = r#"set -e
mount -t tmpfs -o mode=0755 lab-run /run
mkdir -p /etc/wireguard
mount -t tmpfs -o mode=0700 lab-wireguard /etc/wireguard
printf '127.0.0.1 localhost\n::1 localhost\n127.0.1.1 %s\n' "$1" > /run/lab-hosts
mount --bind /run/lab-hosts /etc/hosts
hostname "$1"
echo ready
exec sleep infinity"#;
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "unshare",
                "--mount",
                "--uts",
                "--propagation=private",
            ])
            .args(["sh", "-c", SCRIPT, "holder", hostname])
            .env_clear()
            .env("PATH", PATH)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the namespace holder");
        let pid = child.id();
        let stdout = child.stdout.take().expect("holder stdout is piped");
        let mut line = String::new();
        let ready = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let failed = ready.is_err() || line.trim() != "ready";
        self.state.borrow_mut().holders.push(child);
        assert!(
            !failed,
            "holder for host {hostname} in {ns} failed to set up"
        );
        pid
    }

    fn next_public_octet(&self) -> u8 {
        let mut state = self.state.borrow_mut();
        state.public_octets += 1;
        assert!(state.public_octets < 250, "too many hosts in one lab");
        state.public_octets
    }

    fn next_router(&self) -> u8 {
        let mut state = self.state.borrow_mut();
        state.routers += 1;
        state.routers
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let state = std::mem::take(&mut *self.state.borrow_mut());
        cleanup::destroy(&state.namespaces, state.holders);
    }
}

/// True when the kernel has WireGuard: wg-quick then makes kernel devices
/// and no wireguard-go daemon runs. (This machine has no module.)
#[must_use]
pub fn kernel_wireguard() -> bool {
    Path::new("/sys/module/wireguard").exists()
}

/// The v6 address of public host N: `fd00:203::N`.
fn public_v6(octet: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x203, 0, 0, 0, 0, 0, u16::from(octet))
}

/// Why this machine cannot run a lab, if it cannot.
fn check_requirements() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("the lab needs root (network namespaces, mounts)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Err("/dev/net/tun is missing (wireguard-go needs it)".into());
    }
    let missing: Vec<&str> = REQUIRED_TOOLS
        .iter()
        .copied()
        .filter(|t| !on_path(t))
        .collect();
    if !missing.is_empty() {
        return Err(format!("missing tools: {}", missing.join(", ")));
    }
    Ok(())
}

fn on_path(tool: &str) -> bool {
    PATH.split(':')
        .any(|dir| Path::new(dir).join(tool).is_file())
}

/// Runs a setup command in the root namespace; a failure is a broken lab.
fn run_ok(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .env_clear()
        .env("PATH", PATH)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "lab setup command {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Runs a setup command (words separated by blanks) inside namespace `ns`.
fn in_ns(ns: &str, command: &str) {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend(command.split_whitespace());
    run_ok(&full);
}

/// Polls `check` every 100 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A fresh WireGuard keypair `(private, public)`, made with `wg`; the
/// private key only ever travels through pipes, never argv.
#[must_use]
pub fn wg_keypair() -> (String, String) {
    let private = pipe_through(&["wg", "genkey"], "");
    let public = wg_pubkey(&private);
    (private, public)
}

/// The public key of a private key, by `wg pubkey` (the key goes through
/// stdin). Needs wireguard-tools, not root.
#[must_use]
pub fn wg_pubkey(private: &str) -> String {
    pipe_through(&["wg", "pubkey"], private)
}

fn pipe_through(args: &[&str], input: &str) -> String {
    let out = host::run_with_input(
        Command::new(args[0]).args(&args[1..]),
        input,
        host::timeout(),
    );
    out.expect_ok(&format!("{args:?}")).trim().to_string()
}
