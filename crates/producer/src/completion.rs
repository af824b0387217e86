//! The result slot behind each [`crate::PendingRecord`]: a one-shot cell
//! like `tokio::sync::oneshot`, but slots are allocated 32 at a time per
//! thread instead of one allocation per record. The dispatcher side
//! ([`Completer`]) writes the result once and wakes the receiver; a
//! completer dropped without a result resolves the record to
//! [`PutError::Shutdown`], as a dropped oneshot sender did.

use std::cell::{RefCell, UnsafeCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;

use crate::error::PutError;
use crate::producer::PutResult;

type Outcome = Result<PutResult, PutError>;

/// Slots per allocation.
const SLOTS: usize = 32;

// State bits of a slot.
/// The completer wrote the value.
const DONE: u8 = 1;
/// The completer was dropped without a value.
const DROPPED: u8 = 2;
/// The receiver took the value.
const TAKEN: u8 = 4;
/// The receiver registered a waker (set after registering): only then does
/// the completer wake it, so results read with `try_take` cost no wake-up.
const WAITING: u8 = 8;

struct Slot {
    state: AtomicU8,
    /// Written only by the completer, before it stores `DONE` (release);
    /// read only by the receiver, after it loads `DONE` (acquire).
    value: UnsafeCell<Option<Outcome>>,
    waker: AtomicWaker,
}

struct Block {
    slots: [Slot; SLOTS],
}

// SAFETY: each slot's value is touched by one side at a time, handed over
// by the release/acquire pair on `state` (see `Slot::value`); the rest is
// atomics.
unsafe impl Sync for Block {}
// SAFETY: as above; `Outcome` is `Send`.
unsafe impl Send for Block {}

impl Block {
    fn new() -> Block {
        Block {
            slots: std::array::from_fn(|_| Slot {
                state: AtomicU8::new(0),
                value: UnsafeCell::new(None),
                waker: AtomicWaker::new(),
            }),
        }
    }
}

/// Writes a record's result.
pub(crate) struct Completer {
    block: Arc<Block>,
    i: u32,
    done: bool,
}

/// Reads a record's result.
pub(crate) struct Receiver {
    block: Arc<Block>,
    i: usize,
}

/// A fresh slot, from this thread's current block.
pub(crate) fn slot() -> (Completer, Receiver) {
    thread_local! {
        static CURRENT: RefCell<(Option<Arc<Block>>, usize)> = const { RefCell::new((None, 0)) };
    }
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        let (block, next) = &mut *c;
        let block = match block {
            Some(b) if *next < SLOTS => b,
            _ => {
                *next = 0;
                block.insert(Arc::new(Block::new()))
            }
        };
        let i = *next;
        *next += 1;
        (
            Completer {
                block: block.clone(),
                i: i as u32,
                done: false,
            },
            Receiver {
                block: block.clone(),
                i,
            },
        )
    })
}

impl Completer {
    pub(crate) fn send(mut self, value: Outcome) {
        let s = &self.block.slots[self.i as usize];
        // SAFETY: only this completer writes the value, once; the receiver
        // reads it only after the release store below.
        unsafe { *s.value.get() = Some(value) };
        self.done = true;
        if s.state.fetch_or(DONE, Ordering::AcqRel) & WAITING != 0 {
            s.waker.wake();
        }
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        if !self.done {
            let s = &self.block.slots[self.i as usize];
            if s.state.fetch_or(DROPPED, Ordering::AcqRel) & WAITING != 0 {
                s.waker.wake();
            }
        }
    }
}

impl Receiver {
    /// The result if it is there; `Shutdown` when the completer went away
    /// without one, or the result was taken already.
    pub(crate) fn try_take(&mut self) -> Option<Outcome> {
        let state = self.block.slots[self.i].state.load(Ordering::Acquire);
        self.take_in(state)
    }

    fn take_in(&mut self, state: u8) -> Option<Outcome> {
        let s = &self.block.slots[self.i];
        if state & TAKEN != 0 || state & DROPPED != 0 {
            return Some(Err(PutError::Shutdown));
        }
        if state & DONE == 0 {
            return None;
        }
        // The completer no longer touches the state after `DONE`.
        s.state.fetch_or(TAKEN, Ordering::Relaxed);
        // SAFETY: the completer wrote the value before setting `DONE`
        // (release), which we acquired, and never touches it again.
        let v = unsafe { (*s.value.get()).take() };
        Some(v.unwrap_or(Err(PutError::Shutdown)))
    }

    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Outcome> {
        if let Some(v) = self.try_take() {
            return Poll::Ready(v);
        }
        let s = &self.block.slots[self.i];
        s.waker.register(cx.waker());
        // Registered before saying so: a completer that sees `WAITING`
        // finds the waker; one that set `DONE` first is seen here.
        let state = s.state.fetch_or(WAITING, Ordering::AcqRel);
        match self.take_in(state) {
            Some(v) => Poll::Ready(v),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ok(n: u64) -> Outcome {
        Ok(PutResult {
            shard_id: Arc::from("shardId-000000000000"),
            sequence_number: Arc::from(n.to_string().as_str()),
            sub_sequence_number: Some(n),
            attempts: 1,
        })
    }

    #[test]
    fn a_result_is_taken_once_then_reads_as_shutdown() {
        let (c, mut r) = slot();
        assert!(r.try_take().is_none());
        c.send(ok(7));
        assert_eq!(r.try_take(), Some(ok(7)));
        assert_eq!(r.try_take(), Some(Err(PutError::Shutdown)));
    }

    #[test]
    fn a_completer_dropped_without_a_result_gives_shutdown() {
        let (c, mut r) = slot();
        drop(c);
        assert_eq!(r.try_take(), Some(Err(PutError::Shutdown)));
    }

    #[test]
    fn slots_of_one_block_are_independent_and_outlive_either_side() {
        let pairs: Vec<_> = (0..SLOTS as u64 * 3).map(|_| slot()).collect();
        let mut receivers = Vec::new();
        for (n, (c, r)) in pairs.into_iter().enumerate() {
            if n % 3 == 0 {
                drop(r); // nobody waits: the value is dropped with the block
                c.send(ok(n as u64));
            } else {
                c.send(ok(n as u64));
                receivers.push((n as u64, r));
            }
        }
        for (n, mut r) in receivers {
            assert_eq!(r.try_take(), Some(ok(n)));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_receiver_is_woken_by_a_completer_dropped_on_another_thread() {
        let mut handles = Vec::new();
        for _ in 0..100 {
            let (c, mut r) = slot();
            let t = tokio::spawn(async move { std::future::poll_fn(|cx| r.poll(cx)).await });
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                drop(c);
            });
            handles.push(t);
        }
        for t in handles {
            assert_eq!(t.await.unwrap(), Err(PutError::Shutdown));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_receiver_is_woken_from_another_thread() {
        let mut handles = Vec::new();
        for n in 0..200u64 {
            let (c, mut r) = slot();
            let t = tokio::spawn(async move { std::future::poll_fn(|cx| r.poll(cx)).await });
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                c.send(ok(n));
            });
            handles.push((n, t));
        }
        for (n, t) in handles {
            assert_eq!(t.await.unwrap(), ok(n));
        }
    }
}
