//! Given / when / then for the pure domains' tests: the state folded from `given` events, the
//! decision `when` makes on it, and `then` what it must decide: the one event it appends (`then`),
//! its events (`then_events`, for a decision that appends none, one or several), a value that is
//! no event (`then_ok`), or the refusal (`then_err`); all compared with `==`.
//!
//! ```ignore
//! given::<Cart>([added("apple", 2, 125)])
//!     .when(|cart| decide(cart, &remove("pear"), now(), oid()))
//!     .then_err(ShopError::NotFound("item \"pear\" is not in the cart of \"c\"".into()));
//! ```
//!
//! A state is folded by [`Fold`], which every [`Aggregate`] is through [`Aggregate::apply`]; a state
//! folded some other way (a read model) implements [`Fold`] itself, and a state that is no fold of
//! events at all (parsed metadata) is taken as it is by [`given_state`]:
//!
//! ```ignore
//! given_state(calculator())
//!     .when(|m| m.check_args("future_add", &args(json!({"a": 1}))))
//!     .then_ok(args(json!({"a": 1, "b": 200})));
//! given::<ServerState>([joined("a")])
//!     .when_total(|s| decide_heard(s, "a", "dfs.chunk.a")) // an Option: no event or one
//!     .then_events([]);
//! ```

use crate::store::Aggregate;
use std::convert::Infallible;
use std::fmt::Debug;

/// How a state takes in one event. Every [`Aggregate`] does it with [`Aggregate::apply`]; a state
/// folded otherwise (a read model that also counts sequences, say) implements it itself.
pub trait Fold {
    /// The event folded.
    type Event;
    /// Folds one event into the state.
    fn fold(&mut self, event: &Self::Event);
}

impl<A: Aggregate> Fold for A {
    type Event = A::Event;
    fn fold(&mut self, event: &A::Event) {
        self.apply(event);
    }
}

/// The state folded from past events.
pub struct Given<S> {
    state: S,
}

/// The state folded from `events`, starting from the default state.
pub fn given<S: Fold + Default>(events: impl IntoIterator<Item = S::Event>) -> Given<S> {
    let mut state = S::default();
    for e in events {
        state.fold(&e);
    }
    Given { state }
}

/// A state taken as it is (built by hand, or no fold of events).
pub fn given_state<S>(state: S) -> Given<S> {
    Given { state }
}

impl<S> Given<S> {
    /// The state itself.
    #[must_use]
    pub fn state(&self) -> &S {
        &self.state
    }

    /// Decides on the state: `Ok` is what it decides (an event, events or some value), `Err` the
    /// refusal.
    pub fn when<T, E>(self, decide: impl FnOnce(&S) -> Result<T, E>) -> When<S, T, E> {
        let result = decide(&self.state);
        When {
            state: self.state,
            result,
        }
    }

    /// Decides on the state with a decision that is never refused (it may decide nothing: an
    /// `Option` or a `Vec` of events, for [`When::then_events`]).
    pub fn when_total<T>(self, decide: impl FnOnce(&S) -> T) -> When<S, T, Infallible> {
        self.when(|s| Ok(decide(s)))
    }
}

/// A decision taken on a state: `T` decided, or `E` refused.
pub struct When<S, T, E> {
    state: S,
    result: Result<T, E>,
}

