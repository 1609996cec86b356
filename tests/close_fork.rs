//! A close in a forked child (the pre-fork server pattern): the crate keeps no thread
//! and no process-wide state, so a child's close meets its deadline like any other.
//! (With a process-wide deadline thread, started by a close in the parent, a child's
//! 500 ms close against a silent peer never ended: the thread did not exist there.)
//!
//! Alone in its file: `fork` copies only the calling thread, so no other test may run
//! in this process meanwhile.
#![cfg(target_os = "linux")]

#[path = "support/peer.rs"]
mod peer;

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio_graceful_close::AsyncGracefulClose;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Writes to the real stderr: the test harness's capture does not reach the parent.
fn say(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// In the child: a 500 ms close against a peer that never closes must time out in
/// time. The exit code tells the parent.
fn child() -> i32 {
    let rt = runtime();
    rt.block_on(async {
        let (mut ours, _silent) = peer::pair().await;
        ours.write_all(b"answer").await.unwrap();
        let start = Instant::now();
        let close = ours.graceful_close(Duration::from_millis(500));
        match tokio::time::timeout(Duration::from_secs(3), close).await {
            Ok(Err(e)) if e.kind().is_timeout() && start.elapsed() < Duration::from_secs(2) => 0,
            Ok(other) => {
                let took = start.elapsed();
                say(&format!(
                    "child: after {took:?}, unexpected outcome {other:?}"
                ));
                2
            }
            Err(_) => {
                say("child: the close never ended");
                3
            }
        }
    })
}

#[test]
fn a_close_in_a_forked_child_meets_its_deadline() {
    // The parent closes one connection first, waiting on its peer (a close that waits:
    // whatever a close may set up for its wait is set up here, before the fork).
    runtime().block_on(async {
        let (mut ours, mut theirs) = peer::pair().await;
        ours.write_all(b"answer").await.unwrap();
        let peer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            peer::read_to_end(&mut theirs).await
        });
        let report = ours.graceful_close(Duration::from_secs(10)).await.unwrap();
        assert!(report.acked(), "{report:?}");
        peer.await.unwrap();
    });
    // Safety: the child only runs code of this test (a fresh runtime, sockets of its
    // own) and ends with `_exit`, never returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = std::panic::catch_unwind(child).unwrap_or(4);
        // Safety: ends the child without running the parent's destructors or atexit.
        unsafe { libc::_exit(code) };
    }
    let start = Instant::now();
    let mut status = 0;
    loop {
        // Safety: waits for our own child; `status` is a valid out pointer.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            break;
        }
        if start.elapsed() > Duration::from_secs(10) {
            // Safety: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("the child's close hung: killed after 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(libc::WIFEXITED(status), "child status {status:#x}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "see the child's message above"
    );
}
