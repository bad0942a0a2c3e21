//! Given / when / then tests of every command, error, transition and dispatcher decision.

use super::*;
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

fn node(id: &str, kind: NodeKind) -> w::Node {
    w::Node {
        id: id.into(),
        kind,
    }
}

fn edge(a: &str, b: &str, s: f64) -> w::Edge {
    w::Edge {
        from: a.into(),
        to: b.into(),
        seconds: s,
    }
}

/// home — j1 — j2 — dock-1, j1 — dock-2 (far: 50 s), home2 — j2.
fn hall() -> (Vec<w::Node>, Vec<w::Edge>) {
    (
        vec![
            node("home", NodeKind::Storage),
            node("home2", NodeKind::Storage),
            node("j1", NodeKind::Junction),
            node("j2", NodeKind::Junction),
            node("dock-1", NodeKind::Dock),
            node("dock-2", NodeKind::Dock),
        ],
        vec![
            edge("home", "j1", 5.0),
            edge("j1", "j2", 5.0),
            edge("j2", "dock-1", 2.0),
            edge("j1", "dock-2", 50.0),
            edge("home2", "j2", 1.0),
        ],
    )
}

/// A model given a list of events (sequences 1, 2, ...).
fn given(events: &[DispatchEvent]) -> Model {
    let mut m = Model::default();
    for (i, e) in events.iter().enumerate() {
        m.apply(i as u64 + 1, e);
    }
    m
}

fn facility() -> DispatchEvent {
    let (nodes, edges) = hall();
    DispatchEvent::FacilitySet(w::FacilitySet { nodes, edges })
}

fn cart(id: &str, home: &str) -> DispatchEvent {
    DispatchEvent::CartRegistered(w::CartRegistered {
        cart_id: id.into(),
        home: home.into(),
    })
}

fn ssd(id: &str, cart: &str, health: SsdHealth, datasets: &[&str]) -> DispatchEvent {
    DispatchEvent::SsdRegistered(w::SsdRegistered {
        ssd_id: id.into(),
        cart_id: cart.into(),
        capacity_bytes: 100,
        health,
        datasets: datasets
            .iter()
            .map(|d| w::DatasetSize {
                dataset: (*d).into(),
                size_bytes: 10,
            })
            .collect(),
    })
}

fn request(
    m: &Model,
    id: &str,
    server: &str,
    datasets: &[&str],
) -> Result<w::DatasetsRequested, DomainError> {
    m.request(
        &w::RequestDatasets {
            server_id: server.into(),
            datasets: datasets.iter().map(|d| (*d).to_string()).collect(),
        },
        id,
    )
}

fn report_cmd(cart: &str, r: Report, location: Option<&str>) -> w::CartReport {
    w::CartReport {
        cart_id: cart.into(),
        report: r,
        location: location.map(Into::into),
    }
}

// --- graph -----------------------------------------------------------------------------------

#[test]
fn shortest_route_goes_through_the_cheapest_edges() {
    let (n, e) = hall();
    let g = Graph::new(n, e).unwrap();
    let (path, secs) = g.route("home", "dock-2").unwrap();
    assert_eq!(path, ["home", "j1", "dock-2"]);
    assert!((secs - 55.0).abs() < 1e-9);
    let (path, secs) = g.route("home", "dock-1").unwrap();
    assert_eq!(path, ["home", "j1", "j2", "dock-1"]);
    assert!((secs - 12.0).abs() < 1e-9);
    assert_eq!(g.route("home", "home").unwrap().0, ["home"]);
    assert!(g.route("home", "nowhere").is_none());
}

#[test]
fn a_facility_must_be_connected_and_well_formed() {
    let (mut n, e) = hall();
    n.push(node("island", NodeKind::Dock));
    assert!(matches!(Graph::new(n, e), Err(DomainError::Invalid(m)) if m.contains("connected")));
    let (n, mut e) = hall();
    e.push(edge("home", "mars", 1.0));
    assert!(matches!(Graph::new(n, e), Err(DomainError::Invalid(_))));
    let (n, mut e) = hall();
    e.push(edge("home", "j2", -1.0));
    assert!(matches!(Graph::new(n, e), Err(DomainError::Invalid(_))));
    let (mut n, e) = hall();
    n.push(node("home", NodeKind::Dock));
    assert!(matches!(Graph::new(n, e), Err(DomainError::Invalid(m)) if m.contains("twice")));
    assert!(matches!(
        Graph::new(vec![], vec![]),
        Err(DomainError::Invalid(_))
    ));
}

