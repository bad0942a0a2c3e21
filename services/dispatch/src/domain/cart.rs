//! The cart aggregate: its state, `apply`, and the `decide` of register-cart and cart-report.

use super::*;

/// The job a cart is on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub request_id: String,
    pub server_id: String,
    pub datasets: Vec<String>,
    pub route: Vec<String>,
    pub seconds: f64,
    pub bytes: u64,
    /// The transfer has completed.
    pub delivered: bool,
    /// The cart has undocked and drives home.
    pub returning: bool,
}

/// The cart aggregate (events on `dispatch.events.cart.<cart>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cart {
    pub registered: bool,
    pub cart_id: String,
    pub home: String,
    pub status: CartStatus,
    pub location: String,
    pub job: Option<Job>,
    pub eta: Option<DateTime<Utc>>,
}

impl Default for Cart {
    fn default() -> Self {
        Self {
            registered: false,
            cart_id: String::new(),
            home: String::new(),
            status: CartStatus::Free,
            location: String::new(),
            job: None,
            eta: None,
        }
    }
}

impl Cart {
    /// Folds one event of this cart.
    pub fn apply(&mut self, event: &DispatchEvent) {
        match event {
            DispatchEvent::CartRegistered(e) => {
                *self = Self {
                    registered: true,
                    cart_id: e.cart_id.clone(),
                    home: e.home.clone(),
                    status: CartStatus::Free,
                    location: e.home.clone(),
                    job: None,
                    eta: None,
                };
            }
            DispatchEvent::CartReserved(e) => {
                self.status = CartStatus::Queue;
                self.eta = None;
                self.job = Some(Job {
                    request_id: e.request_id.clone(),
                    server_id: e.server_id.clone(),
                    datasets: e.datasets.clone(),
                    route: e.route.clone(),
                    seconds: e.seconds,
                    bytes: e.bytes,
                    delivered: false,
                    returning: false,
                });
            }
            DispatchEvent::CartReported(e) => {
                self.status = e.status;
                self.location = e.location.clone();
                self.eta = e.eta;
                match e.report {
                    Report::TransferCompleted => {
                        if let Some(j) = &mut self.job {
                            j.delivered = true;
                        }
                    }
                    Report::Undocked => {
                        if let Some(j) = &mut self.job {
                            j.returning = true;
                        }
                    }
                    Report::Returned => self.job = None,
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// Where the cart drives to now: the server's dock on the way out, else home.
    #[must_use]
    pub fn destination(&self) -> &str {
        match &self.job {
            Some(j) if !j.returning => &j.server_id,
            _ => &self.home,
        }
    }
}

/// `register-cart`: a new cart, or a faulted one again after repair.
///
/// # Errors
/// Bad ids; home not in the facility (`NotFound`); an existing cart that is not in `FAULT`.
pub fn register_cart(
    cart: &Cart,
    cmd: &w::RegisterCart,
    facility: Option<&Graph>,
) -> Result<w::CartRegistered, DomainError> {
    check_id("cart_id", &cmd.cart_id)?;
    check_id("home", &cmd.home)?;
    if !facility.is_some_and(|f| f.contains(&cmd.home)) {
        return Err(DomainError::NotFound(format!(
            "home {:?} is not a node of the facility",
            cmd.home
        )));
    }
    if cart.registered && cart.status != CartStatus::Fault {
        return Err(DomainError::Conflict(format!(
            "cart {:?} is already registered and {}; only a FAULT cart can be registered again",
            cmd.cart_id,
            cart.status.as_str()
        )));
    }
    Ok(w::CartRegistered {
        cart_id: cmd.cart_id.clone(),
        home: cmd.home.clone(),
    })
}

/// The status a report moves a cart from, and to.
#[must_use]
pub fn transition(report: Report) -> (Option<CartStatus>, CartStatus) {
    use CartStatus::*;
    match report {
        Report::Departed => (Some(Queue), Flight),
        Report::Position => (Some(Flight), Flight),
        Report::Docked => (Some(Flight), Docked),
        Report::TransferStarted => (Some(Docked), Transfer),
        Report::TransferCompleted => (Some(Transfer), Docked),
        Report::Undocked => (Some(Docked), Flight),
        Report::Returned => (Some(Flight), Free),
        Report::Fault => (None, Fault),
    }
}

pub(super) fn eta_from(now: DateTime<Utc>, seconds: Option<f64>) -> Option<DateTime<Utc>> {
    let s = seconds.filter(|s| s.is_finite() && *s >= 0.0)?;
    Some(now + chrono::Duration::milliseconds((s * 1000.0).round() as i64))
}

/// `cart-report`: exactly the contract's transitions; `now` and the facility give the ETA.
///
/// # Errors
/// Unknown cart or location (`NotFound`), `position` without a location (`Invalid`), any other
/// transition (`Conflict`, naming the state).
pub fn report(
    cart: &Cart,
    cmd: &w::CartReport,
    facility: Option<&Graph>,
    now: DateTime<Utc>,
) -> Result<w::CartReported, DomainError> {
    check_id("cart_id", &cmd.cart_id)?;
    if let Some(l) = &cmd.location {
        check_id("location", l)?;
    }
    if !cart.registered {
        return Err(DomainError::NotFound(format!(
            "cart {:?} is not registered",
            cmd.cart_id
        )));
    }
    if cmd.report == Report::Position && cmd.location.is_none() {
        return Err(DomainError::Invalid(
            "a `position` report needs `location`".into(),
        ));
    }
    if let Some(l) = &cmd.location {
        if !facility.is_some_and(|f| f.contains(l)) {
            return Err(DomainError::NotFound(format!(
                "location {l:?} is not a node of the facility"
            )));
        }
    }
    let (from, to) = transition(cmd.report);
    if let Some(from) = from {
        if cart.status != from {
            return Err(DomainError::Conflict(format!(
                "cart {:?} is {}: `{}` is allowed only when it is {}",
                cmd.cart_id,
                cart.status.as_str(),
                cmd.report.as_str(),
                from.as_str()
            )));
        }
    }
    // The state after the report, to compute the location and the ETA.
    let mut after = cart.clone();
    let location = match cmd.report {
        Report::Returned => cart.home.clone(),
        Report::Docked => cmd.location.clone().unwrap_or_else(|| {
            cart.job
                .as_ref()
                .filter(|j| !j.returning)
                .map_or(cart.location.clone(), |j| j.server_id.clone())
        }),
        _ => cmd
            .location
            .clone()
            .unwrap_or_else(|| cart.location.clone()),
    };
    if cmd.report == Report::Undocked {
        if let Some(j) = &mut after.job {
            j.returning = true;
        }
    }
    let eta = match cmd.report {
        Report::Departed | Report::Position | Report::Undocked => {
            let dest = after.destination().to_string();
            eta_from(
                now,
                facility
                    .and_then(|f| f.route(&location, &dest))
                    .map(|(_, s)| s),
            )
        }
        _ => None,
    };
    Ok(w::CartReported {
        cart_id: cmd.cart_id.clone(),
        report: cmd.report,
        status: to,
        location,
        request_id: cart.job.as_ref().map(|j| j.request_id.clone()),
        eta,
    })
}
