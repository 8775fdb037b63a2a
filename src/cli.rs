//! The command line: global options and one variant per command. clap
//! parses straight into the validated types, so a command never sees a
//! malformed value.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::types::{
    AllowedIps, Endpoint, EndpointSpec, InterfaceName, PeerIp, PeerName, PeerSelector, PublicKey,
    VpnAddress,
};

fn port(s: &str) -> Result<u16, crate::types::Error> {
    crate::types::parse_port(s)
}

#[derive(Debug, Parser)]
#[command(
    name = "wgp2p",
    version,
    about = "Peer-to-peer full-mesh WireGuard VPN between Linux hosts, with no central server",
    after_help = "Set up: `wgp2p install 10.15.0.1/24` on each host, then paste the printed `wgp2p add-peer …` line on every other host.",
    disable_help_subcommand = false
)]
pub struct Cli {
    /// WireGuard interface name
    #[arg(
        long,
        global = true,
        env = "WG_INTERFACE",
        default_value = "wg0",
        value_name = "NAME"
    )]
    pub interface: InterfaceName,

    /// This node's UDP listen port [default: the config's ListenPort, else 51820]
    #[arg(long, global = true, env = "WG_PORT", value_parser = port, value_name = "PORT")]
    pub port: Option<u16>,

    /// Where the node's files live
    #[arg(
        long,
        global = true,
        env = "WG_CONFIG_DIR",
        default_value = "/etc/wireguard",
        value_name = "DIR"
    )]
    pub config_dir: PathBuf,

    /// Machine-readable JSON output (status, and commands that print data)
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install wireguard-tools with the host's package manager
    Dependencies {
        /// Print the commands without running them
        #[arg(long)]
        dry_run: bool,
    },
    /// First-time setup (safe to re-run): keys, address, config, interface up
    Install {
        /// This node's VPN address with its prefix, e.g. 10.15.0.1/24
        #[arg(value_name = "ADDRESS/CIDR")]
        address: VpnAddress,
        /// This node's public HOST[:PORT] for the add-peer line (remembered)
        #[arg(long, value_name = "HOST[:PORT]")]
        endpoint: Option<EndpointSpec>,
        /// Also install and start the agent's systemd unit (as `agent enable`)
        #[arg(long)]
        agent: bool,
        /// Let the agent add and remove the peers that members introduce
        /// (`# AcceptIntroductions = true` in the config; kept on re-install)
        #[arg(long)]
        accept_introductions: bool,
    },
    /// Stop the interface and remove the config, keys and provisioned peers
    Uninstall {
        /// Keep privatekey and publickey
        #[arg(long)]
        keep_keys: bool,
    },
    /// Bring the interface up
    Start,
    /// Bring the interface down
    Stop,
    /// Show the service and every peer with its name, handshake and health
    Status {
        /// Exit with status 7 when any peer is stale, drifted or down (for cron and monitoring)
        #[arg(long)]
        check: bool,
    },
    /// Use a given private key (read from stdin with `-` or no argument)
    ImportKey {
        /// The key; prefer stdin: an argument is visible in the process list
        #[arg(value_name = "PRIVATE_KEY|-")]
        key: Option<String>,
    },
    /// Add or update a peer live (no arguments: print this node's add-peer line)
    AddPeer(AddPeerArgs),
    /// Remove a peer live, by public key or name
    RemovePeer {
        #[arg(value_name = "PUBLIC_KEY|NAME")]
        peer: PeerSelector,
    },
    /// Discover the public address and how the NAT treats the listen port (STUN)
    NatCheck {
        /// STUN server HOST[:PORT]; repeat for several [default: WGP2P_STUN_SERVERS, else built-in]
        #[allow(clippy::doc_markdown, reason = "clap's help text, shown as written")]
        #[arg(long = "stun-server", value_name = "HOST[:PORT]")]
        stun_servers: Vec<String>,
    },
    /// Make the live interface equal to the config (drift repair), live, no restart
    Repair {
        /// Print what differs without changing anything
        #[arg(long)]
        dry_run: bool,
    },
    /// Check tools, service, port, drift, overlaps, stale peers, forwarding; one line per problem with its fix
    Doctor,
    /// Reach a peer through another peer (`relay NAME via RELAY`) or directly again (`relay NAME direct`)
    Relay {
        #[arg(value_name = "NAME|KEY")]
        peer: PeerSelector,
        #[arg(value_enum)]
        mode: RelayMode,
        #[arg(value_name = "RELAY")]
        relay: Option<PeerSelector>,
    },
    /// Let this node forward traffic between peers (IPv4 forwarding on the interface and a FORWARD rule)
    RelayEnable,
    /// Undo relay-enable
    RelayDisable,
    /// Print this node's roster entry (TOML [[peer]] table)
    Export {
        /// This node's public endpoint for the entry (else the saved one,
        /// WGP2P_ENDPOINT, or STUN discovery)
        #[allow(clippy::doc_markdown, reason = "clap's help text, shown as written")]
        #[arg(long, value_name = "HOST[:PORT]")]
        endpoint: Option<EndpointSpec>,
    },
    /// Make the peers that came from a roster equal to a roster file (all
    /// nodes' exports); other peers stay
    Sync {
        #[arg(value_name = "ROSTER.toml")]
        roster: PathBuf,
        /// Print the plan without changing anything
        #[arg(long)]
        dry_run: bool,
        /// Also remove peers that did not come from a roster (added by
        /// hand, provisioned devices) when the roster does not list them
        #[arg(long)]
        prune: bool,
        /// Let the roster manage hand-added peers whose key it lists
        #[arg(long)]
        adopt: bool,
    },
    /// Keep the mesh healthy in the foreground (DNS endpoints re-resolved, members introduced, stale peers relayed with --auto-relay); `agent enable|disable`: its systemd unit
    Agent(AgentArgs),
    /// Accept introductions from a member (no argument: list whose are accepted)
    Trust {
        #[arg(value_name = "NAME|KEY")]
        peer: Option<PeerSelector>,
    },
    /// No longer accept introductions from a member singled out by `trust`
    Untrust {
        #[arg(value_name = "NAME|KEY")]
        peer: PeerSelector,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell)
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff)
    #[command(hide = true)]
    Man,
    /// Make a ready .conf (and QR code) for a device that cannot run wgp2p
    ProvisionPeer {
        /// Name of the new device
        name: PeerName,
        /// The device's own endpoint HOST:PORT (its ListenPort is the port)
        endpoint: Endpoint,
        /// The device's VPN address with prefix, e.g. 10.15.0.50/24
        #[arg(value_name = "ADDRESS/CIDR")]
        address: VpnAddress,
        /// Also print the conf as a QR code for the WireGuard mobile apps
        #[arg(long)]
        qr: bool,
        /// Add every known peer to the conf and print the line for every node
        #[arg(long)]
        mesh: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct AddPeerArgs {
    /// The peer's name
    #[arg(requires_all = ["endpoint", "public_key", "peer_ip"])]
    pub name: Option<PeerName>,
    /// HOST:PORT, [IPv6]:PORT or NAME:PORT
    pub endpoint: Option<Endpoint>,
    pub public_key: Option<PublicKey>,
    /// The peer's VPN address (routed as a host route)
    pub peer_ip: Option<PeerIp>,
    /// Extra subnets routed to this peer, comma-separated
    #[arg(long, value_name = "CIDR,...")]
    pub allowed_ips: Option<AllowedIps>,
    /// Keepalive interval in seconds, 0 turns it off [default: 25 for a new peer; a known peer keeps its own]
    #[arg(long, value_name = "SECS")]
    pub keepalive: Option<u16>,
    /// Reach the peer through RELAY (a peer's name or key) instead of directly
    #[arg(long, value_name = "RELAY")]
    pub via: Option<PeerSelector>,
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    /// Seconds between two passes (1 to 3600)
    #[arg(long, global = true, default_value = "30", value_parser = agent_interval, value_name = "SECS")]
    pub interval: std::time::Duration,
    /// Route a peer without a direct handshake through a relay-enabled peer, and back when the direct path works again
    #[arg(long, global = true)]
    pub auto_relay: bool,
    /// With --auto-relay: seconds a peer is stale before it is relayed (1 to 3600)
    #[arg(long, global = true, default_value = "120", value_parser = relay_after, value_name = "SECS", requires = "auto_relay")]
    pub relay_after: std::time::Duration,
    #[command(subcommand)]
    pub action: Option<AgentAction>,
}

fn relay_after(s: &str) -> Result<std::time::Duration, crate::error::Error> {
    crate::agent::relay::parse_after(s)
}

fn agent_interval(s: &str) -> Result<std::time::Duration, crate::error::Error> {
    crate::agent::parse_interval(s)
}

#[derive(Debug, Subcommand)]
pub enum AgentAction {
    /// Enable and (re)start the systemd unit wgp2p-agent@IFACE with these options (written to IFACE.agent.env)
    Enable,
    /// Stop this interface's agent unit, no longer start it, remove its options
    Disable,
}

/// `relay NAME via RELAY` or `relay NAME direct`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RelayMode {
    Via,
    Direct,
}