impl<S, T, E> When<S, T, E>
where
    T: Debug,
    E: PartialEq + Debug,
{
    /// Asserts that the decision is the value `expected` (a decision whose `Ok` is no event);
    /// returns the state, unchanged.
    ///
    /// # Panics
    /// The decision is another value, or a refusal.
    #[track_caller]
    pub fn then_ok(self, expected: T) -> S
    where
        T: PartialEq,
    {
        assert_eq!(*self.ok(), expected);
        self.state
    }

    /// Asserts that the decision is the refusal `expected`; returns the state, which a refusal
    /// leaves as it was.
    ///
    /// # Panics
    /// The decision is not refused, or refused otherwise.
    #[track_caller]
    pub fn then_err(self, expected: E) -> S {
        match self.result {
            Ok(t) => panic!("expected a refusal, the command decided {t:?}"),
            Err(e) => assert_eq!(e, expected),
        }
        self.state
    }

    /// What was decided (for a test that checks it piece by piece).
    ///
    /// # Panics
    /// The decision is a refusal.
    #[track_caller]
    pub fn ok(&self) -> &T {
        match &self.result {
            Ok(t) => t,
            Err(e) => panic!("expected a decision, the command was refused: {e:?}"),
        }
    }

    /// The refusal.
    ///
    /// # Panics
    /// The decision is not a refusal.
    #[track_caller]
    pub fn error(self) -> E {
        match self.result {
            Ok(t) => panic!("expected a refusal, the command decided {t:?}"),
            Err(e) => e,
        }
    }
}

impl<S, E> When<S, S::Event, E>
where
    S: Fold,
    S::Event: PartialEq + Clone + Debug,
    E: PartialEq + Debug,
{
    /// Asserts that the decision is the event `expected`; returns the state after it.
    ///
    /// # Panics
    /// The decision is another event, or a refusal.
    #[track_caller]
    pub fn then(self, expected: S::Event) -> S {
        let event = self.event();
        assert_eq!(event, expected);
        let mut state = self.state;
        state.fold(&event);
        state
    }

    /// The event decided (for a test that checks it piece by piece).
    ///
    /// # Panics
    /// The decision is a refusal.
    #[track_caller]
    pub fn event(&self) -> S::Event {
        self.ok().clone()
    }

    /// The state after the decided event.
    ///
    /// # Panics
    /// The decision is a refusal.
    #[track_caller]
    pub fn state_after(self) -> S {
        let event = self.event();
        let mut state = self.state;
        state.fold(&event);
        state
    }
}

impl<S, T, E> When<S, T, E>
where
    S: Fold,
    S::Event: PartialEq + Debug,
    T: IntoIterator<Item = S::Event> + Debug,
    E: PartialEq + Debug,
{
    /// Asserts that the decision is the events `expected`, in order (a decision that appends
    /// several, or an `Option`: none or one); returns the state after them.
    ///
    /// # Panics
    /// The decision is other events, or a refusal.
    #[track_caller]
    pub fn then_events(self, expected: impl IntoIterator<Item = S::Event>) -> S {
        let events: Vec<S::Event> = match self.result {
            Ok(t) => t.into_iter().collect(),
            Err(e) => panic!("expected events, the command was refused: {e:?}"),
        };
        assert_eq!(events, expected.into_iter().collect::<Vec<_>>());
        let mut state = self.state;
        for e in &events {
            state.fold(e);
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter of the numbers folded into it.
    #[derive(Debug, Default, PartialEq)]
    struct Sum(i64);
    impl Fold for Sum {
        type Event = i64;
        fn fold(&mut self, n: &i64) {
            self.0 += n;
        }
    }
    fn halves(s: &Sum) -> Result<Vec<i64>, String> {
        if s.0 % 2 == 0 {
            Ok(vec![s.0 / 2, s.0 / 2])
        } else {
            Err(format!("{} is odd", s.0))
        }
    }

    #[test]
    fn every_then_folds_and_compares() {
        assert_eq!(
            given::<Sum>([1, 2]).when(|s| Ok::<_, ()>(s.0)).then(3),
            Sum(6)
        );
        assert_eq!(
            given::<Sum>([2, 2]).when(halves).then_events([2, 2]),
            Sum(8)
        );
        given::<Sum>([3]).when(halves).then_err("3 is odd".into());
        assert_eq!(
            given_state(Sum(5)).when_total(|s| s.0 > 4).then_ok(true),
            Sum(5)
        );
        let s = given_state(Sum(1))
            .when_total(|s| (s.0 > 0).then_some(9))
            .then_events([9]);
        assert_eq!(s, Sum(10));
    }

    #[test]
    #[should_panic(expected = "expected a refusal")]
    fn then_err_on_a_decision_panics() {
        given::<Sum>([2]).when(halves).then_err(String::new());
    }
}
