//! A STUN server inside the lab (coturn), so address discovery and NAT
//! classification run for real without any traffic leaving the lab.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use super::{Host, Lab, wait_until};

const STUN_PORT: u16 = 3478;

/// coturn answering STUN on two public addresses of one host: a client
/// compares the two mappings to tell a cone NAT from a symmetric one.
pub struct StunServer {
    pub host: Host,
    pub addrs: [SocketAddr; 2],
}

impl StunServer {
    /// The server list for `WGP2P_STUN_SERVERS`: `ip:port,ip:port`.
    #[must_use]
    pub fn servers(&self) -> String {
        format!("{},{}", self.addrs[0], self.addrs[1])
    }
}

impl Lab {
    /// A public host `name` running a STUN-only coturn on its address and a
    /// second one (coturn is one of the lab's required tools).
    pub fn stun_server(&self, name: &str) -> StunServer {
        let host = self.public_host(name);
        let second = IpAddr::V4(Ipv4Addr::new(203, 0, 113, self.next_public_octet()));
        let cidr = format!("{second}/24");
        host.run(&["ip", "addr", "add", &cidr, "dev", "eth0"])
            .expect_ok("second STUN address");
        let addrs = [host.public_ip(), second].map(|ip| SocketAddr::new(ip, STUN_PORT));
        self.start_turnserver(&host, &addrs);
        StunServer { host, addrs }
    }

    /// Starts coturn and waits until it listens on both addresses: a running
    /// coturn proves nothing, it retries a failed bind silently.
    fn start_turnserver(&self, host: &Host, addrs: &[SocketAddr; 2]) {
        // --no-rfc5780: answer plain binding requests only; with two
        // addresses coturn would advertise a CHANGE-REQUEST port it never opens.
        let mut args = vec!["turnserver", "-n", "--stun-only", "--no-rfc5780"];
        args.extend(["--no-cli", "--no-tls", "--no-dtls"]);
        // -n: not Debian's /etc/turnserver.conf; --db: not the host-wide
        // /var/lib/turn database; both files stay in the host's own /run.
        args.extend([
            "--log-file",
            "stdout",
            "--simple-log",
            "--pidfile",
            "/run/turnserver.pid",
        ]);
        args.extend(["--db", "/run/turndb", "--listening-port", "3478"]);
        let ips = addrs.map(|a| a.ip().to_string());
        for ip in &ips {
            args.extend(["--listening-ip", ip.as_str()]);
        }
        let child = host
            .command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start turnserver");
        // Killed and reaped with the holders when the lab is dropped.
        self.state.borrow_mut().holders.push(child);
        let listening = wait_until(Duration::from_secs(5), || {
            let sockets = host.run(&["ss", "-Hlun"]).stdout;
            addrs.iter().all(|a| sockets.contains(&a.to_string()))
        });
        assert!(listening, "turnserver does not listen on {addrs:?}");
    }
}
