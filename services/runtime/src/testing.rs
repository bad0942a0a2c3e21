//! Given / when / then for the pure domains' tests: the state folded from `given` events, the
//! decision `when` makes on it, and `then` the one event it must append (or `then_err`, the refusal,
//! compared with `==`).
//!
//! ```ignore
//! given::<Cart>([added("apple", 2, 125)])
//!     .when(|cart| decide(cart, &remove("pear"), now(), oid()))
//!     .then_err(ShopError::NotFound("item \"pear\" is not in the cart of \"c\"".into()));
//! ```

use crate::store::Aggregate;
use std::fmt::Debug;

/// The state folded from past events.
pub struct Given<A> {
    state: A,
}

/// The state folded from `events`.
pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A> {
    let mut state = A::default();
    for e in events {
        state.apply(&e);
    }
    Given { state }
}

impl<A: Aggregate> Given<A> {
    /// The state itself.
    #[must_use]
    pub fn state(&self) -> &A {
        &self.state
    }

    /// Decides on the state.
    pub fn when<E>(self, decide: impl FnOnce(&A) -> Result<A::Event, E>) -> When<A, E> {
        let result = decide(&self.state);
        When {
            state: self.state,
            result,
        }
    }
}

/// A decision taken on a state.
pub struct When<A: Aggregate, E> {
    state: A,
    result: Result<<A as Aggregate>::Event, E>,
}

impl<A, E> When<A, E>
where
    A: Aggregate,
    A::Event: PartialEq + Debug,
    E: PartialEq + Debug,
{
    /// Asserts that the decision is `expected`; returns the state after it.
    ///
    /// # Panics
    /// The decision is another event, or a refusal.
    #[track_caller]
    pub fn then(self, expected: A::Event) -> A {
        let event = self.event();
        assert_eq!(event, expected);
        let mut state = self.state;
        state.apply(&event);
        state
    }

    /// Asserts that the decision is the refusal `expected`.
    ///
    /// # Panics
    /// The decision is an event, or another refusal.
    #[track_caller]
    pub fn then_err(self, expected: E) {
        assert_eq!(self.error(), expected);
    }

    /// The event decided (for a test that checks it piece by piece).
    ///
    /// # Panics
    /// The decision is a refusal.
    #[track_caller]
    pub fn event(&self) -> A::Event {
        match &self.result {
            Ok(e) => e.clone(),
            Err(e) => panic!("expected an event, the command was refused: {e:?}"),
        }
    }

    /// The refusal.
    ///
    /// # Panics
    /// The decision is an event.
    #[track_caller]
    pub fn error(self) -> E {
        match self.result {
            Ok(e) => panic!("expected a refusal, the command decided {e:?}"),
            Err(e) => e,
        }
    }

    /// The state after the decided event.
    ///
    /// # Panics
    /// The decision is a refusal.
    #[track_caller]
    pub fn state_after(self) -> A {
        let event = self.event();
        let mut state = self.state;
        state.apply(&event);
        state
    }
}