#[test]
fn routes_on_a_large_grid_are_fast_enough() {
    let side = 100;
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    for y in 0..side {
        for x in 0..side {
            nodes.push(node(&format!("n{x}_{y}"), NodeKind::Junction));
            if x > 0 {
                edges.push(edge(
                    &format!("n{}_{y}", x - 1),
                    &format!("n{x}_{y}"),
                    1.0 + ((x * y) % 7) as f64,
                ));
            }
            if y > 0 {
                edges.push(edge(
                    &format!("n{x}_{}", y - 1),
                    &format!("n{x}_{y}"),
                    1.0 + ((x + y) % 5) as f64,
                ));
            }
        }
    }
    let g = Graph::new(nodes, edges).unwrap();
    let (path, _) = g.route("n0_0", "n99_99").unwrap();
    assert_eq!(path.first().map(String::as_str), Some("n0_0"));
    assert_eq!(path.last().map(String::as_str), Some("n99_99"));
    assert!(path.len() >= 199);
}

// --- carts -----------------------------------------------------------------------------------

#[test]
fn register_cart_then_again_is_conflict_unless_faulted() {
    let m = given(&[facility()]);
    let f = m.facility.as_deref();
    let cmd = w::RegisterCart {
        cart_id: "c".into(),
        home: "home".into(),
    };
    let e = register_cart(&Cart::default(), &cmd, f).unwrap();
    assert_eq!(
        e,
        w::CartRegistered {
            cart_id: "c".into(),
            home: "home".into()
        }
    );
    let mut c = Cart::default();
    c.apply(&DispatchEvent::CartRegistered(e));
    assert_eq!((c.status, c.location.as_str()), (CartStatus::Free, "home"));
    assert!(
        matches!(register_cart(&c, &cmd, f), Err(DomainError::Conflict(m)) if m.contains("FREE"))
    );
    c.status = CartStatus::Fault;
    assert!(register_cart(&c, &cmd, f).is_ok());
}

#[test]
fn register_cart_needs_a_known_home_and_valid_ids() {
    let m = given(&[facility()]);
    let bad_home = w::RegisterCart {
        cart_id: "c".into(),
        home: "mars".into(),
    };
    assert!(matches!(
        register_cart(&Cart::default(), &bad_home, m.facility.as_deref()),
        Err(DomainError::NotFound(_))
    ));
    assert!(matches!(
        register_cart(&Cart::default(), &bad_home, None),
        Err(DomainError::NotFound(_))
    ));
    let empty = w::RegisterCart {
        cart_id: String::new(),
        home: "home".into(),
    };
    assert!(matches!(
        register_cart(&Cart::default(), &empty, m.facility.as_deref()),
        Err(DomainError::Invalid(_))
    ));
}

fn reserved_model() -> Model {
    let mut m = given(&[
        facility(),
        cart("c", "home"),
        ssd("s", "c", SsdHealth::Ok, &["d"]),
    ]);
    let r = request(&m, "r1", "dock-1", &["d"]).unwrap();
    m.apply(10, &DispatchEvent::DatasetsRequested(r));
    let res = m.next_reservation("c").unwrap();
    m.apply(11, &DispatchEvent::CartReserved(res));
    m
}

#[test]
fn every_report_moves_exactly_as_the_contract_says() {
    let mut m = reserved_model();
    let steps = [
        (Report::Departed, None, CartStatus::Flight),
        (Report::Position, Some("j1"), CartStatus::Flight),
        (Report::Docked, None, CartStatus::Docked),
        (Report::TransferStarted, None, CartStatus::Transfer),
        (Report::TransferCompleted, None, CartStatus::Docked),
        (Report::Undocked, None, CartStatus::Flight),
        (Report::Position, Some("j1"), CartStatus::Flight),
        (Report::Returned, None, CartStatus::Free),
    ];
    for (i, (r, loc, to)) in steps.into_iter().enumerate() {
        let c = m.carts["c"].clone();
        let e = report(&c, &report_cmd("c", r, loc), m.facility.as_deref(), now()).unwrap();
        assert_eq!(e.status, to, "{r:?}");
        assert_eq!(e.request_id.as_deref(), Some("r1"));
        m.apply(20 + i as u64, &DispatchEvent::CartReported(e));
    }
    let c = &m.carts["c"];
    assert_eq!(
        (c.status, c.location.as_str(), c.job.is_none()),
        (CartStatus::Free, "home", true)
    );
    assert_eq!(m.requests["r1"].state(), w::RequestState::Delivered);
}

