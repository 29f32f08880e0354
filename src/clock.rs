//! The clock a wait reads: real time, or in unit tests a virtual one.
//!
//! Two timers end a wait on a priority tag without its owner: the expiry of
//! a yielding class's tag (`priority::PRIVILEGE_EXPIRY`) and a fallible
//! transaction's wait budget. A broken timer makes the wait go on for ever,
//! which a test could only see as a hang. A test that checks a timer sets a
//! virtual clock on its thread instead: it moves only when the wait goes
//! round (`round`), by a fixed tick, and it panics once it passes the
//! instant by which the test says the wait must have ended. A timer that
//! never fires is then a failing assertion at a known virtual instant, the
//! same on every machine and under any load (cargo-mutants counts failures
//! and time-outs apart: `docs/verification.md`).

use std::time::Instant;

/// Now, as the negotiation's timers see it.
#[inline]
pub(crate) fn now() -> Instant {
    #[cfg(all(test, not(loom)))]
    if let Some(t) = virt::now() {
        return t;
    }
    Instant::now()
}

/// A wait goes round: the virtual clock, where one is set, moves a tick.
#[inline]
pub(crate) fn round() {
    #[cfg(all(test, not(loom)))]
    virt::round();
}

// The timer tests (`negotiation`) need privilege: without it nothing waits.
#[cfg(all(test, not(loom), not(feature = "no-privilege")))]
pub(crate) use virt::Virtual;

#[cfg(all(test, not(loom)))]
mod virt {
    use std::cell::RefCell;
    use std::time::{Duration, Instant};

    struct Clock {
        origin: Instant,
        at: Duration,
        tick: Duration,
        limit: Duration,
        /// Runs at each round with the virtual time (a holder that changes
        /// its tag at a chosen instant, on the waiter's own thread).
        on_round: Option<Box<dyn FnMut(Duration)>>,
    }

    thread_local! {
        static CLOCK: RefCell<Option<Clock>> = const { RefCell::new(None) };
    }

    pub(super) fn now() -> Option<Instant> {
        CLOCK.with(|c| c.borrow().as_ref().map(|c| c.origin + c.at))
    }

    pub(super) fn round() {
        let hook = CLOCK.with(|c| {
            let mut c = c.borrow_mut();
            let c = c.as_mut()?;
            c.at += c.tick;
            assert!(
                c.at <= c.limit,
                "a wait went on past virtual {:?}: a timer that should have ended it did not",
                c.limit
            );
            c.on_round.take().map(|h| (h, c.at))
        });
        if let Some((mut hook, at)) = hook {
            hook(at);
            CLOCK.with(|c| {
                if let Some(c) = c.borrow_mut().as_mut() {
                    c.on_round = Some(hook);
                }
            });
        }
    }

    /// This thread's virtual clock, while the guard lives.
    pub(crate) struct Virtual(());

    impl Virtual {
        /// Starts at 0; each round of a wait adds `tick`; a round past
        /// `limit` panics.
        pub(crate) fn start(tick: Duration, limit: Duration) -> Self {
            CLOCK.with(|c| {
                *c.borrow_mut() = Some(Clock {
                    origin: Instant::now(),
                    at: Duration::ZERO,
                    tick,
                    limit,
                    on_round: None,
                });
            });
            Virtual(())
        }

        /// Runs `f` with the virtual time at every round.
        #[cfg(not(feature = "no-privilege"))]
        pub(crate) fn on_round(&self, f: impl FnMut(Duration) + 'static) {
            CLOCK.with(|c| {
                if let Some(c) = c.borrow_mut().as_mut() {
                    c.on_round = Some(Box::new(f));
                }
            });
        }

        /// The virtual time since the start.
        pub(crate) fn elapsed(&self) -> Duration {
            CLOCK.with(|c| c.borrow().as_ref().map_or(Duration::ZERO, |c| c.at))
        }
    }

    impl Drop for Virtual {
        fn drop(&mut self) {
            CLOCK.with(|c| c.borrow_mut().take());
        }
    }

    #[test]
    fn the_virtual_clock_moves_by_rounds_and_fails_past_its_limit() {
        let tick = Duration::from_millis(2);
        let clock = Virtual::start(tick, tick * 2);
        let t0 = super::now();
        super::round();
        assert_eq!(super::now() - t0, tick);
        super::round();
        assert_eq!(clock.elapsed(), tick * 2);
        assert!(std::panic::catch_unwind(super::round).is_err());
        drop(clock);
        assert!(now().is_none(), "real time again");
    }
}
