use super::*;
use crate::plan::fixtures::own;
use crate::types::AllowedIps;

fn key(n: u8) -> PublicKey {
    PublicKey::from_bytes([n; 32])
}

fn entry(name: &str, n: u8, ip: &str) -> RosterEntry {
    RosterEntry {
        peer: AddPeer {
            name: name.parse().unwrap(),
            endpoint: format!("203.0.113.{n}:51820").parse().unwrap(),
            public_key: key(n),
            peer_ip: ip.parse().unwrap(),
            extra_allowed_ips: Some(AllowedIps::default()),
            keepalive: Some(25),
        },
        role: Role::Peer,
    }
}

fn with_extra(mut e: RosterEntry, nets: &str, role: Role) -> RosterEntry {
    e.peer.extra_allowed_ips = Some(nets.parse().unwrap());
    e.role = role;
    e
}

fn roster(entries: Vec<RosterEntry>) -> Roster {
    Roster {
        source: "roster.toml".into(),
        entries,
    }
}

fn me() -> ThisNode {
    let mut own = own();
    own.host = vec![
        (
            "198.51.100.1".parse().unwrap(),
            "this host's default gateway".into(),
        ),
        (
            "203.0.113.1".parse().unwrap(),
            "this node's public endpoint".into(),
        ),
    ];
    ThisNode {
        own,
        name: "defiant".parse().unwrap(),
        endpoint: Some("203.0.113.1:51820".parse().unwrap()),
    }
}

fn own_entry() -> RosterEntry {
    let mut e = entry("defiant", 1, "10.15.0.1");
    e.peer.public_key = own().public_key;
    e
}

fn base() -> Document {
    Document::parse("[Interface]\nAddress = 10.15.0.1/24\n").unwrap()
}

/// A node with a hand-added phone (10.15.0.50) beside whatever is given.
fn with_phone() -> Document {
    let text = format!(
        "{}\n[Peer]\n# Name = phone\nPublicKey = {}\nAllowedIPs = 10.15.0.50/32\n",
        base().render(),
        key(50)
    );
    Document::parse(&text).unwrap()
}

fn run(doc: &Document, r: &Roster) -> Result<Plan> {
    plan(doc, &me(), r, Options::default())
}

fn lines(plan: &Plan) -> Vec<String> {
    plan.changes.iter().map(ToString::to_string).collect()
}

fn err(doc: &Document, r: &Roster) -> PlanError {
    match run(doc, r) {
        Ok(p) => panic!("expected a refusal, got {:?}", lines(&p)),
        Err(Error::Plan(refused)) => refused,
        Err(other) => panic!("expected a refusal, got {other}"),
    }
}

fn two() -> Roster {
    roster(vec![
        own_entry(),
        entry("enterprise", 2, "10.15.0.2"),
        entry("voyager", 3, "10.15.0.3"),
    ])
}

#[test]
fn adds_marked_peers_and_then_nothing() {
    let first = run(&base(), &two()).unwrap();
    assert_eq!(lines(&first), ["+ add enterprise", "+ add voyager"]);
    assert_eq!(first.deltas.len(), 2);
    let text = first.doc.render();
    assert!(
        text.contains(&format!(
            "[Peer]\n# Name = enterprise\n# Source = roster\nPublicKey = {}\nEndpoint = 203.0.113.2:51820\nAllowedIPs = 10.15.0.2/32\nPersistentKeepalive = 25\n",
            key(2)
        )),
        "{text}"
    );
    let again = run(&first.doc, &two()).unwrap();
    assert!(again.changes.is_empty() && again.deltas.is_empty());
    assert_eq!(again.doc, first.doc);
}

#[test]
fn hand_added_peers_stay_unless_pruned() {
    let synced = run(&with_phone(), &two()).unwrap();
    assert_eq!(lines(&synced), ["+ add enterprise", "+ add voyager"]);
    assert!(synced.doc.render().contains("# Name = phone\n"));
    // A smaller roster removes only what the roster brought.
    let smaller = roster(vec![own_entry(), entry("voyager", 3, "10.15.0.3")]);
    let next = run(&synced.doc, &smaller).unwrap();
    assert_eq!(lines(&next), ["- remove enterprise"]);
    assert_eq!(next.deltas, [Delta::RemovePeer(key(2))]);
    assert!(next.doc.render().contains("# Name = phone\n"));
    let pruned = plan(
        &next.doc,
        &me(),
        &smaller,
        Options {
            prune: true,
            adopt: false,
        },
    )
    .unwrap();
    assert_eq!(lines(&pruned), ["- remove phone"]);
    assert!(!pruned.doc.render().contains("phone"));
}

