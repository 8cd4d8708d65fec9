//! What a function builds when its first event needs it instead of at init.
//!
//! Lambda hands over the first event only once the runtime asks for it, and
//! building the AWS clients before that costs more than the rest of a start
//! put together: each SDK crate parses its endpoint rules once per process,
//! and the HTTPS client builds its TLS configuration (its roots are compiled
//! in: see `crate::http`). Built on first use, that work is done by the first
//! invocation that calls AWS instead, and an event answered without AWS (a
//! route no function has, the API's description) builds nothing. Settings
//! are still read and checked at init (before the `OnFirstEvent` is made),
//! so a missing or bad setting fails the start, not a request.

use std::sync::OnceLock;

/// A value built by `build` on the first call to [`OnFirstEvent::get`] and
/// kept for every later event of this Lambda instance.
pub struct OnFirstEvent<T, F> {
    value: OnceLock<T>,
    build: F,
}

impl<T, F: Fn() -> T> OnFirstEvent<T, F> {
    pub fn new(build: F) -> Self {
        Self { value: OnceLock::new(), build }
    }

    /// Building is CPU work without I/O, and Lambda gives an instance one event
    /// at a time, so nothing waits on another caller here.
    pub fn get(&self) -> &T {
        self.value.get_or_init(&self.build)
    }
}

/// What a handler is given to reach its services: the value itself (the
/// local API, the tests) or an [`OnFirstEvent`] that builds it when the
/// handler first needs it.
pub trait Provide<T> {
    fn get(&self) -> &T;
}

impl Provide<videojobs_core::services::Services> for videojobs_core::services::Services {
    fn get(&self) -> &Self {
        self
    }
}

impl Provide<videojobs_core::services::callbacks::Callbacks> for videojobs_core::services::callbacks::Callbacks {
    fn get(&self) -> &Self {
        self
    }
}

impl<T, F: Fn() -> T> Provide<T> for OnFirstEvent<T, F> {
    fn get(&self) -> &T {
        OnFirstEvent::get(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn nothing_is_built_until_the_first_get() {
        // Arrange
        let builds = AtomicUsize::new(0);

        // Act
        let _lazy = OnFirstEvent::new(|| builds.fetch_add(1, Ordering::SeqCst));

        // Assert
        assert_eq!(builds.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn the_value_is_built_once_and_shared_by_every_later_get() {
        // Arrange
        let builds = AtomicUsize::new(0);
        let lazy = OnFirstEvent::new(|| {
            builds.fetch_add(1, Ordering::SeqCst);
            String::from("clients")
        });

        // Act
        let first = lazy.get() as *const String;
        let second = lazy.get() as *const String;

        // Assert
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        assert_eq!(first, second);
        assert_eq!(lazy.get(), "clients");
    }
}
