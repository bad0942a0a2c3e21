//! The SSD aggregate: its state, `apply`, and the `decide` of its commands.

use super::*;

/// The SSD aggregate (events on `dispatch.events.ssd.<ssd>`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Ssd {
    pub registered: bool,
    pub ssd_id: String,
    pub cart_id: String,
    pub capacity_bytes: u64,
    pub health: Option<SsdHealth>,
    pub datasets: BTreeMap<String, u64>,
}

impl Ssd {
    /// Bytes taken by its datasets.
    #[must_use]
    pub fn used(&self) -> u64 {
        self.datasets.values().sum()
    }

    /// Whether it can serve data.
    #[must_use]
    pub fn healthy(&self) -> bool {
        self.registered && self.health.is_some_and(|h| h != SsdHealth::Failed)
    }

    /// Folds one event of this SSD.
    pub fn apply(&mut self, event: &DispatchEvent) {
        match event {
            DispatchEvent::SsdRegistered(e) => {
                *self = Self {
                    registered: true,
                    ssd_id: e.ssd_id.clone(),
                    cart_id: e.cart_id.clone(),
                    capacity_bytes: e.capacity_bytes,
                    health: Some(e.health),
                    datasets: e
                        .datasets
                        .iter()
                        .map(|d| (d.dataset.clone(), d.size_bytes))
                        .collect(),
                };
            }
            DispatchEvent::SsdHealthChanged(e) => self.health = Some(e.health),
            DispatchEvent::DatasetPut(e) => {
                self.datasets.insert(e.dataset.clone(), e.size_bytes);
            }
            _ => {}
        }
    }

    /// The wire view.
    #[must_use]
    pub fn info(&self) -> w::SsdInfo {
        w::SsdInfo {
            ssd_id: self.ssd_id.clone(),
            health: self.health.unwrap_or(SsdHealth::Ok),
            capacity_bytes: self.capacity_bytes,
            used_bytes: self.used(),
            datasets: self.datasets.keys().cloned().collect(),
        }
    }
}

/// `register-ssd`.
///
/// # Errors
/// Bad ids or capacity 0 (`Invalid`); unknown cart (`NotFound`); an SSD id already registered.
pub fn register_ssd(
    ssd: &Ssd,
    cmd: &w::RegisterSsd,
    cart_exists: bool,
) -> Result<w::SsdRegistered, DomainError> {
    check_id("ssd_id", &cmd.ssd_id)?;
    check_id("cart_id", &cmd.cart_id)?;
    if cmd.capacity_bytes == 0 {
        return Err(DomainError::Invalid("`capacity_bytes` must be >= 1".into()));
    }
    if !cart_exists {
        return Err(DomainError::NotFound(format!(
            "cart {:?} is not registered",
            cmd.cart_id
        )));
    }
    if ssd.registered {
        return Err(DomainError::Conflict(format!(
            "SSD {:?} is already registered on cart {:?}",
            cmd.ssd_id, ssd.cart_id
        )));
    }
    Ok(w::SsdRegistered {
        ssd_id: cmd.ssd_id.clone(),
        cart_id: cmd.cart_id.clone(),
        capacity_bytes: cmd.capacity_bytes,
        health: cmd.health,
        datasets: vec![],
    })
}

/// `set-ssd-health`.
///
/// # Errors
/// Bad id; unknown SSD.
pub fn set_ssd_health(
    ssd: &Ssd,
    cmd: &w::SetSsdHealth,
) -> Result<w::SsdHealthChanged, DomainError> {
    check_id("ssd_id", &cmd.ssd_id)?;
    if !ssd.registered {
        return Err(DomainError::NotFound(format!(
            "SSD {:?} is not registered",
            cmd.ssd_id
        )));
    }
    Ok(w::SsdHealthChanged {
        ssd_id: cmd.ssd_id.clone(),
        cart_id: ssd.cart_id.clone(),
        health: cmd.health,
    })
}

/// `put-dataset`: replaces the size of a dataset the SSD already holds.
///
/// # Errors
/// Bad ids; unknown SSD; a failed SSD or not enough free space (`Conflict`).
pub fn put_dataset(ssd: &Ssd, cmd: &w::PutDataset) -> Result<w::DatasetPut, DomainError> {
    check_id("ssd_id", &cmd.ssd_id)?;
    check_id("dataset", &cmd.dataset)?;
    if !ssd.registered {
        return Err(DomainError::NotFound(format!(
            "SSD {:?} is not registered",
            cmd.ssd_id
        )));
    }
    if ssd.health == Some(SsdHealth::Failed) {
        return Err(DomainError::Conflict(format!(
            "SSD {:?} is failed and takes no data",
            cmd.ssd_id
        )));
    }
    let used_without = ssd.used() - ssd.datasets.get(&cmd.dataset).copied().unwrap_or(0);
    let free = ssd.capacity_bytes.saturating_sub(used_without);
    if cmd.size_bytes > free {
        return Err(DomainError::Conflict(format!(
            "dataset {:?} ({} bytes) does not fit SSD {:?}: {} of {} bytes free",
            cmd.dataset, cmd.size_bytes, cmd.ssd_id, free, ssd.capacity_bytes
        )));
    }
    Ok(w::DatasetPut {
        ssd_id: cmd.ssd_id.clone(),
        cart_id: ssd.cart_id.clone(),
        dataset: cmd.dataset.clone(),
        size_bytes: cmd.size_bytes,
    })
}
