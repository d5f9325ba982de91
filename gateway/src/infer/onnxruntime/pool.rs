//! A small pool of identical sessions for one model: ort's `Session::run`
//! takes `&mut self`, so each concurrent request needs its own session.
//! The pool holds `max_concurrent` sessions and the model's
//! [`ConcurrencyLimit`](super::super::ConcurrencyLimit) admits at most that
//! many requests, so a checkout never waits and never finds it empty.

use std::sync::{Arc, Mutex, MutexGuard};

use ort::session::Session;

use super::super::error::EngineError;

pub struct SessionPool {
    idle: Mutex<Vec<Session>>,
}

/// A session taken from the pool; it goes back when dropped, also when the
/// run panics, so a failed request never shrinks the pool.
pub struct PooledSession {
    pool: Arc<SessionPool>,
    session: Option<Session>,
}

impl SessionPool {
    pub fn new(sessions: Vec<Session>) -> Arc<SessionPool> {
        Arc::new(SessionPool {
            idle: Mutex::new(sessions),
        })
    }

    /// Takes an idle session. Empty only if more requests run than the
    /// concurrency limit admits, which is a gateway bug.
    pub fn checkout(self: &Arc<Self>) -> Result<PooledSession, EngineError> {
        let session = self.lock().pop().ok_or_else(|| {
            EngineError::Internal("no idle onnxruntime session (concurrency limit bypassed)".into())
        })?;
        Ok(PooledSession {
            pool: Arc::clone(self),
            session: Some(session),
        })
    }

    #[cfg(test)]
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    /// A poisoned lock only means a run panicked while another thread held
    /// the list for a push or pop; the list itself is still whole.
    fn lock(&self) -> MutexGuard<'_, Vec<Session>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl PooledSession {
    pub fn session(&mut self) -> Result<&mut Session, EngineError> {
        self.session
            .as_mut()
            .ok_or_else(|| EngineError::Internal("pooled session already returned".into()))
    }
}

impl Drop for PooledSession {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool.lock().push(session);
        }
    }
}