#[test]
fn eta_is_the_remaining_route_time_and_docking_lands_at_the_server() {
    let m = reserved_model();
    let c = &m.carts["c"];
    let e = report(
        c,
        &report_cmd("c", Report::Departed, None),
        m.facility.as_deref(),
        now(),
    )
    .unwrap();
    assert_eq!(e.eta, Some(now() + chrono::Duration::seconds(12)));
    let mut c = c.clone();
    c.apply(&DispatchEvent::CartReported(e));
    let e = report(
        &c,
        &report_cmd("c", Report::Position, Some("j2")),
        m.facility.as_deref(),
        now(),
    )
    .unwrap();
    assert_eq!(e.eta, Some(now() + chrono::Duration::seconds(2)));
    c.apply(&DispatchEvent::CartReported(e));
    let e = report(
        &c,
        &report_cmd("c", Report::Docked, None),
        m.facility.as_deref(),
        now(),
    )
    .unwrap();
    assert_eq!((e.location.as_str(), e.eta), ("dock-1", None));
}

#[test]
fn any_other_report_is_conflict_naming_the_state() {
    let m = given(&[facility(), cart("c", "home")]);
    let c = &m.carts["c"];
    for r in [
        Report::Departed,
        Report::Docked,
        Report::TransferStarted,
        Report::TransferCompleted,
        Report::Undocked,
        Report::Returned,
    ] {
        let e = report(c, &report_cmd("c", r, None), m.facility.as_deref(), now());
        assert!(
            matches!(&e, Err(DomainError::Conflict(msg)) if msg.contains("FREE")),
            "{r:?}: {e:?}"
        );
    }
    let e = report(
        c,
        &report_cmd("c", Report::Position, Some("j1")),
        m.facility.as_deref(),
        now(),
    );
    assert!(matches!(e, Err(DomainError::Conflict(_))));
}

#[test]
fn fault_is_allowed_from_any_status() {
    for status in [
        CartStatus::Free,
        CartStatus::Queue,
        CartStatus::Flight,
        CartStatus::Docked,
        CartStatus::Transfer,
        CartStatus::Fault,
    ] {
        let m = given(&[facility(), cart("c", "home")]);
        let mut c = m.carts["c"].clone();
        c.status = status;
        let e = report(
            &c,
            &report_cmd("c", Report::Fault, None),
            m.facility.as_deref(),
            now(),
        )
        .unwrap();
        assert_eq!(e.status, CartStatus::Fault);
    }
}

#[test]
fn report_errors_unknown_cart_missing_or_unknown_location() {
    let m = given(&[facility(), cart("c", "home")]);
    let f = m.facility.as_deref();
    assert!(matches!(
        report(
            &Cart::default(),
            &report_cmd("x", Report::Fault, None),
            f,
            now()
        ),
        Err(DomainError::NotFound(_))
    ));
    let mut c = m.carts["c"].clone();
    c.status = CartStatus::Flight;
    assert!(matches!(
        report(&c, &report_cmd("c", Report::Position, None), f, now()),
        Err(DomainError::Invalid(_))
    ));
    assert!(matches!(
        report(
            &c,
            &report_cmd("c", Report::Position, Some("mars")),
            f,
            now()
        ),
        Err(DomainError::NotFound(_))
    ));
}

// --- SSDs ------------------------------------------------------------------------------------

#[test]
fn register_ssd_and_its_errors() {
    let cmd = w::RegisterSsd {
        ssd_id: "s".into(),
        cart_id: "c".into(),
        capacity_bytes: 100,
        health: SsdHealth::Ok,
    };
    let e = register_ssd(&Ssd::default(), &cmd, true).unwrap();
    assert_eq!((e.ssd_id.as_str(), e.capacity_bytes), ("s", 100));
    assert!(matches!(
        register_ssd(&Ssd::default(), &cmd, false),
        Err(DomainError::NotFound(_))
    ));
    let mut s = Ssd::default();
    s.apply(&DispatchEvent::SsdRegistered(e));
    assert!(matches!(
        register_ssd(&s, &cmd, true),
        Err(DomainError::Conflict(_))
    ));
    let zero = w::RegisterSsd {
        capacity_bytes: 0,
        ..cmd
    };
    assert!(matches!(
        register_ssd(&Ssd::default(), &zero, true),
        Err(DomainError::Invalid(_))
    ));
}

