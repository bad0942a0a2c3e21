//! Given / when / then tests (`runtime::testing`) of every command, error, transition and
//! dispatcher decision; the graph's routing is tested plainly.

use super::*;
use chrono::TimeZone;
use runtime::testing::{given, given_state, Fold};

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

/// The model folds an event at the next sequence (1, 2, ...), as the stream numbers them.
impl Fold for Model {
    type Event = DispatchEvent;
    fn fold(&mut self, event: &DispatchEvent) {
        let seq = self.seq + 1;
        self.apply(seq, event);
    }
}

/// The model folded from `events`.
fn folded(events: &[DispatchEvent]) -> Model {
    given::<Model>(events.to_vec()).state().clone()
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

/// Cart `id` reports `r` (at `location`), decided on the model (its cart, its facility) at [`now`].
fn reports<'a>(
    id: &'a str,
    r: Report,
    location: Option<&'a str>,
) -> impl FnOnce(&Model) -> Result<DispatchEvent, DomainError> + 'a {
    move |m| {
        report(
            &m.carts[id],
            &report_cmd(id, r, location),
            m.facility.as_deref(),
            now(),
        )
        .map(DispatchEvent::CartReported)
    }
}

/// Request `id` for `datasets` at `server`, decided on the model.
fn requests<'a>(
    id: &'a str,
    server: &'a str,
    datasets: &'a [&'a str],
) -> impl FnOnce(&Model) -> Result<DispatchEvent, DomainError> + 'a {
    move |m| request(m, id, server, datasets).map(DispatchEvent::DatasetsRequested)
}

/// The dispatcher's reservation of `cart` now, if any.
fn reserves(cart: &str) -> impl FnOnce(&Model) -> Option<DispatchEvent> + '_ {
    move |m| m.next_reservation(cart).map(DispatchEvent::CartReserved)
}

fn reserved(
    cart: &str,
    request: &str,
    server: &str,
    datasets: &[&str],
    route: &[&str],
    seconds: f64,
    bytes: u64,
) -> DispatchEvent {
    DispatchEvent::CartReserved(w::CartReserved {
        cart_id: cart.into(),
        request_id: request.into(),
        server_id: server.into(),
        datasets: datasets.iter().map(|d| (*d).to_string()).collect(),
        route: route.iter().map(|n| (*n).to_string()).collect(),
        seconds,
        bytes,
    })
}

fn planned(cart: &str, datasets: &[&str]) -> w::PlannedCart {
    w::PlannedCart {
        cart_id: cart.into(),
        datasets: datasets.iter().map(|d| (*d).to_string()).collect(),
    }
}

