//! The set of tasks a transport spawned, so that closing it stops them all.
//!
//! DESIGN §10: an executor that exits leaves spawned tasks and their sockets alive unless
//! they are cancelled or awaited. Every task the transport spawns goes through
//! [`TaskSet::spawn`]; [`TaskSet::close`] cancels and awaits each one, which drops their
//! futures and with them the sockets they own.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;

use glommio::Task;

/// Identifies a task within its [`TaskSet`].
pub(crate) type TaskId = u64;

#[derive(Default)]
pub(crate) struct TaskSet {
    /// The glommio task queue tasks go into (`None`: the executor's default queue).
    queue: Option<glommio::TaskQueueHandle>,
    next: Cell<TaskId>,
    live: RefCell<HashMap<TaskId, Task<()>>>,
    /// Tasks that finished on their own; their handles are dropped at the next spawn.
    finished: Rc<RefCell<Vec<TaskId>>>,
    closed: Cell<bool>,
}

impl TaskSet {
    pub fn new(queue: Option<glommio::TaskQueueHandle>) -> TaskSet {
        TaskSet {
            queue,
            ..TaskSet::default()
        }
    }

    /// Spawns `fut` on the current executor. Returns `None` (and drops `fut`) once closed.
    pub fn spawn(&self, fut: impl Future<Output = ()> + 'static) -> Option<TaskId> {
        if self.closed.get() {
            return None;
        }
        self.reap();
        let id = self.next.get();
        self.next.set(id + 1);
        let finished = self.finished.clone();
        let fut = async move {
            fut.await;
            finished.borrow_mut().push(id);
        };
        let task = match self.queue {
            // Fails only for a handle of another executor: a setup bug, documented on
            // `TransportOptions::task_queue`.
            Some(q) => match glommio::spawn_local_into(fut, q) {
                Ok(t) => t,
                Err(_) => return None,
            },
            None => glommio::spawn_local(fut),
        };
        self.live.borrow_mut().insert(id, task);
        Some(id)
    }

    /// Cancels one task (it stops at its next await point; its future is dropped then).
    /// Must not be called by the task on itself.
    pub fn cancel(&self, id: TaskId) {
        let task = self.live.borrow_mut().remove(&id);
        drop(task); // Dropping a glommio Task cancels it.
    }

    /// Number of tasks not yet known to have finished.
    pub fn len(&self) -> usize {
        self.reap();
        self.live.borrow().len()
    }

    fn reap(&self) {
        let done = std::mem::take(&mut *self.finished.borrow_mut());
        if done.is_empty() {
            return;
        }
        let mut live = self.live.borrow_mut();
        for id in done {
            live.remove(&id);
        }
    }

    /// Refuses new tasks, then cancels and awaits every live one. Must not be called from a
    /// task of this set.
    pub async fn close(&self) {
        self.closed.set(true);
        loop {
            let tasks: Vec<Task<()>> = self.live.borrow_mut().drain().map(|(_, t)| t).collect();
            if tasks.is_empty() {
                break;
            }
            for task in tasks {
                task.cancel().await;
            }
        }
        self.finished.borrow_mut().clear();
    }
}