#[test]
fn set_ssd_health_and_unknown_ssd() {
    let cmd = w::SetSsdHealth {
        ssd_id: "s".into(),
        health: SsdHealth::Failed,
    };
    assert!(matches!(
        set_ssd_health(&Ssd::default(), &cmd),
        Err(DomainError::NotFound(_))
    ));
    let mut s = Ssd::default();
    s.apply(&ssd("s", "c", SsdHealth::Ok, &[]));
    let e = set_ssd_health(&s, &cmd).unwrap();
    assert_eq!((e.cart_id.as_str(), e.health), ("c", SsdHealth::Failed));
    s.apply(&DispatchEvent::SsdHealthChanged(e));
    assert!(!s.healthy());
}

#[test]
fn put_dataset_must_fit_and_replaces_the_same_dataset() {
    let mut s = Ssd::default();
    s.apply(&ssd("s", "c", SsdHealth::Ok, &["old"])); // 10 of 100 bytes used
    let put = |d: &str, n: u64| w::PutDataset {
        ssd_id: "s".into(),
        dataset: d.into(),
        size_bytes: n,
    };
    assert!(put_dataset(&s, &put("new", 90)).is_ok());
    assert!(
        matches!(put_dataset(&s, &put("new", 91)), Err(DomainError::Conflict(m)) if m.contains("90 of 100"))
    );
    assert!(
        put_dataset(&s, &put("old", 100)).is_ok(),
        "replacing frees the old size"
    );
    s.apply(&DispatchEvent::DatasetPut(
        put_dataset(&s, &put("new", 50)).unwrap(),
    ));
    assert_eq!(s.used(), 60);
    assert!(matches!(
        put_dataset(&Ssd::default(), &put("x", 1)),
        Err(DomainError::NotFound(_))
    ));
    s.health = Some(SsdHealth::Failed);
    assert!(matches!(
        put_dataset(&s, &put("x", 1)),
        Err(DomainError::Conflict(_))
    ));
}

// --- requests and the dispatcher -------------------------------------------------------------

#[test]
fn request_errors_unknown_server_unknown_dataset_failed_copies_bad_lists() {
    let m = given(&[
        facility(),
        cart("c", "home"),
        ssd("s", "c", SsdHealth::Failed, &["broken"]),
        ssd("s2", "c", SsdHealth::Ok, &["d"]),
    ]);
    assert!(matches!(
        request(&m, "r", "nowhere", &["d"]),
        Err(DomainError::NotFound(_))
    ));
    assert!(
        matches!(
            request(&m, "r", "home", &["d"]),
            Err(DomainError::NotFound(_))
        ),
        "a storage node is no server"
    );
    assert!(matches!(
        request(&m, "r", "dock-1", &["nope"]),
        Err(DomainError::NotFound(_))
    ));
    assert!(matches!(
        request(&m, "r", "dock-1", &["broken"]),
        Err(DomainError::Conflict(_))
    ));
    assert!(matches!(
        request(&m, "r", "dock-1", &[]),
        Err(DomainError::Invalid(_))
    ));
    assert!(matches!(
        request(&m, "r", "dock-1", &[""]),
        Err(DomainError::Invalid(_))
    ));
}

#[test]
fn one_cart_carries_everything_it_holds_and_the_nearest_free_cart_wins() {
    let m = given(&[
        facility(),
        cart("far", "home"),
        cart("near", "home2"),
        ssd("s1", "far", SsdHealth::Ok, &["a", "b"]),
        ssd("s2", "near", SsdHealth::Degraded, &["a"]),
    ]);
    let r = request(&m, "r", "dock-1", &["a", "b", "a"]).unwrap();
    assert_eq!(r.datasets, ["a", "b"]);
    // "near" is nearer to dock-1 and takes "a"; "far" takes "b".
    assert_eq!(
        r.plan,
        vec![
            w::PlannedCart {
                cart_id: "near".into(),
                datasets: vec!["a".into()]
            },
            w::PlannedCart {
                cart_id: "far".into(),
                datasets: vec!["b".into()]
            }
        ]
    );
}