/// The report in a `CartReported` event.
fn reported(e: DispatchEvent) -> w::CartReported {
    match e {
        DispatchEvent::CartReported(r) => r,
        other => panic!("expected a cart report, got {other:?}"),
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
    let invalid = |m: &str| Some(DomainError::Invalid(m.into()));
    let (mut n, e) = hall();
    n.push(node("island", NodeKind::Dock));
    assert_eq!(
        Graph::new(n, e).err(),
        invalid("the facility must be connected: 1 of 7 nodes cannot be reached from \"home\"")
    );
    let (n, mut e) = hall();
    e.push(edge("home", "mars", 1.0));
    assert_eq!(
        Graph::new(n, e).err(),
        invalid("edge \"home\" - \"mars\" names a node that is not in `nodes`")
    );
    let (n, mut e) = hall();
    e.push(edge("home", "j2", -1.0));
    assert_eq!(
        Graph::new(n, e).err(),
        invalid("edge \"home\" - \"j2\": `seconds` must be a finite number >= 0")
    );
    let (mut n, e) = hall();
    n.push(node("home", NodeKind::Dock));
    assert_eq!(
        Graph::new(n, e).err(),
        invalid("node \"home\" appears twice")
    );
    assert_eq!(
        Graph::new(vec![], vec![]).err(),
        invalid("`nodes` must not be empty")
    );
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
    let m = folded(&[facility()]);
    let f = m.facility.as_deref();
    let cmd = w::RegisterCart {
        cart_id: "c".into(),
        home: "home".into(),
    };
    let registers = |c: &Cart| register_cart(c, &cmd, f).map(DispatchEvent::CartRegistered);
    let c = given::<Cart>([]).when(registers).then(cart("c", "home"));
    assert_eq!((c.status, c.location.as_str()), (CartStatus::Free, "home"));
    let mut c = given_state(c)
        .when(registers)
        .then_err(DomainError::Conflict(
            "cart \"c\" is already registered and FREE; only a FAULT cart can be registered again"
                .into(),
        ));
    c.status = CartStatus::Fault;
    given_state(c).when(registers).then(cart("c", "home"));
}

#[test]
fn register_cart_needs_a_known_home_and_valid_ids() {
    let m = folded(&[facility()]);
    let bad_home = w::RegisterCart {
        cart_id: "c".into(),
        home: "mars".into(),
    };
    let not_home = DomainError::NotFound("home \"mars\" is not a node of the facility".into());
    given::<Cart>([])
        .when(|c| register_cart(c, &bad_home, m.facility.as_deref()))
        .then_err(not_home.clone());
    given::<Cart>([])
        .when(|c| register_cart(c, &bad_home, None))
        .then_err(not_home);
    let empty = w::RegisterCart {
        cart_id: String::new(),
        home: "home".into(),
    };
    given::<Cart>([])
        .when(|c| register_cart(c, &empty, m.facility.as_deref()))
        .then_err(DomainError::Invalid("`cart_id` must not be empty".into()));
}

/// Cart "c" at home with SSD "s" holding "d", reserved for request "r1" to dock-1.
fn reserved_model() -> Model {
    let m = folded(&[
        facility(),
        cart("c", "home"),
        ssd("s", "c", SsdHealth::Ok, &["d"]),
    ]);
    let m = given_state(m)
        .when(requests("r1", "dock-1", &["d"]))
        .state_after();
    given_state(m)
        .when_total(reserves("c"))
        .then_events([reserved(
            "c",
            "r1",
            "dock-1",
            &["d"],
            &["home", "j1", "j2", "dock-1"],
            12.0,
            10,
        )])
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
    for (r, loc, to) in steps {
        let when = given_state(m).when(reports("c", r, loc));
        let e = reported(when.event());
        assert_eq!(e.status, to, "{r:?}");
        assert_eq!(e.request_id.as_deref(), Some("r1"));
        m = when.state_after();
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
    let when = given_state(reserved_model()).when(reports("c", Report::Departed, None));
    assert_eq!(
        reported(when.event()).eta,
        Some(now() + chrono::Duration::seconds(12))
    );
    let when = given_state(when.state_after()).when(reports("c", Report::Position, Some("j2")));
    assert_eq!(
        reported(when.event()).eta,
        Some(now() + chrono::Duration::seconds(2))
    );
    let e = reported(
        given_state(when.state_after())
            .when(reports("c", Report::Docked, None))
            .event(),
    );
    assert_eq!((e.location.as_str(), e.eta), ("dock-1", None));
}

#[test]
fn any_other_report_is_conflict_naming_the_state() {
    let m = folded(&[facility(), cart("c", "home")]);
    for (r, location, allowed_in) in [
        (Report::Departed, None, "QUEUE"),
        (Report::Docked, None, "FLIGHT"),
        (Report::TransferStarted, None, "DOCKED"),
        (Report::TransferCompleted, None, "TRANSFER"),
        (Report::Undocked, None, "DOCKED"),
        (Report::Returned, None, "FLIGHT"),
        (Report::Position, Some("j1"), "FLIGHT"),
    ] {
        given_state(m.clone())
            .when(reports("c", r, location))
            .then_err(DomainError::Conflict(format!(
                "cart \"c\" is FREE: `{}` is allowed only when it is {allowed_in}",
                r.as_str()
            )));
    }
}

#[test]
fn fault_is_allowed_from_any_status() {
    let m = folded(&[facility(), cart("c", "home")]);
    for status in [
        CartStatus::Free,
        CartStatus::Queue,
        CartStatus::Flight,
        CartStatus::Docked,
        CartStatus::Transfer,
        CartStatus::Fault,
    ] {
        let mut c = m.carts["c"].clone();
        c.status = status;
        given_state(c)
            .when(|c| {
                report(
                    c,
                    &report_cmd("c", Report::Fault, None),
                    m.facility.as_deref(),
                    now(),
                )
            })
            .then_ok(w::CartReported {
                cart_id: "c".into(),
                report: Report::Fault,
                status: CartStatus::Fault,
                location: "home".into(),
                request_id: None,
                eta: None,
            });
    }
}

#[test]
fn report_errors_unknown_cart_missing_or_unknown_location() {
    let m = folded(&[facility(), cart("c", "home")]);
    let f = m.facility.as_deref();
    given::<Cart>([])
        .when(|c| report(c, &report_cmd("x", Report::Fault, None), f, now()))
        .then_err(DomainError::NotFound("cart \"x\" is not registered".into()));
    let mut c = m.carts["c"].clone();
    c.status = CartStatus::Flight;
    let c = given_state(c)
        .when(|c| report(c, &report_cmd("c", Report::Position, None), f, now()))
        .then_err(DomainError::Invalid(
            "a `position` report needs `location`".into(),
        ));
    given_state(c)
        .when(|c| {
            report(
                c,
                &report_cmd("c", Report::Position, Some("mars")),
                f,
                now(),
            )
        })
        .then_err(DomainError::NotFound(
            "location \"mars\" is not a node of the facility".into(),
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
    let registers = |cmd: &w::RegisterSsd, cart_exists: bool| {
        let cmd = cmd.clone();
        move |s: &Ssd| register_ssd(s, &cmd, cart_exists).map(DispatchEvent::SsdRegistered)
    };
    let s = given::<Ssd>([])
        .when(registers(&cmd, true))
        .then(ssd("s", "c", SsdHealth::Ok, &[]));
    given::<Ssd>([])
        .when(registers(&cmd, false))
        .then_err(DomainError::NotFound("cart \"c\" is not registered".into()));
    given_state(s)
        .when(registers(&cmd, true))
        .then_err(DomainError::Conflict(
            "SSD \"s\" is already registered on cart \"c\"".into(),
        ));
    let zero = w::RegisterSsd {
        capacity_bytes: 0,
        ..cmd
    };
    given::<Ssd>([])
        .when(registers(&zero, true))
        .then_err(DomainError::Invalid("`capacity_bytes` must be >= 1".into()));
}

#[test]
fn set_ssd_health_and_unknown_ssd() {
    let cmd = w::SetSsdHealth {
        ssd_id: "s".into(),
        health: SsdHealth::Failed,
    };
    let sets = |s: &Ssd| set_ssd_health(s, &cmd).map(DispatchEvent::SsdHealthChanged);
    given::<Ssd>([])
        .when(sets)
        .then_err(DomainError::NotFound("SSD \"s\" is not registered".into()));
    let s = given::<Ssd>([ssd("s", "c", SsdHealth::Ok, &[])])
        .when(sets)
        .then(DispatchEvent::SsdHealthChanged(w::SsdHealthChanged {
            ssd_id: "s".into(),
            cart_id: "c".into(),
            health: SsdHealth::Failed,
        }));
    assert!(!s.healthy());
}

#[test]
fn put_dataset_must_fit_and_replaces_the_same_dataset() {
    let puts = |d: &str, n: u64| {
        let cmd = w::PutDataset {
            ssd_id: "s".into(),
            dataset: d.into(),
            size_bytes: n,
        };
        move |s: &Ssd| put_dataset(s, &cmd).map(DispatchEvent::DatasetPut)
    };
    let put = |d: &str, n: u64| {
        DispatchEvent::DatasetPut(w::DatasetPut {
            ssd_id: "s".into(),
            cart_id: "c".into(),
            dataset: d.into(),
            size_bytes: n,
        })
    };
    let given_old = || given::<Ssd>([ssd("s", "c", SsdHealth::Ok, &["old"])]); // 10 of 100 bytes used
    given_old().when(puts("new", 90)).then(put("new", 90));
    given_old()
        .when(puts("new", 91))
        .then_err(DomainError::Conflict(
            "dataset \"new\" (91 bytes) does not fit SSD \"s\": 90 of 100 bytes free".into(),
        ));
    // Replacing frees the old size.
    given_old().when(puts("old", 100)).then(put("old", 100));
    let mut s = given_old().when(puts("new", 50)).then(put("new", 50));
    assert_eq!(s.used(), 60);
    given::<Ssd>([])
        .when(puts("x", 1))
        .then_err(DomainError::NotFound("SSD \"s\" is not registered".into()));
    s.health = Some(SsdHealth::Failed);
    given_state(s)
        .when(puts("x", 1))
        .then_err(DomainError::Conflict(
            "SSD \"s\" is failed and takes no data".into(),
        ));
}

// --- requests and the dispatcher -------------------------------------------------------------

#[test]
fn request_errors_unknown_server_unknown_dataset_failed_copies_bad_lists() {
    let m = folded(&[
        facility(),
        cart("c", "home"),
        ssd("s", "c", SsdHealth::Failed, &["broken"]),
        ssd("s2", "c", SsdHealth::Ok, &["d"]),
    ]);
    let refused = |server: &str, datasets: &[&str], expected: DomainError| {
        given_state(m.clone())
            .when(requests("r", server, datasets))
            .then_err(expected);
    };
    refused(
        "nowhere",
        &["d"],
        DomainError::NotFound("server \"nowhere\" has no dock in the facility".into()),
    );
    // A storage node is no server.
    refused(
        "home",
        &["d"],
        DomainError::NotFound("server \"home\" has no dock in the facility".into()),
    );
    refused(
        "dock-1",
        &["nope"],
        DomainError::NotFound("no SSD holds dataset(s) [\"nope\"]".into()),
    );
    refused(
        "dock-1",
        &["broken"],
        DomainError::Conflict(
            "dataset(s) [\"broken\"] are only on failed SSDs or faulted carts".into(),
        ),
    );
    refused(
        "dock-1",
        &[],
        DomainError::Invalid("`datasets` must name 1 to 1000 datasets".into()),
    );
    refused(
        "dock-1",
        &[""],
        DomainError::Invalid("`datasets[]` must not be empty".into()),
    );
}

#[test]
fn one_cart_carries_everything_it_holds_and_the_nearest_free_cart_wins() {
    given::<Model>([
        facility(),
        cart("far", "home"),
        cart("near", "home2"),
        ssd("s1", "far", SsdHealth::Ok, &["a", "b"]),
        ssd("s2", "near", SsdHealth::Degraded, &["a"]),
    ])
    .when(|m| request(m, "r", "dock-1", &["a", "b", "a"]))
    .then_ok(w::DatasetsRequested {
        request_id: "r".into(),
        server_id: "dock-1".into(),
        datasets: vec!["a".into(), "b".into()],
        // "near" is nearer to dock-1 and takes "a"; "far" takes "b".
        plan: vec![planned("near", &["a"]), planned("far", &["b"])],
    });
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
    let m = folded(&events);
    let chosen: BTreeSet<String> = (0..50)
        .map(|i| {
            given_state(m.clone())
                .when(|m| request(m, &format!("r{i}"), "dock-1", &["d"]))
                .ok()
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
    // "c" reserved for r1: a busy cart is not reserved again.
    let mut m = given_state(reserved_model())
        .when_total(reserves("c"))
        .then_events([]);
    for id in ["r2", "r3"] {
        m = given_state(m)
            .when(requests(id, "dock-2", &["d"]))
            .state_after();
    }
    assert_eq!(m.requests["r2"].state(), w::RequestState::Queued);
    assert!(m.ready_carts().is_empty());
    // The cart comes back: r2 goes first, with the route from where it is.
    for r in [
        Report::Departed,
        Report::Docked,
        Report::TransferStarted,
        Report::TransferCompleted,
        Report::Undocked,
        Report::Returned,
    ] {
        m = given_state(m).when(reports("c", r, None)).state_after();
    }
    assert_eq!(m.ready_carts(), ["c"]);
    let m = given_state(m)
        .when_total(reserves("c"))
        .then_events([reserved(
            "c",
            "r2",
            "dock-2",
            &["d"],
            &["home", "j1", "dock-2"],
            55.0,
            10,
        )]);
    assert_eq!(m.requests["r2"].state(), w::RequestState::Dispatched);
    assert_eq!(m.queues["c"], ["r3"]);
}

#[test]
fn returning_without_delivering_puts_the_request_first_in_line_again() {
    let mut m = reserved_model();
    for r in [Report::Departed, Report::Returned] {
        m = given_state(m).when(reports("c", r, None)).state_after();
    }
    given_state(m)
        .when_total(|m| m.next_reservation("c").map(|r| r.request_id))
        .then_ok(Some("r1".into()));
}

#[test]
fn a_fault_hands_undelivered_datasets_to_another_cart_or_fails_them() {
    let m = folded(&[
        facility(),
        cart("a", "home2"),
        cart("b", "home"),
        ssd("sa", "a", SsdHealth::Ok, &["shared", "solo"]),
        ssd("sb", "b", SsdHealth::Ok, &["shared"]),
    ]);
    let m = given_state(m)
        .when(requests("r", "dock-1", &["shared", "solo"]))
        .then(DispatchEvent::DatasetsRequested(w::DatasetsRequested {
            request_id: "r".into(),
            server_id: "dock-1".into(),
            datasets: vec!["shared".into(), "solo".into()],
            plan: vec![planned("a", &["shared", "solo"])],
        }));
    let m = given_state(m)
        .when_total(reserves("a"))
        .then_events([reserved(
            "a",
            "r",
            "dock-1",
            &["shared", "solo"],
            &["home2", "j2", "dock-1"],
            3.0,
            20,
        )]);
    let m = given_state(m)
        .when(reports("a", Report::Fault, None))
        .state_after();
    assert_eq!(m.lost_shares(), [("r".to_string(), "a".to_string())]);
    let m = given_state(m)
        .when_total(|m| m.replan("r", "a").map(DispatchEvent::RequestReplanned))
        .then_events([DispatchEvent::RequestReplanned(w::RequestReplanned {
            request_id: "r".into(),
            cart_id: "a".into(),
            datasets: vec!["shared".into(), "solo".into()],
            plan: vec![planned("b", &["shared"])],
            failed: vec!["solo".into()],
            reason: Some(
                "cart \"a\" faulted before delivering and no other working cart holds a healthy copy of [\"solo\"]"
                    .into(),
            ),
        })]);
    assert!(m.lost_shares().is_empty());
    assert_eq!(m.requests["r"].state(), w::RequestState::Failed);
    let info = m.request_info("r").unwrap();
    assert_eq!(
        info.carts
            .iter()
            .map(|c| c.cart_id.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    given_state(m)
        .when_total(|m| m.next_reservation("b").map(|r| r.datasets))
        .then_ok(Some(vec!["shared".to_string()]));
}

#[test]
fn a_fault_after_delivery_loses_nothing() {
    let mut m = reserved_model();
    for r in [
        Report::Departed,
        Report::Docked,
        Report::TransferStarted,
        Report::TransferCompleted,
        Report::Fault,
    ] {
        m = given_state(m).when(reports("c", r, None)).state_after();
    }
    assert!(m.lost_shares().is_empty());
    assert_eq!(m.requests["r1"].state(), w::RequestState::Delivered);
}

#[test]
fn failed_ssds_and_faulted_carts_are_not_candidates() {
    let m = given::<Model>([
        facility(),
        cart("c", "home"),
        ssd("s", "c", SsdHealth::Ok, &["d"]),
        ssd("t", "c", SsdHealth::Failed, &["e"]),
    ])
    .when_total(|m| m.plan("dock-1", &["e".into()], &BTreeSet::new(), "r"))
    .then_ok((vec![], vec![Unservable::NoWorkingCopy("e".into())]));
    let m = given_state(m)
        .when(reports("c", Report::Fault, None))
        .state_after();
    given_state(m)
        .when(requests("r", "dock-1", &["d"]))
        .then_err(DomainError::Conflict(
            "dataset(s) [\"d\"] are only on failed SSDs or faulted carts".into(),
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
    let m = folded(&[
        facility(),
        cart("busy", "home2"),
        cart("spare", "home"),
        ssd("sb", "busy", SsdHealth::Ok, &["d"]),
        ssd("ss", "spare", SsdHealth::Ok, &["d"]),
    ]);
    // "busy" is out on r0, so r1 waits for it... until its SSD fails.
    let m = given_state(m).when(requests("r0", "dock-1", &["d"])).then(
        DispatchEvent::DatasetsRequested(w::DatasetsRequested {
            request_id: "r0".into(),
            server_id: "dock-1".into(),
            datasets: vec!["d".into()],
            plan: vec![planned("busy", &["d"])],
        }),
    );
    let mut m = given_state(m)
        .when_total(reserves("busy"))
        .then_events([reserved(
            "busy",
            "r0",
            "dock-1",
            &["d"],
            &["home2", "j2", "dock-1"],
            3.0,
            10,
        )]);
    m.fold(&DispatchEvent::DatasetsRequested(w::DatasetsRequested {
        request_id: "r1".into(),
        server_id: "dock-1".into(),
        datasets: vec!["d".into()],
        plan: vec![planned("busy", &["d"])],
    }));
    assert!(m.lost_shares().is_empty());
    m.fold(&DispatchEvent::SsdHealthChanged(w::SsdHealthChanged {
        ssd_id: "sb".into(),
        cart_id: "busy".into(),
        health: SsdHealth::Failed,
    }));
    assert_eq!(m.lost_shares(), [("r1".to_string(), "busy".to_string())]);
    let m = given_state(m)
        .when_total(|m| m.replan("r1", "busy").map(DispatchEvent::RequestReplanned))
        .then_events([DispatchEvent::RequestReplanned(w::RequestReplanned {
            request_id: "r1".into(),
            cart_id: "busy".into(),
            datasets: vec!["d".into()],
            plan: vec![planned("spare", &["d"])],
            failed: vec![],
            reason: None,
        })]);
    assert!(m.lost_shares().is_empty());
    given_state(m)
        .when_total(|m| m.next_reservation("spare").map(|r| r.request_id))
        .then_ok(Some("r1".into()));
}