/// A peer an introduction added is the roster's as soon as the roster
/// lists it (no `--adopt`), and is no longer marked as introduced.
#[test]
fn an_introduced_peer_in_the_roster_is_taken_over() {
    let text = format!(
        "[Interface]\nAddress = 10.15.0.1/24\n\n[Peer]\n# Name = voyager\n# Source = introduced by enterprise\nPublicKey = {}\nEndpoint = 203.0.113.7:51820\nAllowedIPs = 10.15.0.7/32\nPersistentKeepalive = 25\n",
        key(7)
    );
    let doc = Document::parse(&text).unwrap();
    let taken = run(&doc, &roster(vec![entry("voyager", 7, "10.15.0.7")])).unwrap();
    assert_eq!(
        lines(&taken),
        ["~ adopt voyager (now managed by the roster)"]
    );
    let out = taken.doc.render();
    assert!(out.contains("# Source = roster\n"), "{out}");
    assert!(!out.contains("introduced by"), "{out}");
    assert!(!crate::plan::membership::is_introduced(&taken.doc, &key(7)));
}

#[test]
fn hand_added_key_in_the_roster_needs_adopt() {
    let r = roster(vec![entry("phone", 50, "10.15.0.50")]);
    let e = err(&with_phone(), &r);
    assert!(
        matches!(&e, PlanError::HandAddedInRoster { peer, key: k, .. } if peer == "phone" && *k == key(50)),
        "{e:?}"
    );
    let adopted = plan(
        &with_phone(),
        &me(),
        &r,
        Options {
            prune: false,
            adopt: true,
        },
    )
    .unwrap();
    assert_eq!(
        lines(&adopted),
        ["~ adopt phone (now managed by the roster)"]
    );
    assert!(adopted.doc.render().contains("# Source = roster"));
    // From then on it is the roster's: leaving the roster removes it.
    let gone = run(&adopted.doc, &roster(vec![])).unwrap();
    assert_eq!(lines(&gone), ["- remove phone"]);
}

#[test]
fn rename_changes_the_file_only() {
    let synced = run(&base(), &two()).unwrap();
    let renamed = roster(vec![
        entry("enterprise-d", 2, "10.15.0.2"),
        entry("voyager", 3, "10.15.0.3"),
    ]);
    let next = run(&synced.doc, &renamed).unwrap();
    assert_eq!(lines(&next), ["~ rename enterprise -> enterprise-d"]);
    assert!(next.deltas.is_empty());
    assert!(next.doc.render().contains("# Name = enterprise-d\n"));
    // A rename onto a name another entry leaves in the same roster works too.
    let swapped = roster(vec![
        entry("voyager", 2, "10.15.0.2"),
        entry("enterprise", 3, "10.15.0.3"),
    ]);
    let next = run(&synced.doc, &swapped).unwrap();
    assert_eq!(next.changes.len(), 2, "{:?}", lines(&next));
    // A rename that also moves the peer says both.
    let moved = roster(vec![
        entry("enterprise-d", 2, "10.15.0.12"),
        entry("voyager", 3, "10.15.0.3"),
    ]);
    let next = run(&synced.doc, &moved).unwrap();
    assert_eq!(
        lines(&next),
        ["~ update enterprise-d (renamed from enterprise)"]
    );
    assert_eq!(next.deltas.len(), 1);
}

#[test]
fn address_swap_is_one_update() {
    let synced = run(&base(), &two()).unwrap();
    let swapped = roster(vec![
        entry("enterprise", 2, "10.15.0.3"),
        entry("voyager", 3, "10.15.0.2"),
    ]);
    let next = run(&synced.doc, &swapped).unwrap();
    assert_eq!(lines(&next), ["~ update enterprise", "~ update voyager"]);
    assert_eq!(next.deltas.len(), 2);
    let text = next.doc.render();
    let at = |name: &str| text.find(&format!("# Name = {name}")).unwrap();
    let enterprise = &text[at("enterprise")..at("voyager")];
    assert!(enterprise.contains("AllowedIPs = 10.15.0.3/32"), "{text}");
}

