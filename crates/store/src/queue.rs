//! The work queue: which stored job a worker takes next. The store holds the jobs; a queue
//! only carries their ids, by priority, so losing the queue loses no job (the store still
//! has them queued, and they are offered again).
//!
//! [`MemoryQueue`] is the in-process queue: bounded, so a full queue refuses new work
//! instead of growing without limit. A queue shared by several processes (NATS JetStream)
//! implements the same trait.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use concierge_core::JobId;
use tokio::sync::Notify;

/// One job waiting: its id and its priority (higher first; equal priorities in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueItem {
    pub job: JobId,
    pub priority: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the queue is full ({capacity} jobs waiting)")]
pub struct QueueFull {
    pub capacity: usize,
}

/// A place reserved in a queue, for a job about to be stored: the job is stored only once
/// it has a place, and the place is given back if it is never pushed.
pub trait Reservation: Send {
    fn push(self: Box<Self>, item: QueueItem);
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// A place for one more job, or `QueueFull`.
    fn reserve(&self) -> Result<Box<dyn Reservation + '_>, QueueFull>;

    /// Offers a job again (one that failed and is retried, or one the store holds queued
    /// that the queue lost); an id already waiting is not added twice. Refused when full:
    /// the job stays queued in the store and is offered again later.
    fn offer(&self, item: QueueItem) -> Result<(), QueueFull>;

    /// The next job, waiting until there is one.
    async fn pop(&self) -> QueueItem;

    /// Jobs waiting, and how many may.
    fn depth(&self) -> usize;
    fn capacity(&self) -> usize;
}

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    item: QueueItem,
    order: u64,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Higher priority first, then the one that came first.
        self.item.priority.cmp(&other.item.priority).then_with(|| other.order.cmp(&self.order))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Default)]
struct Waiting {
    heap: BinaryHeap<Entry>,
    ids: HashSet<JobId>,
    reserved: usize,
    next_order: u64,
}

/// The in-process queue: at most `capacity` jobs waiting or reserved.
#[derive(Debug)]
pub struct MemoryQueue {
    capacity: usize,
    waiting: Mutex<Waiting>,
    ready: Notify,
}

impl MemoryQueue {
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), waiting: Mutex::new(Waiting::default()), ready: Notify::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn insert(waiting: &mut Waiting, item: QueueItem) -> bool {
        if !waiting.ids.insert(item.job) {
            return false;
        }
        let order = waiting.next_order;
        waiting.next_order += 1;
        waiting.heap.push(Entry { item, order });
        true
    }
}

struct MemoryReservation<'a> {
    queue: &'a MemoryQueue,
    pushed: bool,
}

impl Reservation for MemoryReservation<'_> {
    fn push(mut self: Box<Self>, item: QueueItem) {
        self.pushed = true;
        let mut waiting = self.queue.lock();
        waiting.reserved -= 1;
        if MemoryQueue::insert(&mut waiting, item) {
            drop(waiting);
            self.queue.ready.notify_one();
        }
    }
}

impl Drop for MemoryReservation<'_> {
    fn drop(&mut self) {
        if !self.pushed {
            self.queue.lock().reserved -= 1;
        }
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    fn reserve(&self) -> Result<Box<dyn Reservation + '_>, QueueFull> {
        let mut waiting = self.lock();
        if waiting.heap.len() + waiting.reserved >= self.capacity {
            return Err(QueueFull { capacity: self.capacity });
        }
        waiting.reserved += 1;
        Ok(Box::new(MemoryReservation { queue: self, pushed: false }))
    }

    fn offer(&self, item: QueueItem) -> Result<(), QueueFull> {
        let mut waiting = self.lock();
        if waiting.ids.contains(&item.job) {
            return Ok(());
        }
        if waiting.heap.len() + waiting.reserved >= self.capacity {
            return Err(QueueFull { capacity: self.capacity });
        }
        Self::insert(&mut waiting, item);
        drop(waiting);
        self.ready.notify_one();
        Ok(())
    }

    async fn pop(&self) -> QueueItem {
        loop {
            // Registered before looking, so a push between the look and the wait is not missed.
            let notified = self.ready.notified();
            {
                let mut waiting = self.lock();
                if let Some(entry) = waiting.heap.pop() {
                    waiting.ids.remove(&entry.item.job);
                    let more = !waiting.heap.is_empty();
                    drop(waiting);
                    if more {
                        // Another worker may be waiting for the rest.
                        self.ready.notify_one();
                    }
                    return entry.item;
                }
            }
            notified.await;
        }
    }

    fn depth(&self) -> usize {
        self.lock().heap.len()
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn item(priority: i32) -> QueueItem {
        QueueItem { job: JobId::new(), priority }
    }

    #[tokio::test]
    async fn higher_priority_first_then_first_come() {
        let queue = MemoryQueue::new(10);
        let (low, high_first, high_second) = (item(0), item(3), item(3));
        for i in [low, high_first, high_second] {
            queue.reserve().unwrap().push(i);
        }
        assert_eq!(queue.pop().await, high_first);
        assert_eq!(queue.pop().await, high_second);
        assert_eq!(queue.pop().await, low);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_a_dropped_reservation_gives_its_place_back() {
        let queue = MemoryQueue::new(2);
        queue.reserve().unwrap().push(item(0));
        let held = queue.reserve().unwrap();
        assert_eq!(queue.reserve().err(), Some(QueueFull { capacity: 2 }));
        assert!(queue.offer(item(0)).is_err());
        drop(held);
        queue.reserve().unwrap().push(item(0));
        assert_eq!(queue.depth(), 2);
        queue.pop().await;
        assert!(queue.reserve().is_ok(), "a job taken frees its place");
    }

    #[tokio::test]
    async fn an_id_offered_twice_waits_once() {
        let queue = MemoryQueue::new(5);
        let again = item(1);
        queue.offer(again).unwrap();
        queue.offer(again).unwrap();
        assert_eq!(queue.depth(), 1);
    }

    #[tokio::test]
    async fn waiting_workers_each_get_one_job() {
        let queue = Arc::new(MemoryQueue::new(10));
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let queue = Arc::clone(&queue);
                tokio::spawn(async move { queue.pop().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let pushed: HashSet<JobId> = (0..3)
            .map(|_| {
                let i = item(0);
                queue.reserve().unwrap().push(i);
                i.job
            })
            .collect();
        let mut got = HashSet::new();
        for worker in workers {
            let popped = tokio::time::timeout(Duration::from_secs(5), worker).await.expect("no worker is left waiting");
            got.insert(popped.unwrap().job);
        }
        assert_eq!(got, pushed);
    }
}
