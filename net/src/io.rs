//! Small async building blocks: a socket split into read and write halves, a one-waiter
//! wake-up flag, and a timeout.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use crate::{Error, Result};

/// Splits a socket so one task can read while another writes. The halves borrow the stream
/// only inside `poll_*`, never across an await, so they never conflict on one core. The
/// socket closes when both halves are dropped.
pub(crate) fn split(stream: TcpStream) -> (ReadHalf, WriteHalf) {
    let shared = Rc::new(RefCell::new(stream));
    (ReadHalf(shared.clone()), WriteHalf(shared))
}

pub(crate) struct ReadHalf(Rc<RefCell<TcpStream>>);
pub(crate) struct WriteHalf(Rc<RefCell<TcpStream>>);

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_close(cx)
    }
}

/// A level-triggered wake-up for one waiting task: `notify` sets the flag and wakes the
/// waiter; `wait` returns once the flag is set, clearing it.
#[derive(Default)]
pub(crate) struct Notify {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    pub async fn wait(&self) {
        futures_lite::future::poll_fn(|cx| {
            if self.set.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// Runs `fut`, failing with [`Error::Timeout`] if it takes longer than `dur`.
pub(crate) async fn with_timeout<T>(
    dur: Duration,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    futures_lite::future::or(fut, async {
        glommio::timer::sleep(dur).await;
        Err(Error::Timeout)
    })
    .await
}

/// Turns a glommio socket into a `std::net::TcpStream` that can be sent to another core
/// (the accept-and-hand-off path). The fd is duplicated and the glommio socket closed, so
/// nothing of this executor refers to the returned socket. Bytes already read from the
/// socket are not part of it: read exactly the handshake before detaching.
pub fn detach_stream(stream: TcpStream) -> io::Result<std::net::TcpStream> {
    use std::os::fd::{AsRawFd, BorrowedFd};
    // SAFETY: the fd is open for as long as `stream`, which outlives the borrow.
    let owned = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }.try_clone_to_owned()?;
    drop(stream);
    Ok(std::net::TcpStream::from(owned))
}

/// Turns a socket from [`detach_stream`] (or any connected std socket) into a glommio
/// socket of the current executor. Must be called on a glommio executor thread.
pub fn attach_stream(stream: std::net::TcpStream) -> TcpStream {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: `into_raw_fd` transfers ownership of an open, connected socket.
    unsafe { TcpStream::from_raw_fd(stream.into_raw_fd()) }
}