#[test]
fn equivalent_free_carts_share_a_burst_of_requests() {
    let mut events = vec![facility()];
    for i in 0..10 {
        events.push(cart(&format!("c{i}"), "home"));
        events.push(ssd(
            &format!("s{i}"),
            &format!("c{i}"),
            SsdHealth::Ok,
            &["d"],
        ));
    }
    let m = given(&events);
    let chosen: BTreeSet<String> = (0..50)
        .map(|i| {
            request(&m, &format!("r{i}"), "dock-1", &["d"])
                .unwrap()
                .plan[0]
                .cart_id
                .clone()
        })
        .collect();
    assert!(
        chosen.len() >= 5,
        "a burst planned on one view spreads: {chosen:?}"
    );
}

#[test]
fn busy_carts_queue_requests_first_come_first_served() {
    let mut m = reserved_model(); // "c" reserved for r1
    assert!(
        m.next_reservation("c").is_none(),
        "a busy cart is not reserved again"
    );
    for (i, id) in ["r2", "r3"].iter().enumerate() {
        let r = request(&m, id, "dock-2", &["d"]).unwrap();
        m.apply(30 + i as u64, &DispatchEvent::DatasetsRequested(r));
    }
    assert_eq!(m.requests["r2"].state(), w::RequestState::Queued);
    assert!(m.ready_carts().is_empty());
    // The cart comes back: r2 goes first, with the route from where it is.
    for (i, r) in [
        Report::Departed,
        Report::Docked,
        Report::TransferStarted,
        Report::TransferCompleted,
        Report::Undocked,
        Report::Returned,
    ]
    .into_iter()
    .enumerate()
    {
        let e = report(
            &m.carts["c"],
            &report_cmd("c", r, None),
            m.facility.as_deref(),
            now(),
        )
        .unwrap();
        m.apply(40 + i as u64, &DispatchEvent::CartReported(e));
    }
    assert_eq!(m.ready_carts(), ["c"]);
    let res = m.next_reservation("c").unwrap();
    assert_eq!(
        (
            res.request_id.as_str(),
            res.route.first().map(String::as_str)
        ),
        ("r2", Some("home"))
    );
    assert_eq!(res.route.last().map(String::as_str), Some("dock-2"));
    assert_eq!(res.bytes, 10);
    m.apply(50, &DispatchEvent::CartReserved(res));
    assert_eq!(m.requests["r2"].state(), w::RequestState::Dispatched);
    assert_eq!(m.queues["c"], ["r3"]);
}

#[test]
fn returning_without_delivering_puts_the_request_first_in_line_again() {
    let mut m = reserved_model();
    for (i, r) in [Report::Departed, Report::Returned].into_iter().enumerate() {
        let e = report(
            &m.carts["c"],
            &report_cmd("c", r, None),
            m.facility.as_deref(),
            now(),
        )
        .unwrap();
        m.apply(20 + i as u64, &DispatchEvent::CartReported(e));
    }
    assert_eq!(
        m.next_reservation("c").map(|r| r.request_id),
        Some("r1".into())
    );
}