#[test]
fn repeats_in_a_roster_name_both_entries() {
    let cases = [
        (
            vec![entry("a", 2, "10.15.0.2"), entry("b", 2, "10.15.0.3")],
            Repeat::Key(key(2)),
            "roster.toml entry #2 (\"b\")",
        ),
        (
            vec![entry("a", 2, "10.15.0.2"), entry("a", 3, "10.15.0.3")],
            Repeat::Name(key(2), key(3)),
            "roster.toml entry #2 (\"a\")",
        ),
        (
            vec![entry("a", 2, "10.15.0.2"), entry("b", 3, "10.15.0.2")],
            Repeat::Address("10.15.0.2".parse().unwrap()),
            "roster.toml entry #2 (\"b\")",
        ),
    ];
    for (entries, repeat, second) in cases {
        assert_eq!(
            err(&base(), &roster(entries)),
            PlanError::RepeatedEntry {
                first: "roster.toml entry #1 (\"a\")".into(),
                second: second.into(),
                repeat,
            }
        );
    }
}

#[test]
fn this_node_is_not_the_rosters_to_change() {
    let mut moved = own_entry();
    moved.peer.peer_ip = "10.15.0.9".parse().unwrap();
    let differs = |e: PlanError| match e {
        PlanError::OwnEntryDiffers { difference, .. } => difference,
        other => panic!("expected OwnEntryDiffers, got {other:?}"),
    };
    assert_eq!(
        differs(err(&base(), &roster(vec![moved]))),
        OwnDifference::Address {
            theirs: "10.15.0.9".parse().unwrap(),
            ours: "10.15.0.1".parse().unwrap(),
        }
    );
    let mut renamed = own_entry();
    renamed.peer.name = "impostor".parse().unwrap();
    assert_eq!(
        differs(err(&base(), &roster(vec![renamed]))),
        OwnDifference::Name {
            theirs: "impostor".parse().unwrap(),
            ours: "defiant".parse().unwrap(),
        }
    );
    let mut elsewhere = own_entry();
    elsewhere.peer.endpoint = "192.0.2.66:51820".parse().unwrap();
    assert_eq!(
        differs(err(&base(), &roster(vec![elsewhere]))),
        OwnDifference::Endpoint {
            theirs: "192.0.2.66:51820".parse().unwrap(),
            ours: "203.0.113.1:51820".parse().unwrap(),
        }
    );
    let hijack = entry("defiant", 7, "10.15.0.7");
    let e = err(&base(), &roster(vec![hijack]));
    assert!(
        matches!(e, PlanError::OwnNameOtherKey { theirs, .. } if theirs == key(7)),
        "{e:?}"
    );
    let taken = entry("other", 7, "10.15.0.1");
    let e = err(&base(), &roster(vec![taken]));
    assert!(
        matches!(
            e,
            PlanError::RosterOverlap {
                owner: RouteOwner::ThisNode,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn routes_may_not_cover_endpoints_or_defaults() {
    let wide = with_extra(
        entry("enterprise", 2, "10.15.0.2"),
        "203.0.113.0/25",
        Role::Peer,
    );
    let e = err(
        &base(),
        &roster(vec![wide.clone(), entry("voyager", 3, "10.15.0.3")]),
    );
    assert!(
        matches!(&e, PlanError::CoversProtected { entry, net, what, .. }
            if entry.contains("entry #1") && net.to_string() == "203.0.113.0/25" && what.contains("endpoint")),
        "{e:?}"
    );
    let everything = with_extra(entry("enterprise", 2, "10.15.0.2"), "::/0", Role::Peer);
    let e = err(&base(), &roster(vec![everything]));
    assert!(
        matches!(e, PlanError::DefaultRoute { net, .. } if net.to_string() == "::/0"),
        "{e:?}"
    );
    let gateway = with_extra(
        entry("enterprise", 2, "10.15.0.2"),
        "198.51.100.0/24",
        Role::Peer,
    );
    let e = err(&base(), &roster(vec![gateway]));
    assert!(
        matches!(&e, PlanError::CoversProtected { what, .. } if what.contains("default gateway")),
        "{e:?}"
    );
    let over_peer = with_extra(
        entry("enterprise", 2, "10.15.0.2"),
        "10.15.0.48/28",
        Role::Peer,
    );
    let e = err(&with_phone(), &roster(vec![over_peer]));
    assert!(
        matches!(&e, PlanError::RosterOverlap { owner: RouteOwner::Kept(peer), net, other, .. }
            if peer == "phone" && (net.to_string(), other.to_string()) == ("10.15.0.48/28".into(), "10.15.0.50/32".into())),
        "{e:?}"
    );
    let over_other = with_extra(
        entry("enterprise", 2, "10.15.0.2"),
        "192.168.0.0/16",
        Role::Peer,
    );
    let inner = with_extra(
        entry("voyager", 3, "10.15.0.3"),
        "192.168.7.0/24",
        Role::Peer,
    );
    let e = err(&base(), &roster(vec![over_other, inner]));
    assert!(
        matches!(&e, PlanError::RosterOverlap { net, other, .. }
            if [net.to_string(), other.to_string()].contains(&"192.168.7.0/24".to_string())
                && [net.to_string(), other.to_string()].contains(&"192.168.0.0/16".to_string())),
        "{e:?}"
    );

    // Opting in: only an exit node may route public space (and cover the
    // endpoints in it), or be a default route.
    let router = with_extra(wide.clone(), "203.0.113.0/25", Role::SubnetRouter);
    let e = err(
        &base(),
        &roster(vec![router, entry("voyager", 3, "10.15.0.3")]),
    );
    assert!(
        matches!(&e, PlanError::OutsideSpace { net, allowed, .. }
            if net.to_string() == "203.0.113.0/25" && allowed.contains("private range")),
        "{e:?}"
    );
    let router = with_extra(wide, "203.0.113.0/25", Role::ExitNode);
    assert!(
        run(
            &base(),
            &roster(vec![router, entry("voyager", 3, "10.15.0.3")])
        )
        .is_ok()
    );
    let exit = with_extra(
        entry("enterprise", 2, "10.15.0.2"),
        "0.0.0.0/0, ::/0",
        Role::ExitNode,
    );
    let ok = run(
        &with_phone(),
        &roster(vec![exit.clone(), entry("voyager", 3, "10.15.0.3")]),
    )
    .unwrap();
    assert!(
        ok.doc
            .render()
            .contains("AllowedIPs = 10.15.0.2/32, 0.0.0.0/0, ::/0")
    );
    let second = with_extra(
        entry("voyager", 3, "10.15.0.3"),
        "0.0.0.0/0",
        Role::ExitNode,
    );
    let e = err(&base(), &roster(vec![exit, second]));
    assert!(
        matches!(e, PlanError::RosterOverlap { net, .. } if net.to_string() == "0.0.0.0/0"),
        "{e:?}"
    );
    let fine = with_extra(
        entry("enterprise", 2, "10.15.0.2"),
        "192.168.7.0/24",
        Role::SubnetRouter,
    );
    assert!(run(&base(), &roster(vec![fine])).is_ok());
}

#[test]
fn an_address_may_not_be_an_endpoint_or_this_hosts() {
    // enterprise's endpoint is 203.0.113.2, this node's 203.0.113.1, the
    // gateway 198.51.100.1: none may be an entry's address, whatever its role.
    for (address, role, needle) in [
        (
            "203.0.113.2",
            Role::Peer,
            "the endpoint of roster.toml entry #2",
        ),
        (
            "203.0.113.1",
            Role::SubnetRouter,
            "this node's public endpoint",
        ),
        ("198.51.100.1", Role::ExitNode, "default gateway"),
    ] {
        let mut voyager = entry("voyager", 3, address);
        voyager.role = role;
        let r = roster(vec![
            own_entry(),
            entry("enterprise", 2, "10.15.0.2"),
            voyager,
        ]);
        let e = err(&base(), &r);
        assert!(
            matches!(&e, PlanError::AddressIsProtected { entry, ip, what }
                if entry.contains("entry #3") && ip.to_string() == address && what.contains(needle)),
            "{address}: {e:?}"
        );
    }
    let voyager = entry("voyager", 3, "10.15.0.3");
    assert!(run(&base(), &roster(vec![own_entry(), voyager])).is_ok());
}

#[test]
fn names_of_kept_peers_are_not_taken() {
    let e = err(&with_phone(), &roster(vec![entry("phone", 9, "10.15.0.9")]));
    assert!(
        matches!(&e, PlanError::KeptPeerName { entry, relayed: false, key: k, .. }
            if entry.contains("entry #1") && *k == key(50)),
        "{e:?}"
    );
}

#[test]
fn relayed_peers_stay_as_they_are() {
    // voyager is relayed through enterprise; the roster lists both.
    let synced = run(&base(), &two()).unwrap();
    let text = synced.doc.render().replace(
        &format!("AllowedIPs = 10.15.0.2/32\nPersistentKeepalive = 25\n\n[Peer]\n# Name = voyager\n# Source = roster\nPublicKey = {}\nEndpoint = 203.0.113.3:51820\nAllowedIPs = 10.15.0.3/32\nPersistentKeepalive = 25\n", key(3)),
        &format!("AllowedIPs = 10.15.0.2/32, 10.15.0.3/32\nPersistentKeepalive = 25\n# Relay = voyager {} 203.0.113.3:51820 10.15.0.3/32\n", key(3)),
    );
    assert!(text.contains("# Relay = voyager"), "{text}");
    let relayed = Document::parse(&text).unwrap();
    let again = run(&relayed, &two()).unwrap();
    assert!(again.changes.is_empty(), "{:?}", lines(&again));
    // The relay's own update keeps the relayed addresses.
    let moved = roster(vec![
        entry("enterprise", 2, "10.15.0.12"),
        entry("voyager", 3, "10.15.0.3"),
    ]);
    let next = run(&relayed, &moved).unwrap();
    assert!(
        next.doc
            .render()
            .contains("AllowedIPs = 10.15.0.12/32, 10.15.0.3/32")
    );
    // A relay may not leave while it carries a peer the roster keeps.
    let e = err(&relayed, &roster(vec![entry("voyager", 3, "10.15.0.3")]));
    assert_eq!(
        e,
        PlanError::RemovedPeerRelays {
            peer: "enterprise".into(),
            relayed: "voyager".into(),
        }
    );
}

#[test]
fn planning_is_linear_enough_for_big_rosters() {
    // 5000 entries, planned from empty and then again when in sync: this
    // asserts the outcome only (timings are the benchmark's).
    let entries: Vec<RosterEntry> = (0..5000u32)
        .map(|i| {
            let n = i + 2;
            let mut e = entry(
                &format!("n{n}"),
                2,
                &format!("10.16.{}.{}", n / 250, n % 250 + 1),
            );
            e.peer.public_key = PublicKey::from_bytes({
                let mut b = [7u8; 32];
                b[..4].copy_from_slice(&n.to_be_bytes());
                b
            });
            e
        })
        .collect();
    let big = roster(entries);
    let mut me = me();
    me.own.address = "10.16.0.1/16".parse().unwrap();
    let run = |doc: &Document| plan(doc, &me, &big, Options::default());
    let first = run(&base()).unwrap();
    assert_eq!(first.changes.len(), 5000);
    let again = run(&first.doc).unwrap();
    assert!(again.changes.is_empty());
}

#[test]
fn a_member_without_a_role_claims_only_the_vpn_network() {
    // A LAN needs `subnet_router = true`.
    let lan = with_extra(
        entry("enterprise", 2, "10.15.0.2"),
        "192.168.77.0/24",
        Role::Peer,
    );
    let e = err(&base(), &roster(vec![lan]));
    assert!(
        matches!(&e, PlanError::OutsideSpace { net, allowed, .. }
            if net.to_string() == "192.168.77.0/24" && allowed.contains("10.15.0.0/24")),
        "{e:?}"
    );
    // The default route split into 108 narrow pieces, none over a needed
    // address (this host's gateway 198.51.100.1, the endpoints in
    // 203.0.113.0/24): public space all the same.
    let protected: Vec<IpNet> = ["198.51.100.1/32", "203.0.113.0/24"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    let mut pieces: Vec<IpNet> = vec!["0.0.0.0/0".parse().unwrap()];
    let mut done: Vec<IpNet> = Vec::new();
    while let Some(net) = pieces.pop() {
        if protected.iter().any(|p| net.contains(p) && net != *p) {
            if let Ok(halves) = net.subnets(net.prefix_len() + 1) {
                pieces.extend(halves);
            }
        } else if !protected.contains(&net) {
            done.push(net);
        }
    }
    // 10.15.0.0/24 must stay this node's own: leave out what holds it.
    done.retain(|n| !n.contains(&"10.15.0.0/24".parse::<IpNet>().unwrap()));
    assert!(done.len() > 30, "{}", done.len());
    let text: Vec<String> = done.iter().map(ToString::to_string).collect();
    let split = with_extra(
        entry("enterprise", 2, "10.15.0.2"),
        &text.join(", "),
        Role::Peer,
    );
    let e = err(&base(), &roster(vec![split.clone()]));
    assert!(matches!(e, PlanError::OutsideSpace { .. }), "{e:?}");
    // A subnet router neither.
    let mut router = split;
    router.role = Role::SubnetRouter;
    let e = err(&base(), &roster(vec![router]));
    assert!(matches!(e, PlanError::OutsideSpace { .. }), "{e:?}");
}