#[test]
fn a_fault_hands_undelivered_datasets_to_another_cart_or_fails_them() {
    let mut m = given(&[
        facility(),
        cart("a", "home2"),
        cart("b", "home"),
        ssd("sa", "a", SsdHealth::Ok, &["shared", "solo"]),
        ssd("sb", "b", SsdHealth::Ok, &["shared"]),
    ]);
    let r = request(&m, "r", "dock-1", &["shared", "solo"]).unwrap();
    assert_eq!(r.plan.len(), 1);
    m.apply(10, &DispatchEvent::DatasetsRequested(r));
    let res = m.next_reservation("a").unwrap();
    m.apply(11, &DispatchEvent::CartReserved(res));
    let e = report(
        &m.carts["a"],
        &report_cmd("a", Report::Fault, None),
        m.facility.as_deref(),
        now(),
    )
    .unwrap();
    m.apply(12, &DispatchEvent::CartReported(e));
    assert_eq!(m.lost_shares(), [("r".to_string(), "a".to_string())]);
    let p = m.replan("r", "a").unwrap();
    assert_eq!(
        p.plan,
        vec![w::PlannedCart {
            cart_id: "b".into(),
            datasets: vec!["shared".into()]
        }]
    );
    assert_eq!(p.failed, ["solo"]);
    assert!(p.reason.as_deref().unwrap_or_default().contains("\"a\""));
    m.apply(13, &DispatchEvent::RequestReplanned(p));
    assert!(m.lost_shares().is_empty());
    assert_eq!(m.requests["r"].state(), w::RequestState::Failed);
    assert_eq!(
        m.next_reservation("b").map(|r| r.datasets),
        Some(vec!["shared".to_string()])
    );
    let info = m.request_info("r").unwrap();
    assert_eq!(
        info.carts
            .iter()
            .map(|c| c.cart_id.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
}

#[test]
fn a_fault_after_delivery_loses_nothing() {
    let mut m = reserved_model();
    for (i, r) in [
        Report::Departed,
        Report::Docked,
        Report::TransferStarted,
        Report::TransferCompleted,
        Report::Fault,
    ]
    .into_iter()
    .enumerate()
    {
        let e = report(
            &m.carts["c"],
            &report_cmd("c", r, None),
            m.facility.as_deref(),
            now(),
        )
        .unwrap();
        m.apply(20 + i as u64, &DispatchEvent::CartReported(e));
    }
    assert!(m.lost_shares().is_empty());
    assert_eq!(m.requests["r1"].state(), w::RequestState::Delivered);
}

#[test]
fn failed_ssds_and_faulted_carts_are_not_candidates() {
    let m = given(&[
        facility(),
        cart("c", "home"),
        ssd("s", "c", SsdHealth::Ok, &["d"]),
        ssd("t", "c", SsdHealth::Failed, &["e"]),
    ]);
    let (plan, unservable) = m.plan("dock-1", &["e".into()], &BTreeSet::new(), "r");
    assert!(plan.is_empty());
    assert_eq!(unservable, [Unservable::NoWorkingCopy("e".into())]);
    let mut m = m;
    let e = report(
        &m.carts["c"],
        &report_cmd("c", Report::Fault, None),
        m.facility.as_deref(),
        now(),
    )
    .unwrap();
    m.apply(10, &DispatchEvent::CartReported(e));
    assert!(matches!(
        request(&m, "r", "dock-1", &["d"]),
        Err(DomainError::Conflict(_))
    ));
}

#[test]
fn events_round_trip_as_the_contract_envelope_data() {
    let e = cart("c", "home");
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["type"], "CartRegistered");
    assert_eq!(v["data"]["cart_id"], "c");
    assert_eq!(serde_json::from_value::<DispatchEvent>(v).unwrap(), e);
}

#[test]
fn a_waiting_share_whose_ssd_fails_is_planned_again() {
    let mut m = given(&[
        facility(),
        cart("busy", "home2"),
        cart("spare", "home"),
        ssd("sb", "busy", SsdHealth::Ok, &["d"]),
        ssd("ss", "spare", SsdHealth::Ok, &["d"]),
    ]);
    // "busy" is out on r0, so r1 waits for it... until its SSD fails.
    let r0 = request(&m, "r0", "dock-1", &["d"]).unwrap();
    assert_eq!(r0.plan[0].cart_id, "busy");
    m.apply(10, &DispatchEvent::DatasetsRequested(r0));
    m.apply(
        11,
        &DispatchEvent::CartReserved(m.next_reservation("busy").unwrap()),
    );
    m.apply(
        12,
        &DispatchEvent::DatasetsRequested(w::DatasetsRequested {
            request_id: "r1".into(),
            server_id: "dock-1".into(),
            datasets: vec!["d".into()],
            plan: vec![w::PlannedCart {
                cart_id: "busy".into(),
                datasets: vec!["d".into()],
            }],
        }),
    );
    assert!(m.lost_shares().is_empty());
    m.apply(
        13,
        &DispatchEvent::SsdHealthChanged(w::SsdHealthChanged {
            ssd_id: "sb".into(),
            cart_id: "busy".into(),
            health: SsdHealth::Failed,
        }),
    );
    assert_eq!(m.lost_shares(), [("r1".to_string(), "busy".to_string())]);
    let p = m.replan("r1", "busy").unwrap();
    assert_eq!(
        p.plan,
        vec![w::PlannedCart {
            cart_id: "spare".into(),
            datasets: vec!["d".into()]
        }]
    );
    assert!(p.failed.is_empty());
    m.apply(14, &DispatchEvent::RequestReplanned(p));
    assert!(m.lost_shares().is_empty());
    assert_eq!(
        m.next_reservation("spare").map(|r| r.request_id),
        Some("r1".into())
    );
}
